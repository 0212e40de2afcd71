"""The `edge-agent` commands, one module each, and what they share.

* `options`: every command-line option, declared once (a flag means the same everywhere);
* `overrides`: the one mapping from flags onto the agent config (`--config` + flags);
* `clip_input`: where `calibrate`, `enrol` and `record` get their clips;
* `runner`: runs a typer app; errors become one line, field errors are worded as flags.

A command module parses flags, calls the library and prints; the work is done elsewhere.
Command modules import their heavy dependencies (numpy, TFLite) inside the command function,
so `edge-agent --help` stays fast on a Pi.
"""
