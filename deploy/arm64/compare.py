"""Compare the demo's window scores on an emulated arm64 CPU with the x86 run (arm64-check.sh).

    python3 compare.py MANIFEST x86.jsonl LABEL=arm.jsonl [LABEL=arm.jsonl ...]

Each .jsonl is `edge-agent demo --fast --json` output. Every window the x86 run scored must be
scored on the CPU too, with a score within the bundle's own tolerance (MANIFEST's
`self_test.max_score_difference`: the quantisation check of `model-build export`, see
edge_agent.runtime.selftest), the same above/below-threshold verdict wherever x86's score is
farther from the threshold than that tolerance, and the alarm raised at the same window.
One line per CPU; exit 1 if any differs. Standard library only (runs with any python3).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_TOLERANCE = 0.1  # a bundle without a self-test: edge_agent.runtime.selftest.FLOORS


def events(path: Path) -> tuple[dict[int, dict[str, object]], list[int]]:
    """(window -> its score event, windows where an alarm was raised)."""
    scores: dict[int, dict[str, object]] = {}
    alarms: list[int] = []
    for line in path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        e = json.loads(line)
        if e.get("kind") == "score":
            scores[int(e["window"])] = e
        elif e.get("kind") == "alarm" and e.get("decision") == "alarm":
            alarms.append(int(e["window"]))
    return scores, alarms


def compare(x86: Path, arm: Path, tolerance: float) -> tuple[bool, str]:
    want, want_alarms = events(x86)
    got, got_alarms = events(arm)
    if not want:
        return False, f"no scored window in the x86 run {x86}"
    problems: list[str] = []
    worst = 0.0
    for w, e in sorted(want.items()):
        g = got.get(w)
        if g is None:
            problems.append(f"window {w} not scored")
            continue
        diff = abs(float(g["score"]) - float(e["score"]))  # type: ignore[arg-type]
        worst = max(worst, diff)
        if diff > tolerance:
            problems.append(f"window {w} scores {g['score']} vs x86 {e['score']}")
        margin = abs(float(e["score"]) - float(e["threshold"]))  # type: ignore[arg-type]
        if margin > tolerance and g["anomalous"] != e["anomalous"]:
            problems.append(f"window {w} anomalous={g['anomalous']} vs x86 {e['anomalous']}")
    if got_alarms[:1] != want_alarms[:1]:
        problems.append(
            f"alarm at window {got_alarms[:1] or 'none'}, x86 at {want_alarms[:1] or 'none'}"
        )
    summary = (
        f"{len(got)}/{len(want)} windows, largest score difference to x86 {worst:.4f} "
        f"(tolerance {tolerance:g}), alarm at window "
        f"{got_alarms[0] if got_alarms else 'none'} (x86: "
        f"{want_alarms[0] if want_alarms else 'none'})"
    )
    if problems:
        return False, f"{summary}; DIFFERS: {'; '.join(problems[:4])}"
    return True, summary


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not all("=" in a for a in argv[2:]):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    manifest = json.loads(Path(argv[0]).read_text())
    tolerance = float(manifest.get("self_test", {}).get("max_score_difference", DEFAULT_TOLERANCE))
    ok = True
    for spec in argv[2:]:
        label, _, path = spec.partition("=")
        same, line = compare(Path(argv[1]), Path(path), tolerance)
        print(f"[arm64] {label}: {'same as x86' if same else 'FAILED'}: {line}")
        ok = ok and same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
