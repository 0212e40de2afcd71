"""Training throughput and peak memory of `model-build train` on this machine.

Writes two synthetic DCASE-layout data sets (N and 4N training clips of 10 s), trains the
paper-size network (or --width) for --epochs (2) epochs on each in a fresh subprocess, and prints
clips/s of the last epoch (the first includes graph tracing) and each process's peak RSS.
Streaming means the peak RSS of the 4N run stays within a few percent of the N run.

    .venv/bin/python benchmarks/train_throughput.py [--clips 64] [--batch-size 64] [--width 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_set(root: Path, n: int) -> None:
    from edge_agent.audio.files import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(160_000) / 16_000
    folder = root / "fan" / "train"
    folder.mkdir(parents=True)
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * (300 + 50 * (i % 8)) * t) + 0.05 * rng.standard_normal(t.size)
        write_wav(folder / f"section_0{i % 3}_source_train_normal_{i:04d}_a_{i % 4}.wav", x, 16_000)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(root: Path, out: Path, batch_size: int, width: float, epochs: int) -> None:
    import threading

    from model_build.training.model import ModelConfig
    from model_build.training.train import TrainConfig, train_run

    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append(_rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.monotonic()
    train_run(
        [root],
        out,
        ModelConfig(width=width),
        TrainConfig(epochs=epochs, batch_size=batch_size, verbose=False),
    )
    done.set()
    half = len(samples) // 2
    meta = json.loads((out / "run.json").read_text())
    print(
        json.dumps(
            {
                "clips": meta["n_train_clips"],
                "last_epoch_s": meta["models"][0]["last_epoch_seconds"],
                "total_s": round(time.monotonic() - t0, 1),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_rss_first_half_mb": max(samples[:half], default=0.0),
                "peak_rss_second_half_mb": max(samples[half:], default=0.0),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=64, help="N (the second set has 4N)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per set (>= 2)")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batch_size, args.width, args.epochs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.clips, 4 * args.clips):
            root = Path(tmp) / f"data_{n}"
            write_set(root, n)
            res = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--batch-size",
                    str(args.batch_size),
                    "--width",
                    str(args.width),
                    "--epochs",
                    str(args.epochs),
                    "--child",
                    str(root),
                    str(Path(tmp) / f"run_{n}"),
                ],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                sys.exit(f"training {n} clips failed:\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(
                f"{r['clips']:5d} clips  width {args.width}  batch {args.batch_size}: "
                f"{r['clips'] / r['last_epoch_s']:6.2f} clips/s (last epoch), "
                f"peak RSS {r['peak_rss_mb']:5.0f} MB (first/second half of the run "
                f"{r['peak_rss_first_half_mb']:.0f}/{r['peak_rss_second_half_mb']:.0f} MB), "
                f"total {r['total_s']} s"
            )


if __name__ == "__main__":
    main()
