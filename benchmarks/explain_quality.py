"""How often does an alarm's explanation name the right kind of change and the right band?

    nice .venv/bin/python benchmarks/explain_quality.py --out runs/explain          # all
    nice .venv/bin/python benchmarks/explain_quality.py --out runs/explain --quick  # iteration

The quality suite's synthetic families (model_build.synth: harmonic, broadband, cyclic; the
suite's data seed 11, 3 sections per machine type) know every anomaly's nature, so they can
grade the explanation (edge_agent.scoring.explain) without a person:

1. per section, the audio profile is built from its normal training clips (`--train` source
   clips + 10 target clips), exactly as `model-build export` builds it
   (edge_agent.scoring.explain.profile_from_waves);
2. every anomalous test clip (both domains) is explained as if it alone had raised an alarm
   (one 10 s voting window), against its section's profile;
3. the right KIND is the one the generator's anomaly is (`EXPECTED`: e.g. `rattle` ->
   impulsive, `clog` -> band_shift; a few generator kinds are two things at once and accept
   either, listed in `EXPECTED`); the right BAND is any overlap between the band the
   explanation names and the frequencies where the generator's anomaly part (rendered apart
   from the machine, before the room and background) has its energy (within 10 dB of its
   strongest STFT bin). Anomalies that only retime or modulate the normal sound (jitter,
   slowdown, missing events, clog) have no energy of their own: only their kind is graded.

The clips are rendered in memory from the same generator code and keys as `model-build synth`
writes (bit-identical audio); nothing is tuned on these test clips beyond what BENCHMARKS.md
states. Output: a table per family and generator kind (n, right kind %, right band %), all
clips and those of severity >= 0.5, in OUT/explain.md and OUT/explain.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.explain import explain, profile_from_waves
from edge_agent.scoring.frontend import DEFAULT_SPEC, stft_magnitude
from edge_agent.scoring.profile import detail, wave_levels

DATA_SEED = 11  # benchmarks/quality.py's
FAMILIES = ("harmonic", "broadband", "cyclic")
EXPECTED: dict[str, tuple[str, ...]] = {
    # harmonic
    "extra_harmonic": ("tonal",),
    "shifted_harmonic": ("tonal",),
    "jitter": ("modulation",),
    "tooth_sideband": ("modulation", "impulsive"),
    "outer_race": ("impulsive",),
    "inner_race": ("impulsive",),
    "rattle": ("impulsive",),
    "missing_event": ("rhythm",),
    "extra_event": ("impulsive", "rhythm"),
    "leak": ("tonal",),
    # broadband
    "cavitation": ("impulsive", "level"),
    "clog": ("band_shift",),
    "imbalance": ("tonal",),
    "misalignment": ("tonal",),
    "belt_squeal": ("tonal",),
    "seal_leak": ("level", "tonal"),
    "bearing_wear": ("level", "modulation"),
    # cyclic
    "timing_jitter": ("rhythm",),
    "missing_cycle": ("rhythm",),
    "extra_impact": ("impulsive",),
    "slowdown": ("rhythm",),
    "squeal": ("tonal",),
    "grind": ("level",),
    "wobble": ("modulation",),
}
"""Generator anomaly kind -> the explanation kinds that name it rightly (first: its main)."""


def parts_fn(family: str) -> Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]:
    """(normal part, anomaly part) of a clip job, drawn exactly as the family's render does."""
    from model_build.synth import core

    if family == "harmonic":

        def harmonic(job: Any, sec: Any) -> tuple[np.ndarray, np.ndarray]:
            d = core.draw_clip(job, sec, core.ANOMALY_KINDS)
            return core.machine_sound(d.rng, sec, d.attrs, core.Anomaly(d.kind, d.severity))

        return harmonic
    mod = __import__(f"model_build.synth.{family}", fromlist=["_machine"])

    def other(job: Any, sec: Any) -> tuple[np.ndarray, np.ndarray]:
        d = core.draw_clip(job, sec, mod.ANOMALY_KINDS)
        # the family's own renderer, as its clips were made (no public per-clip entry point)
        return mod._machine(d.rng, sec, mod._parse(d.attrs), d.kind, d.severity)  # type: ignore[no-any-return]  # noqa: SLF001

    return other


def truth_bins(anom: np.ndarray) -> np.ndarray | None:
    """STFT bins where the anomaly part has its energy (within 10 dB of its strongest)."""
    if not np.any(anom):
        return None
    p = (stft_magnitude(anom.astype(np.float32), DEFAULT_SPEC) ** 2).mean(axis=0)
    return np.flatnonzero(p >= p.max() / 10)


def band_right(band: list[float], bins: np.ndarray) -> bool:
    hz = DEFAULT_SPEC.sample_rate / DEFAULT_SPEC.n_fft
    lo, hi = band
    return bool(np.any((bins * hz + hz / 2 >= lo) & (bins * hz - hz / 2 <= hi)))


def run_family(
    family_name: str, n_train: int, n_test: int, sections: int, machines: list[str] | None
) -> list[dict[str, Any]]:
    from model_build.synth.core import ClipJob, family

    fam = family(family_name)
    parts = parts_fn(family_name)
    rows = []
    for machine in machines or fam.machines:
        for s in range(sections):
            sec = fam.make_section(DATA_SEED, machine, s)
            t0 = time.perf_counter()
            train = [
                fam.render(ClipJob(machine, s, "source", "train", "normal", i, DATA_SEED), sec)[0]
                for i in range(n_train)
            ]
            train += [
                fam.render(ClipJob(machine, s, "target", "train", "normal", i, DATA_SEED), sec)[0]
                for i in range(10)
            ]
            prof = profile_from_waves(train, DEFAULT_SPEC, "benchmark")
            for domain in ("source", "target"):
                for i in range(n_test):
                    job = ClipJob(machine, s, domain, "test", "anomaly", i, DATA_SEED)
                    wave, info = fam.render(job, sec)
                    ex = explain([detail(wave, DEFAULT_SPEC, *wave_levels(wave))], prof)
                    bins = truth_bins(parts(job, sec)[1])
                    d = ex.to_dict()
                    want = EXPECTED[str(info.kind)]
                    rows.append(
                        {
                            "family": family_name,
                            "machine": machine,
                            "section": s,
                            "domain": domain,
                            "kind": info.kind,
                            "severity": info.severity,
                            "said": ex.kind,
                            "kind_right": ex.kind in want,
                            "band_right": None
                            if bins is None or "band_hz" not in d
                            else band_right(d["band_hz"], bins),
                            "sentence": ex.sentence,
                        }
                    )
            print(
                f"{family_name} {machine} section {s}: {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return rows


def pct(xs: list[bool]) -> str:
    return f"{100 * np.mean(xs):.0f}" if xs else "-"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        (
            "| family | anomaly | expected | n | right kind % | right band % | n (sev >= 0.5) "
            "| right kind % | right band % | most often said |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["family"], r["kind"])].append(r)
    totals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (fam, kind), rs in sorted(groups.items()):
        strong = [r for r in rs if r["severity"] >= 0.5]
        said: dict[str, int] = defaultdict(int)
        for r in rs:
            said[r["said"]] += 1
        top = ", ".join(f"{k} {v}" for k, v in sorted(said.items(), key=lambda x: -x[1])[:3])

        def cells(rr: list[dict[str, Any]]) -> str:
            bands = [r["band_right"] for r in rr if r["band_right"] is not None]
            return f"{len(rr)} | {pct([r['kind_right'] for r in rr])} | {pct(bands)}"

        out.append(
            f"| {fam} | {kind} | {'/'.join(EXPECTED[kind])} | {cells(rs)} | "
            f"{cells(strong)} | {top} |"
        )
        totals[fam] += rs
    for fam, rs in totals.items():
        strong = [r for r in rs if r["severity"] >= 0.5]
        bands = [r["band_right"] for r in rs if r["band_right"] is not None]
        sb = [r["band_right"] for r in strong if r["band_right"] is not None]
        out.append(
            f"| **{fam}** | all | | {len(rs)} | {pct([r['kind_right'] for r in rs])} | "
            f"{pct(bands)} | {len(strong)} | "
            f"{pct([r['kind_right'] for r in strong])} | {pct(sb)} | |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="1 section, 20 train, 8 test clips")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--machines", default="")
    ap.add_argument("--train", type=int, default=100, help="source training clips per section")
    ap.add_argument("--test", type=int, default=25, help="anomalous test clips per domain")
    ap.add_argument("--sections", type=int, default=3, help="sections per machine type")
    a = ap.parse_args(argv)
    n_train, n_test, sections = (20, 8, 1) if a.quick else (a.train, a.test, a.sections)
    machines = [m for m in a.machines.split(",") if m] or None
    rows: list[dict[str, Any]] = []
    for fam in a.families.split(","):
        rows += run_family(fam, n_train, n_test, sections, machines)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "explain.json").write_text(json.dumps(rows, indent=1))
    text = table(rows)
    (a.out / "explain.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
