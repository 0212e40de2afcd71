"""Which TFLite runtime scores here: each tried in a CHILD process, the first that passes.

Why a child: a runtime that fails may not raise, it may crash. ai-edge-litert segfaults while
setting up XNNPACK when the process sees a /proc/cpuinfo it does not understand (arm64 under
emulation, issue 24); tried in the agent's own process, the crash took the fallback to
tflite-runtime with it. So each runtime of the `RuntimeRequest` (config `tflite:`) is tried in
`python -m edge_agent.runtime.probe_child`, which loads the bundle's model with it, runs one
inference and compares it with the expected output: the bundle's self-test reference when it
has one (edge_agent.runtime.selftest: a runtime that computes other numbers does not pass),
else one finite inference of each model. The first runtime that passes is then loaded here
(`load_runtime`), where it is now known not to crash on these models. This process never
touches a model no child ran: a runtime that works (its own probe model runs) on which the
BUNDLE fails (a corrupt model, inputs unlike the manifest) gives the bundle's own one-line
BundleError, as a child reported it, and a model that crashes a runtime crashes only a child.

A runtime that computes WRONG numbers is refused: the self-test's one line says what to do
(edge_agent.runtime.selftest), and the config decides (`tflite:`). What a crash looks like:
under emulation with an x86 /proc/cpuinfo, ai-edge-litert 2.3.0 segfaults creating an
interpreter for the demo model with or without XNNPACK (even the reference kernels), and
tflite-runtime 2.14 cannot load a model converted by TF 2.21 (FULLY_CONNECTED version 12):
the device then says exactly that in one line instead of dying.

The choice is cached per process and per (request, model files, self-test file): a reload of
the same models, another Scorer of the same bundle, and every window after reuse it for free.

`python -m edge_agent.runtime.probe [BUNDLE]` is the same choice for shell scripts
(deploy/demo.sh, deploy/install.sh): it prints the runtime that passes (default bundle: the
shipped demo), or one line saying why none does: exit 3 when a runtime runs but fails the
self-test on this CPU, 1 when none runs at all.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.bundle.load import Bundle
from edge_agent.bundle.manifest import self_test_file
from edge_agent.errors import BundleError, EdgeAgentError, RuntimeUnavailableError
from edge_agent.runtime.selftest import SelfTestError
from edge_agent.scoring.embedder import (
    INSTALL_HINT,
    RUNTIMES,
    Runtime,
    RuntimeName,
    RuntimeRequest,
    failure_reason,
    load_runtime,
)

log = logging.getLogger("edge_agent")

CHILD = "edge_agent.runtime.probe_child"
TIMEOUT_S = 300.0
"""A child gets this long: importing numpy and a runtime and one window take ~0.3 s on x86,
a few seconds on a Pi, a minute under emulation; a hung runtime counts as failed after it."""
DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "demo" / "bundle"


@dataclass(frozen=True)
class Trial:
    """One child's verdict on one runtime."""

    runtime: RuntimeName
    xnnpack: bool
    passed: bool
    detail: str  # one line: what it computed, or why it failed
    wrong_numbers: bool = False  # it ran, but the self-test refused its numbers
    crashed: bool = False  # the child died of a signal
    bundle_failed: bool = False  # the runtime works; the bundle's model does not (its error)

    def reason(self) -> str:
        return f"{self.runtime} {'with' if self.xnnpack else 'without'} XNNPACK: {self.detail}"


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def try_runtime(
    vdir: Path,
    name: RuntimeName,
    xnnpack: bool = False,
    verify: bool = True,
    timeout: float = TIMEOUT_S,
) -> Trial:
    """Run the probe child for runtime `name` on the bundle version `vdir`."""
    cmd = [sys.executable, "-m", CHILD, name, str(vdir)]
    cmd += [] if xnnpack else ["--no-xnnpack"]
    cmd += [] if verify else ["--no-verify"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Trial(name, xnnpack, False, f"no answer within {timeout:g} s (hung)")
    except OSError as exc:
        return Trial(name, xnnpack, False, f"cannot start {sys.executable} ({exc.strerror})")
    if done.returncode < 0:
        return Trial(
            name,
            xnnpack,
            False,
            f"crashed ({_signal_name(done.returncode)}) loading or running the model",
            crashed=True,
        )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    try:
        verdict = json.loads(lines[-1])
        passed, wrong = bool(verdict["passed"]), bool(verdict.get("wrong_numbers"))
        return Trial(
            name,
            xnnpack,
            passed,
            " ".join(str(verdict["detail"]).split()),
            wrong,
            bundle_failed=not passed and not wrong and bool(verdict.get("runtime_works")),
        )
    except (IndexError, ValueError, KeyError, TypeError):
        tail = " ".join((done.stderr or done.stdout).split())[-160:]
        return Trial(name, xnnpack, False, f"exit {done.returncode} without a verdict ({tail})")


_lock = threading.Lock()
_chosen: dict[tuple[object, ...], Runtime] = {}


def _key(bundle: Bundle, request: RuntimeRequest, verify: bool) -> tuple[object, ...]:
    files = bundle.manifest["files"]
    reference = self_test_file(bundle.manifest)
    used = sorted(bundle.model_files + ([reference] if reference else []))
    return (request, verify, tuple((n, files.get(n)) for n in used))


def _trials(
    bundle: Bundle, request: RuntimeRequest, verify: bool
) -> tuple[list[Trial], Runtime | None]:
    """Every runtime of `request` in turn until one passes: (the trials, the runtime that
    passed, loaded in this process, or None)."""
    trials: list[Trial] = []
    for name in request.names:
        trial = try_runtime(bundle.path, name, request.xnnpack, verify)
        if trial.passed:
            try:
                runtime = load_runtime(name, request.xnnpack)
            except Exception as exc:  # passed in the child, fails here: say so
                trial = Trial(name, request.xnnpack, False, failure_reason("in this process", exc))
            else:
                trials.append(trial)
                return trials, runtime
        trials.append(trial)
    return trials, None


def choose_runtime(
    bundle: Bundle, request: RuntimeRequest | None = None, verify: bool = True
) -> Runtime:
    """The first runtime of `request` whose child passes on `bundle` (cached, module
    docstring). None passes: a one-line SelfTestError when one ran but computed other
    numbers; else a BundleError when a runtime works but the BUNDLE fails on it (a corrupt
    model, inputs unlike the manifest, a model too new for the runtime): the bundle's own
    words, with what the other runtimes did; else RuntimeUnavailableError naming every
    runtime tried and why it failed. A runtime chosen after another crashed or computed
    wrong numbers is logged as a warning: the log says what was refused."""
    request = request or RuntimeRequest()
    key = _key(bundle, request, verify)
    with _lock:  # one probe at a time: a reload and a fleet check may ask together
        if key in _chosen:
            return _chosen[key]
        trials, runtime = _trials(bundle, request, verify)
        if runtime is not None:
            _chosen[key] = runtime
    if runtime is not None:
        refused = [t for t in trials if t.crashed or t.wrong_numbers]
        if refused:
            log.warning(
                "TFLite runtime: %s chosen after %s",
                runtime.label,
                "; ".join(t.reason() for t in refused),
            )
        return runtime
    for kind, error in (("wrong_numbers", SelfTestError), ("bundle_failed", BundleError)):
        hits = [t for t in trials if getattr(t, kind)]
        if hits:
            others = "; ".join(t.reason() for t in trials if t is not hits[0])
            raise error(hits[0].detail + (f" (also tried: {others})" if others else ""))
    raise RuntimeUnavailableError(
        f"no TFLite runtime works ({'; '.join(t.reason() for t in trials)}); {INSTALL_HINT}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edge_agent.runtime.probe [BUNDLE] [--runtime NAME] [--xnnpack]`."""
    import argparse

    from edge_agent.bundle.load import load_bundle

    p = argparse.ArgumentParser(
        prog="python -m edge_agent.runtime.probe",
        description="Print the TFLite runtime that passes on BUNDLE.",
    )
    p.add_argument("bundle", nargs="?", type=Path, default=DEMO_BUNDLE)
    p.add_argument("--runtime", default="auto", choices=["auto", *RUNTIMES])
    p.add_argument("--xnnpack", action="store_true", help="XNNPACK's kernels (config default: off)")
    args = p.parse_args(argv)
    try:
        runtime = choose_runtime(
            load_bundle(args.bundle), RuntimeRequest.of(args.runtime, args.xnnpack)
        )
    except SelfTestError as exc:  # a runtime runs, but computes other numbers on this CPU
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(runtime.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
