"""Where window results go: stdout/JSONL (no broker needed) and MQTT with a durable outbox."""
