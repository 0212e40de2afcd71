"""Device scoring latency and memory per 10 s window, per bundle, vs the float Keras model.

    nice .venv/bin/python benchmarks/device_latency.py --bundles DIR [--run RUN] [--windows 60]

DIR holds one bundle per subfolder (DIR/<name>/: a quantisation mode as
benchmarks/quantization.py --out writes them, or any bundles to compare, e.g. ensembles of
different sizes). Every measurement runs in its own child process so that peak RSS
(`ru_maxrss`) is that of a process that only scores: TFLite children import edge_agent only
(no TensorFlow), the Keras child imports TensorFlow and the run. Per window: numpy frontend
(framed pocketfft STFT + full-clip FFT, edge_agent/scoring/fft.py), inference of every model,
classical components (band statistics, rhythm), backend (every component's references,
densities, normalisers, fusion); median and p95 over `--windows` windows after 3 warm-up
windows, for 1 and 2 threads. "CPU ms" is the scoring thread's CPU time per window
(`time.thread_time`): with 1 thread it is the latency an idle core would see, whatever else
the machine runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _windows(n: int) -> Iterator[np.ndarray]:
    """One window at a time (a device holds one window, not the whole benchmark's audio)."""
    rng = np.random.default_rng(0)
    for _ in range(n):
        yield (0.1 * rng.standard_normal(160_000)).astype(np.float32)


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95))}


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_tflite(bundle: str, threads: int, n: int) -> dict[str, Any]:
    from edge_agent.runtime.scorer import ModelEmbedder, Scorer, WindowFeatures

    s = Scorer.from_bundle(bundle, threads=threads)
    section = s.bundle.sections[0]
    backend = s.bundle.backend(section)
    parts: dict[str, list[float]] = {
        "frontend": [],
        "inference": [],
        "classical": [],
        "backend": [],
        "total": [],
        "cpu": [],
    }
    for i, w in enumerate(_windows(n + 3)):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        feats = WindowFeatures(w, s.spec)
        shared = [feats[name] for name in ("spectrogram", "spectrum")]  # once, for every model
        t1 = time.perf_counter()
        del shared
        embs = []
        t_models = t_classical = 0.0
        for c in s.components:
            tc = time.perf_counter()
            embs.append(c.embed_features(feats))
            if isinstance(c, ModelEmbedder):
                t_models += time.perf_counter() - tc
            else:
                t_classical += time.perf_counter() - tc
        t2 = time.perf_counter()
        backend.score(embs)
        t3 = time.perf_counter()
        c3 = time.thread_time()
        if i >= 3:
            for k, v in (
                ("frontend", t1 - t0),
                ("inference", t_models),
                ("classical", t_classical),
                ("backend", t3 - t2),
                ("total", t3 - t0),
                ("cpu", c3 - c0),
            ):
                parts[k].append(1000 * v)
    return {
        **{k: _stats(v) for k, v in parts.items()},
        "rss_mb": _rss_mb(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "runtime": s.runtime_name,
        "components": [c["kind"] for c in s.bundle.components],
    }


def child_keras(run: str, threads: int, n: int) -> dict[str, Any]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from edge_agent.scoring.frontend import DEFAULT_SPEC, spectrogram, spectrum
    from model_build.training.runs import load_run

    model = load_run(run).models[0]
    parts: dict[str, list[float]] = {"frontend": [], "inference": [], "total": []}
    for i, w in enumerate(_windows(n + 3)):
        t0 = time.perf_counter()
        x = [
            spectrogram(w, DEFAULT_SPEC)[None, ..., None],
            spectrum(w, DEFAULT_SPEC)[None, :, None],
        ]
        t1 = time.perf_counter()
        np.asarray(model(x, training=False))
        t2 = time.perf_counter()
        if i >= 3:
            for k, v in (("frontend", t1 - t0), ("inference", t2 - t1), ("total", t2 - t0)):
                parts[k].append(1000 * v)
    return {**{k: _stats(v) for k, v in parts.items()}, "rss_mb": _rss_mb()}


def _spawn(kind: str, target: str, threads: int, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, target, str(threads), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", type=Path, required=False)
    ap.add_argument("--run", type=Path, default=None, help="also time the float Keras model")
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, target, threads, n = args.child
        fn = child_tflite if kind == "tflite" else child_keras
        print(json.dumps(fn(target, int(threads), int(n))))
        return
    if args.windows < 50:
        ap.error("--windows: at least 50")
    rows = []
    head = (
        "| bundle | components | threads | frontend ms | inference ms | classical ms | "
        "backend ms | total median ms | total p95 ms | CPU ms (scoring thread) | "
        "peak RSS MB |"
    )
    rows += [head, "|" + "---|" * 11]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    targets = sorted(
        p for p in (args.bundles.iterdir() if args.bundles else []) if (p / "current").exists()
    )
    for path in targets:
        for th in (1, 2):
            r = _spawn("tflite", str(path), th, args.windows)
            assert not r["tensorflow_imported"]
            results.setdefault(path.name, {})[th] = r
            kinds = "+".join(
                f"{r['components'].count(k)} {k}" for k in dict.fromkeys(r["components"])
            )
            rows.append(
                f"| {path.name} ({r['runtime']}) | {kinds} | {th} | "
                f"{r['frontend']['median']:.2f} | {r['inference']['median']:.2f} | "
                f"{r['classical']['median']:.2f} | {r['backend']['median']:.3f} | "
                f"{r['total']['median']:.2f} | {r['total']['p95']:.2f} | "
                f"{r['cpu']['median']:.2f} | {r['rss_mb']:.0f} |"
            )
            print(rows[-1], flush=True)
    if args.run:
        for th in (1, 2):
            r = _spawn("keras", str(args.run), th, args.windows)
            results.setdefault("keras", {})[th] = r
            rows.append(
                f"| float Keras (model 0) | 1 model | {th} | "
                f"{r['frontend']['median']:.2f} | {r['inference']['median']:.2f} | - | "
                f"- | {r['total']['median']:.2f} | {r['total']['p95']:.2f} | - | "
                f"{r['rss_mb']:.0f} |"
            )
            print(rows[-1], flush=True)
    print("\n".join(rows))
    if "keras" in results:
        k = results["keras"][1]
        for mode in results:
            if mode == "keras":
                continue
            r = results[mode][1]
            print(
                f"{mode}: {k['total']['median'] / r['total']['median']:.1f}x faster, "
                f"{k['rss_mb'] / r['rss_mb']:.1f}x leaner than Keras (1 thread)"
            )


if __name__ == "__main__":
    main()
