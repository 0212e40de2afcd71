"""The child of a runtime probe (edge_agent.runtime.probe): ONE runtime on ONE bundle version.

    python -m edge_agent.runtime.probe_child RUNTIME VERSION_DIR [--no-xnnpack] [--no-verify]

Loads the runtime (its own probe model first), then the bundle's models with it, and runs the
bundle's self-test (edge_agent.runtime.selftest) or, for a bundle without one, one inference
of each model that must give finite numbers. Prints one JSON line on stdout, `{"passed": ...,
"wrong_numbers": ..., "runtime_works": ..., "detail": "..."}`; if the runtime crashes, there
is no line and the parent reads the signal from the exit status. Runs in its own process
precisely so that a crash here costs nothing but this runtime.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edge_agent.scoring.embedder import Runtime


def verdict(
    passed: bool, detail: str, wrong_numbers: bool = False, runtime_works: bool = True
) -> dict[str, object]:
    """The JSON line: `runtime_works` false when the runtime itself failed (try the next);
    true with `passed` false when the BUNDLE fails on a working runtime (its own error)."""
    return {
        "passed": passed,
        "wrong_numbers": wrong_numbers,
        "detail": detail,
        "runtime_works": runtime_works,
    }


def trial(runtime_name: str, vdir: Path, xnnpack: bool, verify: bool) -> dict[str, object]:
    """What runtime `runtime_name` does with the bundle version `vdir` (never raises)."""
    from edge_agent.errors import EdgeAgentError
    from edge_agent.runtime.scorer import one_line
    from edge_agent.scoring.embedder import RUNTIMES, failure_reason, load_runtime

    names = [n for n in RUNTIMES if n == runtime_name]
    if not names:
        return verdict(
            False, f"unknown runtime (expected one of {', '.join(RUNTIMES)})", runtime_works=False
        )
    try:
        runtime = load_runtime(names[0], xnnpack)
    except Exception as exc:  # not installed, wrong numpy ABI...: its reason
        return verdict(
            False, failure_reason(runtime_name, exc).partition(": ")[2], runtime_works=False
        )
    try:
        return judge(runtime, vdir, verify)
    except EdgeAgentError as exc:
        return verdict(False, str(exc))
    except Exception as exc:  # the runtime failing on this model: its reason
        return verdict(False, one_line(exc))


def judge(runtime: Runtime, vdir: Path, verify: bool) -> dict[str, object]:
    """The bundle's models on `runtime`: its self-test, or without one, one inference of each
    model on inputs of its own shapes (the frontend's fit to the model is the scorer's
    `smoke_test`'s business, in the agent's process: it raises, it does not crash)."""
    from edge_agent.bundle.load import load_bundle
    from edge_agent.runtime.scorer import ModelEmbedder, Scorer, one_line
    from edge_agent.runtime.selftest import failure_line, load_reference

    bundle = load_bundle(vdir, verify=verify)
    scorer = Scorer.from_loaded(bundle, runtime=runtime, check=False)
    reference = load_reference(bundle)
    if reference is None:
        rng = np.random.default_rng(0)
        for c in scorer.components:
            if isinstance(c, ModelEmbedder):
                out = c.embedder.embed(
                    *(
                        0.1 * rng.standard_normal(shape).astype(np.float32)
                        for shape in c.embedder.input_shapes
                    )
                )
                if not np.all(np.isfinite(out)):
                    return verdict(False, f"{vdir}: the model gives a non-finite embedding", True)
        return verdict(True, f"{runtime.label}: ran the model once (no self-test reference)")
    try:
        result = scorer.run_self_test(reference)
    except Exception as exc:  # the frontend or a model on the reference window
        return verdict(False, f"{vdir}: cannot score the self-test window ({one_line(exc)})")
    if not result.passed:
        return verdict(
            False,
            failure_line(result, runtime.label, runtime.name, runtime.xnnpack, str(bundle.path)),
            True,
        )
    return verdict(True, f"{runtime.label}: {result.numbers()}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a.startswith("--")}
    rest = [a for a in args if not a.startswith("--")]
    if len(rest) != 2 or flags - {"--no-xnnpack", "--no-verify"}:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = trial(rest[0], Path(rest[1]), "--no-xnnpack" not in flags, "--no-verify" not in flags)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
