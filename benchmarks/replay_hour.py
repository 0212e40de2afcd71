"""Replay >= 1 hour of audio through `edge-agent run` as fast as possible.

Measures what a device owner needs to size hardware: windows per second, CPU seconds per
10 s window, and the agent's RSS sampled over the run (it must stay flat: nothing may grow
with the amount of audio processed). The agent runs as a real `edge-agent run` subprocess
(files source, `--fast`, JSON lines to a file, no broker).

    .venv/bin/python benchmarks/replay_hour.py --bundle BUNDLE [--section S] [--minutes 60]

Without --bundle a model (--width, default 0.25; 1 epoch on synthetic data) is trained and
exported first; compute per window depends only on the architecture, not on training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_bundle(work: Path, width: float) -> Path:
    from model_build.export import DEFAULT_MODE, export_run
    from model_build.synth.core import SynthConfig, generate
    from model_build.training.model import ModelConfig
    from model_build.training.train import TrainConfig, train_run

    root = work / "synth"
    generate(
        SynthConfig(
            seed=0, machines=("fan",), sections=1, source_train=16, target_train=4, test_per_label=2
        ),
        root,
    )
    train_run(
        [root],
        work / "run",
        ModelConfig(width=width),
        TrainConfig(epochs=1, batch_size=8, seed=0, verbose=False),
    )
    export_run(work / "run", work / "bundle", DEFAULT_MODE)
    return work / "bundle"


def write_clips(folder: Path, n: int) -> list[Path]:
    from edge_agent.audio.files import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(160_000) / 16_000
    out = []
    for i in range(n):
        x = 0.2 * np.sin(2 * np.pi * (200 + 37 * i) * t) + 0.05 * rng.standard_normal(t.size)
        p = folder / f"clip_{i:02d}.wav"
        write_wav(p, x.astype(np.float32), 16000)
        out.append(p)
    return out


def proc_stat(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds user+system) of a live process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--section", default="fan_section_00")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--width",
        type=float,
        default=0.25,
        help="width of the model trained when no --bundle is given (1.0 = the paper's size)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.bundle.resolve() if args.bundle else make_bundle(work, args.width)
        clips = write_clips(work, 12)
        n_windows = int(np.ceil(args.minutes * 6))
        files = [str(clips[i % len(clips)]) for i in range(n_windows)]
        cfg = work / "agent.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "bundle": str(bundle),
                    "section": args.section,
                    "threads": args.threads,
                    "source": {"kind": "files", "files": files, "realtime": False},
                    "log": {"stdout": False, "jsonl_file": str(work / "events.jsonl")},
                }
            )
        )
        cmd = [sys.executable, "-m", "edge_agent.cli", "run", "-c", str(cfg), "--fast"]
        import resource

        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, float, float]] = []  # (t, rss, cpu)
        while proc.poll() is None:
            try:
                rss, cpu = proc_stat(proc.pid)
                if rss > 0:
                    samples.append((time.monotonic() - t0, rss, cpu))
            except (OSError, IndexError):
                pass
            time.sleep(0.1)
        wall = time.monotonic() - t0
        err = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0:
            sys.exit(f"edge-agent run failed ({proc.returncode}):\n{err}")
        events = [json.loads(x) for x in (work / "events.jsonl").read_text().splitlines()]
        scored = [e for e in events if e["kind"] == "score"]
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_total = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        rss_mb = [s[1] for s in samples]
        q = [rss_mb[min(len(rss_mb) - 1, int(f * len(rss_mb)))] for f in (0.25, 0.5, 0.75)] + [
            rss_mb[-1]
        ]
        print(
            f"command: {' '.join(cmd[1:3])} run -c agent.yaml --fast  "
            f"(bundle {bundle.name}, threads {args.threads})"
        )
        print(f"audio replayed: {len(scored) * 10 / 60:.1f} min ({len(scored)} windows of 10 s)")
        print(
            f"wall: {wall:.1f} s incl. start-up  ->  {len(scored) / wall:.2f} windows/s, "
            f"{len(scored) * 10 / wall:.0f}x real time"
        )
        print(
            f"CPU: {cpu_total:.1f} s total, {1000 * cpu_total / max(1, len(scored)):.1f} ms "
            f"per window (incl. start-up)"
        )
        print(
            "RSS MiB at 25/50/75/100 % of the run: "
            + " / ".join(f"{x:.0f}" for x in q)
            + f"  (peak {max(rss_mb):.0f}, {len(rss_mb)} samples every 0.1 s)"
        )
        print(f"windows dropped: {events[-1].get('windows_dropped', 'n/a')}")


if __name__ == "__main__":
    main()
