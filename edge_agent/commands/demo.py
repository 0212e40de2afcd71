"""`edge-agent demo`: watch a machine turn faulty, with nothing but this package installed.

Why it exists: a plant engineer's first question is "does it work here, and what does an alarm
look like?", before any microphone, broker or training. The demo answers it with the REAL agent
(`edge_agent.agent.Agent`, files source, the shipped bundle in `edge_agent/demo/bundle`): the
same windowing, health checks, TFLite scoring, k-of-n decision and sinks as `edge-agent run`.
Nothing here re-implements the pipeline; this module only picks the demo inputs, paces the
output and prints friendlier lines.

The demo audio (`edge_agent/demo/clips/`, described by `edge_agent/demo/demo.json`) is a
sequence of 10 s clips of one synthetic machine section: normal clips first, then clips of the
same machine with a fault. `benchmarks/build_demo.sh` builds the bundle and picks the clips
(`benchmarks/pick_demo_clips.py` says how they were chosen).

Pace: the replay itself runs as fast as the scorer can go; `PacedSink` then holds each window's
output for `10 s / speed` (default speed 10: one 10 s window per second), so a person can read
the scores as they come and the alarm appears within seconds. `--fast` removes the pause;
`--realtime` is `--speed 1` (the flags mean what they mean for `run`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config
from edge_agent.errors import EdgeAgentError
from edge_agent.events import Event

if TYPE_CHECKING:  # the agent imports numpy and TFLite: only when the command runs
    from edge_agent.agent import Agent
    from edge_agent.config.agent import AgentConfig

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEFAULT_SPEED = 10.0


class DemoError(EdgeAgentError):
    """The shipped demo files are missing or inconsistent (a broken install)."""


@dataclass(frozen=True)
class DemoClip:
    file: str  # file name inside clips/
    label: Literal["normal", "anomaly"]  # ground truth from the synthetic set
    source: str  # the clip's name in the synthetic test split it was copied from
    kind: str | None = None  # synthetic anomaly kind (None for normal clips)
    severity: float | None = None  # synthetic anomaly severity in [0.05, 1]


@dataclass(frozen=True)
class DemoSet:
    """`demo.json`: which section the clips belong to, in replay order, and their provenance."""

    directory: Path
    section: str
    clips: tuple[DemoClip, ...]
    info: dict[str, Any]

    @property
    def bundle(self) -> Path:
        return self.directory / "bundle"

    @property
    def paths(self) -> list[Path]:
        return [self.directory / "clips" / c.file for c in self.clips]

    @property
    def n_normal(self) -> int:
        """Normal clips before the first faulty one (the demo's 'healthy' part)."""
        for i, c in enumerate(self.clips):
            if c.label != "normal":
                return i
        return len(self.clips)


def load_demo(directory: Path = DEMO_DIR) -> DemoSet:
    """Read demo.json and check every file it names exists (one-line DemoError otherwise)."""
    meta = directory / "demo.json"
    try:
        raw = json.loads(meta.read_text())
        clips = tuple(DemoClip(**c) for c in raw["clips"])
        demo = DemoSet(directory, str(raw["section"]), clips, dict(raw.get("info", {})))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DemoError(
            f"{meta}: demo description unreadable ({exc}); reinstall the agent"
        ) from None
    if not clips:
        raise DemoError(f"{meta}: lists no clips")
    for p in demo.paths:
        if not p.is_file():
            raise DemoError(f"{p}: demo clip missing; reinstall the agent")
    if not (demo.bundle / "current").is_file():
        raise DemoError(f"{demo.bundle}: demo bundle missing; reinstall the agent")
    return demo


class PacedSink:
    """Holds the agent's worker for `seconds` after each scored window.

    The files source is not real-time, so the agent waits for its scorer instead of dropping
    windows (see edge_agent.agent): a pause here therefore paces the whole replay without
    touching the source, and nothing is lost.
    """

    def __init__(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.seconds = seconds
        self.sleep = sleep

    def handle(self, event: Event) -> None:
        if event["kind"] == "score" and self.seconds > 0:
            self.sleep(self.seconds)

    def close(self) -> None:
        pass


class DemoSink:
    """Readable per-window lines with the ground truth next to the score, and the alarm."""

    def __init__(self, demo: DemoSet, n: int, hop: float, stream: TextIO | None = None) -> None:
        """`n`: the decision's window count; `hop`: seconds of audio between windows."""
        self.n = n
        self.hop = hop
        self.stream = stream if stream is not None else sys.stdout
        self.labels = {c.file: c for c in demo.clips}
        self.first_alarm: int | None = None
        self.header_done = False

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def handle(self, e: Event) -> None:
        if e["kind"] == "score":
            if not self.header_done:
                self._print(
                    f"{'window':>6}  {'audio':>6}  {'clip':<8} {'score':>7} "
                    f"{'threshold':>9}  {'':<5} decision"
                )
                self.header_done = True
            clip = self.labels.get(Path(e["source"]).name)
            truth = "faulty" if clip is not None and clip.label != "normal" else "normal"
            above = "ABOVE" if e["anomalous"] else ""
            w = e["window"]
            self._print(
                f"{w:>6}  {w * self.hop:>5g}s  {truth:<8} {e['score']:7.4f} "
                f"{e['threshold']:9.4f}  {above:<5} {e['decision']} (votes {e['votes']})"
            )
        elif e["kind"] == "alarm":
            w = e["window"]
            if e["decision"] == "alarm":
                if self.first_alarm is None:
                    self.first_alarm = w
                self._print(
                    f">>> ALARM RAISED at window {w}: {e['votes']} of the last "
                    f"{self.n} windows above threshold ({e['section']})"
                )
                why = e.get("explanation")
                if why:
                    self._print(f"    why: {why['sentence']}")
            else:
                self._print(f">>> alarm cleared at window {w} ({e['section']})")
        elif e["kind"] == "health" and "message" in e:  # hearing_*: what to check
            if e["event"] != "hearing_ok":  # a healthy replay stays quiet
                self._print(f"    hearing: {e['message']}")
        elif e["kind"] == "health":
            faults = ",".join(e.get("faults", [])) or "ok"
            self._print(f"    sensor {e['event']}: {faults}")

    def close(self) -> None:
        self.stream.flush()


def demo_cmd(
    speed: Annotated[
        float,
        typer.Option("--speed", min=0.1, help="Replay speed: 10 = one 10 s window per second."),
    ] = DEFAULT_SPEED,
    realtime: opt.Pace = None,
    mqtt_host: opt.MqttHost = None,
    mqtt_port: opt.MqttPort = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            "--device-id", help="MQTT device id (default: the config's).", show_default=False
        ),
    ] = None,
    config: opt.Config = None,
    json_out: opt.Json = False,
    verbose: opt.Verbose = False,
    runtime: opt.TfliteRuntime = None,
    xnnpack: opt.Xnnpack = None,
) -> None:
    """Replay shipped audio of a machine that turns faulty through the real agent.

    --config: its mqtt and decision settings are used. --json: the agent's events as JSON lines.
    """
    from edge_agent.agent import Agent, setup_logging

    demo = load_demo()
    outbox_dir = tempfile.TemporaryDirectory(prefix="edge-agent-demo-")
    fixed: dict[str, Any] = {
        "bundle": str(demo.bundle),
        "section": demo.section,
        "source.kind": "files",
        "source.files": [str(p) for p in demo.paths],
        "source.realtime": False,
        "source.loop": False,
        # Demo alarms must not linger in (or be replayed from) a real agent's outbox.
        "outbox.path": str(Path(outbox_dir.name) / "outbox.sqlite"),
        "history.folder": outbox_dir.name,  # nor may its scores enter a real score history
        "log.stdout": json_out,  # without --json, DemoSink prints the lines
        "log.json": json_out,
        "log.jsonl_file": None,
        "log.level": "info" if verbose else "warning",
    }
    flags = Flags(
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        device_id=device_id,
        tflite_runtime=runtime,
        xnnpack=xnnpack,
    )
    cfg = agent_config(config, flags, fixed)
    setup_logging(cfg.log.json, cfg.log.level)
    agent = Agent(cfg)
    sink = DemoSink(demo, cfg.decision.n, cfg.windows.hop)
    if not json_out:
        agent.sinks.append(sink)
    fast = realtime is False
    if realtime:  # --realtime: the audio's own pace, the same as --speed 1
        speed = 1.0
    pause = 0.0 if fast else cfg.windows.hop / speed
    agent.sinks.append(PacedSink(pause))
    if not json_out:
        typer.echo(_intro(demo, cfg, agent, speed if not fast else None, pause))
    try:
        code = agent.run()
    finally:
        outbox_dir.cleanup()
    if not json_out:
        typer.echo(_outcome(demo, sink, cfg.windows.hop))
    raise typer.Exit(code)


def _intro(demo: DemoSet, cfg: AgentConfig, agent: Agent, speed: float | None, pause: float) -> str:
    """What is about to play, at which pace, and what raises the alarm."""
    d = cfg.decision
    thr = agent.scorer.bundle.backend(demo.section).threshold
    window_s = agent.scorer.spec.clip_seconds
    pace = (
        "as fast as it scores"
        if speed is None
        else (f"{speed:g}x real time: one {window_s:g} s window every {pause:g} s")
    )
    return (
        f"edge-agent demo: {len(demo.clips)} clips of {demo.section} "
        f"({demo.n_normal} normal, then {len(demo.clips) - demo.n_normal} from the same "
        f"machine with a fault), replayed through the agent, {pace}.\n"
        f"model {agent.scorer.bundle.model_version}, threshold "
        f"{d.threshold if d.threshold is not None else thr:.4f}; an alarm needs {d.k} of "
        f"the last {d.n} windows above it"
        + (
            f"; publishing to mqtt://{cfg.mqtt.host}:{cfg.mqtt.port}/{cfg.mqtt.base()}/..."
            if cfg.mqtt.enabled
            else ""
        )
    )


def _outcome(demo: DemoSet, sink: DemoSink, hop: float) -> str:
    """When the fault started and when the alarm came, or that it never came."""
    if sink.first_alarm is None:
        return "no alarm was raised: the demo model missed this fault (see docs/deploy.md)"
    first_faulty = demo.n_normal
    return (
        f"done: the fault started at window {first_faulty} ({first_faulty * hop:g} s of "
        f"audio); the alarm was raised at window {sink.first_alarm}. "
        "Next: docs/deploy.md (your microphone) and docs/mqtt.md (Home Assistant)."
    )
