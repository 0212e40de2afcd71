"""edge_agent.runtime.start: moved from edge_agent.config.load."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from edge_agent.config.agent import AgentConfig
from edge_agent.config.load import log
from edge_agent.config.monitors import (
    capture_groups,
)
from edge_agent.errors import ConfigError

if TYPE_CHECKING:  # the bundle module pulls in the backend: only the caller's bundle is used
    from edge_agent.bundle.load import Bundle


def check_start(cfg: AgentConfig, bundle: Bundle, probe: bool = False) -> tuple[int, int]:
    """(window length, hop) in samples for `cfg` with `bundle`, or the one-line error naming
    the field of what the agent would refuse at start: a section the bundle lacks,
    `windows.seconds` other than the bundle's clip length, a hop the device cannot score,
    replay files that are missing or unreadable, an evidence folder it cannot write to.
    `config check` and the agent's start both call this, so a config that checks clean starts
    clean (and one that would fail every window does neither). Not in `read_config`: other
    commands read the same config with files of their own. With `source.skip_unreadable`
    unreadable WAV files are left for the source to skip (with its warning); a missing one is
    still an error (audio.expand_files).

    `probe` (`config check`): also what the sources check when the agent opens them, by the
    same functions: every replay file's header (a channel the file does not have), and a
    device channel the device does not have when the device can be queried here (otherwise
    one warning line says why it was not checked). The agent passes False: its sources run
    those checks themselves a moment later (`sources.open_source`, `DeviceSource.start`). A
    stdin channel beyond `source.stdin_channels` is a rule between fields
    (`SourceSettings.__post_init__`), refused by `read_config` already."""
    from edge_agent.audio.files import expand_files
    from edge_agent.runtime.evidence import check_folder

    for i, m in enumerate(cfg.monitor_list()):
        key = f"monitors[{i}]." if cfg.monitors else ""
        if m.section not in bundle.sections:
            raise ConfigError(
                f"{key}section: no section {m.section!r} in the bundle "
                f"{bundle.path} (has {', '.join(bundle.sections)})"
            )
        src = m.source
        if src.kind == "files":
            if not src.files:
                raise ConfigError(f"{key}source.files: expected at least one WAV file or folder")
            for f in expand_files(src.files):
                if not src.skip_unreadable and not os.access(f, os.R_OK):
                    raise ConfigError(f"{key}source.files: {f}: not readable (permission denied)")
    if cfg.evidence.folder:
        check_folder(cfg.evidence.folder)
    if probe:
        _probe_sources(cfg, bundle.spec.sample_rate)
    return cfg.windows.samples(bundle.spec)


def _probe_sources(cfg: AgentConfig, rate: int) -> None:
    """`check_start(probe=True)`: each capture group's source as the agent builds it (file
    headers: `sources.files.usable_files`) and its device channels (`probe_lanes`)."""
    for g in capture_groups(cfg.monitor_list()):
        if g.source.kind == "files":
            from edge_agent.sources.files import usable_files

            usable_files(g.source, rate)
        elif g.source.kind == "device":
            from edge_agent.sources.device import probe_lanes

            lanes = [m.source.channel for m in g.monitors]
            why = probe_lanes(g.source.device, lanes)
            if why is not None:
                log.warning(
                    "source.channel: channel(s) %s not checked against the device: %s",
                    ", ".join(str(c) for c in lanes if c is not None),
                    why,
                )
