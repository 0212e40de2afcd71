"""The model bundle on disk and in memory: manifest and schema, the version folders,
signatures, loading, and writing new versions."""
