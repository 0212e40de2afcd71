"""The agent's settings: every section of the YAML file as frozen dataclasses, their field
bounds, the ids that become topic levels, the `monitors:` list, and the one loader
and validator."""
