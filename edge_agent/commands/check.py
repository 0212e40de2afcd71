"""`edge-agent check`: does this device compute what the bundle was made with, and how fast?

One command for a person at a new device (a Pi, a Jetson, a VM). It runs in parts, each a
function below that the command calls in turn with the same `CheckTarget`, prints its own
lines and returns whether it passed:

- `self_test_part`: the TFLite runtime the agent would choose (edge_agent.runtime.probe, each
  runtime tried in a child process) scores the bundle's reference window, and the numbers are
  compared with the ones the bundle was exported with (edge_agent.runtime.selftest). A runtime
  or CPU that computes other numbers is refused with the one line the agent would log;
- `listen_part` (`--listen N`): each configured input (every machine of `monitors:`, or the
  one `source:`) heard for N seconds and compared with its section's audio profile in the
  bundle (edge_agent.runtime.hearing): does the audio reaching the model sound like the audio
  it was built on (bandwidth, level, noise floor, clipping)? One verdict per machine, with the
  sentence the agent's `hearing_mismatch` event would carry, before anyone trusts a threshold;
- `bench_part` (`--bench`): milliseconds per window through the whole scoring path and the
  process's peak RSS, with a row to paste into BENCHMARKS.md's table of user devices.

The logic lives in the rooms below (runtime.selftest, runtime.scorer); this module only picks
the bundle and settings, calls the parts and prints.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config

if TYPE_CHECKING:
    from edge_agent.config.agent import AgentConfig
    from edge_agent.runtime.scorer import Scorer

DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "demo" / "bundle"


@dataclass
class CheckTarget:
    """What every part checks: the agent config (flags applied), the bundle it names (the
    shipped demo bundle when none is named) and, once a part loaded it, its scorer."""

    cfg: AgentConfig
    bundle: Path
    scorer: Scorer | None = None

    def load(self) -> Scorer:
        """The bundle's scorer as the agent would build it (same trusted keys, runtimes and
        threads), without its self-test: the self-test part runs and reports that itself."""
        if self.scorer is None:
            from edge_agent.commands.overrides import trust
            from edge_agent.runtime.scorer import Scorer

            self.scorer = Scorer.from_bundle(
                self.bundle,
                self.cfg.threads,
                trusted=trust(self.cfg).keys,
                request=self.cfg.tflite.request(),
                check=False,
            )
        return self.scorer


def self_test_part(target: CheckTarget) -> bool:
    """The bundle's self-test on this runtime and CPU: one line; a failure raises the one-line
    SelfTestError the agent would refuse to start with."""
    from edge_agent.runtime.selftest import (
        SelfTestError,
        cpu_description,
        failure_line,
        load_reference,
    )

    scorer = target.load()
    rt, b = scorer.runtime, scorer.bundle
    where = f"bundle {b.root} version {b.path.name} ({b.model_version})"
    reference = load_reference(b)
    if reference is None:
        typer.echo(
            f"self-test: {where} has no self-test reference (exported before it "
            f"existed): {rt.label} ran one window, its numbers are not checked "
            "(re-export the bundle to add one)"
        )
        return True
    result = scorer.run_self_test(reference)
    if not result.passed:
        raise SelfTestError(failure_line(result, rt.label, rt.name, rt.xnnpack, str(b.path)))
    typer.echo(
        f"self-test passed: {rt.label} on this {cpu_description()}: {result.numbers()} [{where}]"
    )
    return True


@dataclass(frozen=True)
class Bench:
    """`bench_part`'s figures."""

    windows: int
    median_ms: float
    p90_ms: float
    peak_rss_mb: float


def measure(scorer: Scorer, windows: int) -> Bench:
    """Score `windows` windows (after one untimed warm-up) of the bundle's reference audio, or
    of seeded noise for a bundle without it, through `Scorer.score` (frontend, every
    component, backend: all a window costs the agent); peak RSS of this process afterwards."""
    import numpy as np

    from edge_agent.runtime.selftest import load_reference

    reference = load_reference(scorer.bundle)
    wave = (
        reference.wave
        if reference is not None
        else (0.03 * np.random.default_rng(0).standard_normal(scorer.spec.clip_samples)).astype(
            np.float32
        )
    )
    section = scorer.bundle.sections[0]
    scorer.score(wave, section)
    times = []
    for _ in range(windows):
        t0 = time.perf_counter()
        scorer.score(wave, section)
        times.append((time.perf_counter() - t0) * 1000.0)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return Bench(
        windows, float(np.median(times)), float(np.percentile(times, 90)), rss_kib / 1024.0
    )


def _device() -> str:
    """The board (device tree: Pi, Jetson), else the CPU model: what a user calls the device."""
    try:
        text = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
        if text:
            return text
    except OSError:
        pass
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    # x86: "model name"; a Pi's kernel: "Model" (its board); x86's "model" is a number
    return fields.get("model name") or fields.get("Model") or platform.machine() or "unknown"


def _os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.system()


def bench_part(target: CheckTarget, windows: int) -> bool:
    """ms per window and peak RSS, and the BENCHMARKS.md row for this device."""
    from importlib.metadata import PackageNotFoundError, version

    scorer = target.load()
    b = measure(scorer, windows)
    rt = scorer.runtime
    threads = target.cfg.threads
    try:
        agent = version("listening-monitor")
    except PackageNotFoundError:
        agent = "checkout"
    typer.echo(
        f"bench: {b.windows} windows of {scorer.spec.clip_seconds:g} s through "
        f"{rt.label}, {threads} thread{'s' if threads > 1 else ''}: "
        f"{b.median_ms:.1f} ms per window (median; 90th percentile {b.p90_ms:.1f} ms), "
        f"peak RSS {b.peak_rss_mb:.0f} MB"
    )
    typer.echo(
        'row for BENCHMARKS.md ("Your device"): '
        f"| {_device()} | {platform.machine()} | {_os()}, Python "
        f"{platform.python_version()} | {rt.label} | {threads} | {b.median_ms:.1f} | "
        f"{b.p90_ms:.1f} | {b.peak_rss_mb:.0f} | {agent} |"
    )
    return True


def listen_part(target: CheckTarget, seconds: float) -> bool:
    """Each machine's input for `seconds`, against its section's profile: one verdict line per
    machine and its measures; False when any input does not hear like the training audio."""
    from edge_agent.errors import EdgeAgentError
    from edge_agent.runtime.hearing import Rolling, compare, listen, unchecked_message
    from edge_agent.sources import open_source

    scorer = target.load()
    spec = scorer.spec
    passed = True
    for m in target.cfg.monitor_list():
        name = f"{m.name} ({m.section})" if m.name != m.section else m.name
        profile = scorer.bundle.profile(m.section)
        try:
            src = open_source(m.source, spec.sample_rate)
            with src:
                where = src.name
                heard = listen(src, spec, seconds, m.health)
        except EdgeAgentError as exc:
            typer.echo(f"listen {name}: FAILED: {exc}")
            passed = False
            continue
        if not heard.summaries:
            typer.echo(
                f"listen {name}: FAILED: nothing heard from {where} ({heard.stopped or 'no audio'})"
            )
            passed = False
            continue
        r = Rolling.of(heard.summaries)
        short = f" ({heard.stopped} after {heard.seconds:.0f} s)" if heard.stopped else ""
        measures = ", ".join(f"{k} {v:g}" for k, v in r.measures(profile).items())
        if profile is None:
            typer.echo(
                f"listen {name}: {heard.seconds:.0f} s of {where}{short}: "
                f"{unchecked_message(m.section)} [{measures}]"
            )
            continue
        found = compare(r, profile, target.cfg.hearing)
        if found:
            passed = False
            typer.echo(
                f"listen {name}: MISMATCH after {heard.seconds:.0f} s of {where}{short}:"
                f" {'; '.join(f.sentence for f in found)} [{measures}]"
            )
        else:
            typer.echo(
                f"listen {name}: ok, {heard.seconds:.0f} s of {where}{short} hear like "
                f"the training audio [{measures}]"
            )
    return passed


def check_cmd(
    config: opt.Config = None,
    bundle: opt.Bundle = None,
    runtime: opt.TfliteRuntime = None,
    xnnpack: opt.Xnnpack = None,
    threads: opt.Threads = None,
    bench: Annotated[
        bool,
        typer.Option("--bench", help="Also time the scoring path: ms per window and peak RSS."),
    ] = False,
    windows: Annotated[
        int, typer.Option("--windows", min=1, max=10_000, help="Windows timed by --bench.")
    ] = 20,
    listen_s: Annotated[
        float | None,
        typer.Option(
            "--listen",
            min=1.0,
            max=3600.0,
            metavar="SECONDS",
            help="Also listen to each configured input this long and compare it with the "
            "training audio (bandwidth, level, noise floor, clipping).",
        ),
    ] = None,
) -> None:
    """Check that this device scores as the bundle was made to (self-test), and how fast.

    The bundle: --bundle, else the config's, else the shipped demo bundle. The TFLite runtime
    is chosen as the agent chooses it (config `tflite:`; --runtime and --xnnpack/--no-xnnpack
    try another). Exit 0 when every part passes; a failed self-test is one `error:` line saying
    which runtime, which CPU features, what difference and what to do (exit 2). With
    --listen, an input that does not hear like the training audio fails the check (exit 1)
    with a sentence saying what to check.
    """
    flags = Flags(bundle=bundle, threads=threads, tflite_runtime=runtime, xnnpack=xnnpack)
    cfg = agent_config(config, flags)
    target = CheckTarget(cfg, Path(cfg.bundle) if cfg.bundle else DEMO_BUNDLE)
    passed = self_test_part(target)
    if listen_s is not None:
        passed = listen_part(target, listen_s) and passed
    if bench:
        passed = bench_part(target, windows) and passed
    sys.stdout.flush()
    raise typer.Exit(0 if passed else 1)
