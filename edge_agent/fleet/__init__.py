"""The fleet: signed bundle versions rolled out over MQTT to device groups, remote commands.

Modules, one job each: `settings` (the `fleet:` config section), `control` (what the fleet
needs from the running agent), `topics` (the topic tree), `messages` (the payloads, checked),
`packing` (version folder <-> tar archive), `transfer` (chunks out, chunks in), `state` (what
was installed and which commands ran, on disk), `install` (checks, install, rollback),
`args`, `remote` and `remote_adapt` (the remote commands), `client` (the agent's side:
`FleetClient`), `operator` (push, rollback, status, commands). See docs/fleet.md.
"""

from edge_agent.config.ids import check_device_id

__all__ = ["check_device_id"]
