"""What the hearing check and the alarm explanations cost (issue 21's budgets).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hearing_cost.py

1. per window, on one thread: `summarise` from the |STFT| the scorer computed anyway (what the
   agent adds to every scored window; budget 1 ms), next to `Scorer.score` itself;
2. per alarm: the details of 3 voting windows and the explanation (computed only on a raise);
3. the peak RSS of the real agent replaying the demo with the hearing check on (one machine;
   budget 120 MB): `edge-agent demo --fast --json` in a child process.

The demo bundle and its clips are the input (edge_agent/demo). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_agent.audio.files import read_wav
from edge_agent.runtime.scorer import Scorer, WindowFeatures
from edge_agent.scoring.explain import explain
from edge_agent.scoring.profile import detail, summarise, wave_levels

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "edge_agent" / "demo"
SECTION = "fan_section_00"


def _median_ms(f: object, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    # no options; --help says what it measures (the docs-commands test runs it)
    argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0]).parse_args(argv)
    scorer = Scorer.from_bundle(DEMO / "bundle", threads=1)
    profile = scorer.bundle.profile(SECTION)
    if profile is None:
        print("the demo bundle has no audio profile", file=sys.stderr)
        return 1
    wave = read_wav(DEMO / "clips" / "01_normal.wav")[0][: scorer.spec.clip_samples]
    levels = wave_levels(wave)
    feats = WindowFeatures(wave, scorer.spec)
    mag = feats.magnitude
    summarise(mag, scorer.spec, *levels)
    per_window = _median_ms(lambda: summarise(mag, scorer.spec, *levels), 200)
    scorer.score(wave, SECTION)
    score = _median_ms(lambda: scorer.score(wave, SECTION), 20)
    print(f"per window: summary {per_window:.3f} ms (budget 1 ms), scoring {score:.1f} ms")
    faulty = [
        read_wav(DEMO / "clips" / f"{i:02d}_faulty.wav")[0][: scorer.spec.clip_samples]
        for i in (7, 8, 9)
    ]

    def alarm() -> None:
        explain([detail(w, scorer.spec, *wave_levels(w)) for w in faulty], profile)

    print(f"per alarm: explanation of 3 voting windows {_median_ms(alarm, 5):.0f} ms")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "demo", "--fast", "--json"],
        capture_output=True,
        check=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"agent peak RSS replaying the demo (one machine, hearing on): {rss:.0f} MB (budget 120 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
