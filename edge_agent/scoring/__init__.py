"""What turns a 10 s window into a score's parts: the numpy frontend, the classical
embeddings, the TFLite embedder and the backend (distances to a section's normal
references). Pure functions and the model runtime; no I/O beyond the model bytes."""
