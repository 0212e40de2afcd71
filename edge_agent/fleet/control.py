"""What the fleet client needs from the running agent: `AgentControl`, and nothing else.

Why a protocol: the fleet client (edge_agent.fleet.client) installs bundle versions and runs
remote commands, but the agent owns the model, the audio and the reload. The client asks the
agent through these seven methods only, so it never touches the agent's threads, and a test can
drive it with any small agent that really scores and records.

`status()` is the agent's own summary (JSON-safe), sent as the `status` command's reply. The
`tune` command needs a monitor's alarm rule and score history, which only the agent knows: it
reads them from `status()["monitors"][<name>]` (`MonitorStatus`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, TypedDict

from edge_agent.events import Counters
from edge_agent.scoring.embedder import RuntimeRequest


class MonitorStatus(TypedDict):
    """`status()["monitors"][name]`: one machine's state, and what `tune` replays (the
    agent's `decision` rule and hop, its score history file)."""

    section: str  # the bundle section scoring this monitor
    decision: str  # its alarm state: normal | alarm
    device_lost: bool  # its input stopped delivering
    counters: Counters  # windows, scored, alarms, faults...
    last_score: float | None  # the last scored window's score (None before the first)
    threshold: float | None  # the threshold it was compared with
    last_window_ts: str | None  # when that window started (ISO 8601, UTC)
    history: str  # path of its score history file (edge_agent.runtime.history), "" = none
    k: int  # decision.k: anomalous windows of the last n that raise
    n: int  # decision.n
    clear_after: int  # decision.clear_after: normal windows in a row that clear
    hop_seconds: float  # windows.hop
    threshold_override: float | None  # decision.threshold (set: tuning the bundle is pointless)


class AgentStatus(TypedDict):
    """`status()`: what a remote `status` command answers (JSON-safe)."""

    device_id: str
    model_version: str  # what the agent scores with now
    bundle_version: int
    uptime_s: float
    counters: Counters  # every monitor's summed, with the agent's own
    monitors: dict[str, MonitorStatus]


class AgentControl(Protocol):
    """The running agent, as the fleet client sees it (implemented by edge_agent.agent.Agent).

    Every method is called from the fleet client's worker thread, never from the scoring
    path, and must return promptly except `record`, which blocks at most `timeout` seconds.
    """

    def running_version(self) -> str:
        """The model_version the agent scores with now (`Bundle.model_version`, e.g.
        `v3-89fb44ed`): after an install, it changes once the agent's own reload swapped the
        new version in."""
        ...

    def monitors(self) -> dict[str, str]:
        """Monitor name -> the bundle section that scores it."""
        ...

    def window_samples(self) -> int:
        """Samples per window the agent cuts (a candidate version is smoke-tested with it)."""
        ...

    def bundle_root(self) -> Path:
        """The bundle folder the agent loads (with `current` and `versions/`)."""
        ...

    def runtime_request(self) -> RuntimeRequest:
        """The TFLite runtimes the agent may score with (its `tflite:` config): a candidate
        version's self-test runs on the same (edge_agent.runtime.selftest)."""
        ...

    def status(self) -> AgentStatus:
        """A JSON-safe summary: counters, model, and `monitors` -> {name: MonitorStatus}."""
        ...

    def record(self, monitor: str, seconds: float, path: Path, timeout: float) -> Path:
        """Write `seconds` of `monitor`'s live audio (as the agent hears it, at the bundle's
        rate) to the WAV file `path`; return it once written, or raise EdgeAgentError (no
        such monitor, no audio within `timeout` seconds)."""
        ...
