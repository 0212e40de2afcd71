"""`model-build train`: the paper's training recipe, streamed from disk.

waveform -> mixup (lambda ~ U[0,1] per pair) -> TensorFlow frontend -> embedding model ->
sub-cluster AdaCos (fixed centres, adaptive scale) -> cross-entropy; Adam, batch 64, 10
epochs (paper_to_code.md). Clips are read by a tf.data pipeline (file list shuffled per
epoch, parallel reads, batch, prefetch), so memory does not grow with the data set.

Unreadable files are reported once (file + reason) and skipped by default: one broken WAV
out of 42 000 should not cost a ten-hour run; the skipped files land in run.json.
`--strict` stops at the first one instead.

Every epoch writes a checkpoint (embedding weights, centres + scale, optimizer state,
epoch, RNG state); training on an existing RUN resumes from it. The epoch's file order is
derived from (seed, epoch), so a resumed run sees the same order it would have seen.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.audio.files import load_clip
from edge_agent.errors import AudioFileError, EdgeAgentError
from edge_agent.scoring.frontend import DEFAULT_SPEC, FrontendSpec
from edge_agent.scoring.pseudo import FIRST_KINDS, Planned, perturb
from model_build.data.clip import Clip, DatasetError
from model_build.data.dataset import class_key, class_names, scan_layout
from model_build.progress import Progress
from model_build.training.model import ModelConfig
from model_build.training.runs import (
    CHECKPOINT_DIR,
    HEAD_FILE,
    RUN_FORMAT,
    WEIGHTS_FILE,
    model_dir,
    read_meta,
    write_meta,
)

DEFAULT_RUNS = 1
PERTURB_KINDS = FIRST_KINDS
"""The kinds `perturb_classes` (off by default) makes classes of: the six it was measured with;
the wobble joined the backend's pseudo-anomaly plan later and was not measured as a class."""
LOG_INTERVAL_S = 30.0
"""In a log (stderr not a terminal), a progress line at most this often, and one per epoch."""
"""Models trained (and exported) by default: an ensemble when > 1 (see BENCHMARKS.md)."""


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe (paper: Adam, batch 64, 10 epochs)."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    runs: int = DEFAULT_RUNS
    strict: bool = False
    verbose: bool = True
    # small data: at least this many optimiser steps (more epochs when the set is small;
    # the paper's 10 epochs over 42 000 clips are ~6 600 steps, over 240 clips only 40)
    min_steps: int = 0
    # small data: random circular time shift and +-gain per clip before mixup (on by default:
    # it helped the learned embedding on all three synthetic families, BENCHMARKS.md)
    augment: bool = True
    # stability: the final weights are the mean of the weights at the end of the last
    # `average` fraction of the epochs (checkpoint averaging, as in stochastic weight
    # averaging; BatchNorm statistics averaged alike), instead of the last epoch's alone.
    # 0 = off. With a few dozen clips per section the last epoch's weights depend a lot on
    # the seed and on the last batches; their average is a flatter, more repeatable point.
    average: float = 0.0
    # self-supervised classes (issue 19): every epoch adds this fraction of the training
    # clips again as perturbed copies (edge_agent.scoring.pseudo: a tone, a band boosted or
    # cut, impulses, a speed change, a modulation, a stutter), each labelled as a class of its
    # own (machine, section, kind), so the embedding must tell a section's sound from the
    # same sound with a fault-like change painted on. 0 = off.
    perturb_classes: float = 0.0

    def perturbed_per_epoch(self, n_clips: int) -> int:
        """Perturbed copies added to every epoch of `n_clips` clips."""
        return round(self.perturb_classes * n_clips)

    def average_from(self, epochs: int) -> int:
        """The first epoch (0-based) whose end-of-epoch weights enter the average."""
        if self.average <= 0.0:
            return epochs
        return max(0, epochs - max(1, round(self.average * epochs)))

    def epochs_for(self, n_clips: int) -> int:
        """Epochs to run on `n_clips` clips: `epochs`, or more to reach `min_steps`."""
        n_clips += self.perturbed_per_epoch(n_clips)
        per_epoch = max(1, -(-n_clips // self.batch_size))
        return max(self.epochs, -(-self.min_steps // per_epoch))


class ClipReader:
    """Reads clip i for tf.data; remembers (and reports once) the files it could not use.

    Indices past the clips are the epoch's perturbed copies (`perturbed`, set per epoch):
    index len(paths) + j is `perturbed[j]` applied to the clip it names."""

    def __init__(self, paths: list[str], spec: FrontendSpec, strict: bool) -> None:
        self.paths, self.spec, self.strict = paths, spec, strict
        self.skipped: dict[str, str] = {}
        self.perturbed: list[Planned] = []

    def __call__(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(i)
        if k >= len(self.paths):
            item = self.perturbed[k - len(self.paths)]
            wave, ok = self(np.asarray(item.origin))
            if not ok:
                return wave, ok
            return perturb(wave, item, self.spec.sample_rate), ok
        path = self.paths[k]
        try:
            return load_clip(path, self.spec), np.array(True)
        except (AudioFileError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, AudioFileError) else str(exc)
            if path not in self.skipped:
                self.skipped[path] = reason
                print(f"skipping unreadable file {path}: {reason}", file=sys.stderr)
            if self.strict:
                raise
            return np.zeros(self.spec.clip_samples, np.float32), np.array(False)


def _is_ok(pair: Any, ok: Any) -> Any:
    return ok


def _drop_flag(pair: Any, ok: Any) -> Any:
    return pair


def make_dataset(
    reader: ClipReader, labels: np.ndarray, n_classes: int, batch_size: int, order_seed: int
) -> Any:
    """One epoch: shuffled indices (clips, then any perturbed copies: one label each) ->
    parallel reads -> drop unreadable -> batches."""
    import tensorflow as tf

    order = np.random.default_rng(order_seed).permutation(len(labels))
    n = reader.spec.clip_samples

    def read(i: Any) -> tuple[Any, Any]:
        wave, ok = tf.numpy_function(reader, [i], (tf.float32, tf.bool), stateful=False)
        wave.set_shape((n,))
        ok.set_shape(())
        return (wave, tf.one_hot(tf.gather(labels, i), n_classes)), ok

    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    ds = ds.map(read, num_parallel_calls=2, deterministic=True)
    ds = ds.filter(_is_ok).map(_drop_flag)
    return ds.batch(batch_size).prefetch(2)


def _configure_threads() -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 1)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # TensorFlow already initialised (e.g. inside a test session): keep its setting


def _strategy() -> Any:
    """Several GPUs: MirroredStrategy; else the default (one GPU or the CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


class Trainer:
    """One ensemble member: embedding model + AdaCos head + Adam, with checkpoints."""

    def __init__(
        self,
        cfg: ModelConfig,
        tcfg: TrainConfig,
        spec: FrontendSpec,
        n_classes: int,
        seed: int,
    ) -> None:
        import keras
        import tensorflow as tf

        from model_build.training.losses import SubClusterAdaCos
        from model_build.training.model import build_embedding_model, input_shapes

        self.cfg, self.tcfg, self.spec, self.n_classes = cfg, tcfg, spec, n_classes
        self.strategy = _strategy()
        keras.utils.set_random_seed(seed)
        with self.strategy.scope():
            self.model = build_embedding_model(cfg, spec)
            self.head = SubClusterAdaCos(
                n_classes, cfg.n_subclusters, cfg.trainable_centres, seed=seed, name="adacos"
            )
            self.head.build((None, cfg.embedding_dim))
            self.variables = self.model.trainable_variables + self.head.trainable_variables
            self.head_ssl: SubClusterAdaCos | None = None
            if cfg.uses_featex:  # the FeatEx task: 3C classes, trainable centres (as published)
                self.head_ssl = SubClusterAdaCos(
                    3 * n_classes, cfg.n_subclusters, True, seed=seed + 1, name="featex"
                )
                self.head_ssl.build((None, cfg.embedding_dim))
                self.variables += self.head_ssl.trainable_variables
            self.optimizer = keras.optimizers.Adam(tcfg.learning_rate)
            self.rng = tf.random.Generator.from_seed(seed)
            self.optimizer.build(self.variables)
        self.input_shapes = input_shapes(cfg, spec)
        self._step = tf.function(self._train_step, reduce_retracing=True)
        # running sum of the model's weights (every variable, BatchNorm statistics included)
        # over the epochs averaged so far (TrainConfig.average)
        self.avg_sum: list[np.ndarray] | None = None
        self.avg_count = 0

    def accumulate_average(self) -> None:
        """Add the current weights to the running average."""
        w = [np.asarray(x, dtype=np.float64) for x in self.model.get_weights()]
        self.avg_sum = (
            w if self.avg_sum is None else [a + b for a, b in zip(self.avg_sum, w, strict=True)]
        )
        self.avg_count += 1

    def end_epoch(self, epoch: int, epochs: int, folder: Path, state: dict[str, Any]) -> None:
        """After epoch `epoch` (0-based) of `epochs`: into the average when it is one of the
        averaged epochs, then the checkpoint (average included, so a resume continues it)."""
        if epoch >= self.tcfg.average_from(epochs):
            self.accumulate_average()
        self.save(folder, state)

    def finish(self, folder: Path) -> None:
        """The final weights (averaged when `TrainConfig.average` says so) and the head."""
        self.apply_average()
        self.model.save_weights(folder / WEIGHTS_FILE)
        self.save_head(folder / HEAD_FILE)

    def apply_average(self) -> None:
        """Set the model to the averaged weights (no-op when nothing was averaged)."""
        if self.avg_sum is not None and self.avg_count:
            self.model.set_weights([(a / self.avg_count).astype(np.float32) for a in self.avg_sum])

    def _features(self, waves: Any) -> list[Any]:
        from model_build.training.tf_frontend import TF_FEATURES

        return [TF_FEATURES[name](waves, self.spec)[..., None] for name in self.cfg.input_names]

    def _train_step(self, waves: Any, labels: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        from model_build.training.losses import (
            adapted_scale,
            augment,
            cross_entropy,
            feature_exchange,
            mixup,
        )

        def replica(waves: Any, labels: Any) -> Any:
            if self.tcfg.augment:
                waves = augment(waves, self.rng)
            waves, labels = mixup(waves, labels, self.rng)
            feats = self._features(waves)
            ssl = self.head_ssl
            with tf.GradientTape() as tape:
                emb = self.model(feats, training=True)
                cos = self.head.cosines(emb)
                scale = tf.convert_to_tensor(self.head.scale)
                ce = cross_entropy(labels, self.head.log_probs(cos, scale))
                loss = ce
                if ssl is not None:
                    emb_x, labels_x = feature_exchange(
                        emb, labels, self.cfg.embedding_dim // 2, self.rng
                    )
                    cos_x = ssl.cosines(emb_x)
                    scale_x = tf.convert_to_tensor(ssl.scale)
                    loss = loss + cross_entropy(labels_x, ssl.log_probs(cos_x, scale_x))
                reg = tf.add_n(self.model.losses) if self.model.losses else 0.0
                loss = (loss + reg) / self.strategy.num_replicas_in_sync
            grads = tape.gradient(loss, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            self.head.scale.assign(
                adapted_scale(tf.stop_gradient(cos), labels, scale, self.cfg.n_subclusters)
            )
            if ssl is not None:
                ssl.scale.assign(
                    adapted_scale(
                        tf.stop_gradient(cos_x), labels_x, scale_x, self.cfg.n_subclusters
                    )
                )
            return ce

        ce = self.strategy.run(replica, args=(waves, labels))
        return self.strategy.reduce("MEAN", ce, axis=None), tf.convert_to_tensor(self.head.scale)

    def fit_epoch(self, dataset: Any, n_batches: int, label: str = "training") -> float:
        """One pass over `dataset`; returns the mean cross-entropy. Progress on stderr
        (`model_build.progress`: redrawn on a terminal, plain lines in a log)."""
        if self.strategy.num_replicas_in_sync > 1:  # split every batch across the GPUs
            dataset = self.strategy.experimental_distribute_dataset(dataset)
        total, count = 0.0, 0
        with Progress(
            n_batches, label, self.tcfg.verbose, unit="batches", interval_s=LOG_INTERVAL_S
        ) as bar:
            for waves, labels in dataset:
                ce, scale = self._step(waves, labels)
                total, count = total + float(ce), count + 1
                bar.update(1, note=f"loss {total / count:.3f}  s {float(scale):.2f}")
        return total / max(count, 1)

    # --- checkpoints: everything needed to continue exactly where an epoch ended ---
    def save(self, folder: Path, state: dict[str, Any]) -> None:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save_weights(tmp / WEIGHTS_FILE)
        self.save_head(tmp / HEAD_FILE)
        np.savez(tmp / "optimizer.npz", *[np.asarray(v) for v in self.optimizer.variables])
        if self.avg_sum is not None:
            np.savez(tmp / "average.npz", *self.avg_sum, count=np.asarray(self.avg_count))
        state = {**state, "rng_state": np.asarray(self.rng.state).tolist()}
        (tmp / "state.json").write_text(json.dumps(state))
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    def save_head(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "centres": np.asarray(self.head.centres),
            "scale": np.asarray(self.head.scale),
        }
        if self.head_ssl is not None:
            arrays["featex_centres"] = np.asarray(self.head_ssl.centres)
            arrays["featex_scale"] = np.asarray(self.head_ssl.scale)
        np.savez(path, **arrays)

    def restore(self, folder: Path) -> dict[str, Any]:
        self.model.load_weights(folder / WEIGHTS_FILE)
        head = np.load(folder / HEAD_FILE)
        self.head.centres.assign(head["centres"])
        self.head.scale.assign(head["scale"])
        if self.head_ssl is not None:
            self.head_ssl.centres.assign(head["featex_centres"])
            self.head_ssl.scale.assign(head["featex_scale"])
        opt = np.load(folder / "optimizer.npz")
        for i, v in enumerate(self.optimizer.variables):
            v.assign(opt[f"arr_{i}"])
        if (folder / "average.npz").is_file():
            avg = np.load(folder / "average.npz")
            self.avg_count = int(avg["count"])
            self.avg_sum = [avg[f"arr_{i}"] for i in range(len(avg.files) - 1)]
        state: dict[str, Any] = json.loads((folder / "state.json").read_text())
        self.rng.reset(np.asarray(state["rng_state"], dtype=np.int64))
        return state


def _labels(clips: list[Clip], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[class_key(c)] for c in clips], dtype=np.int64)


def perturbed_class(clip: Clip, kind: str) -> str:
    """The self-supervised class of `clip` with perturbation `kind` (TrainConfig.perturb_classes):
    one per machine type, section and kind."""
    return f"{clip.machine}|{clip.section}|~{kind}|perturbed"


def perturbed_classes(clips: list[Clip]) -> list[str]:
    return sorted({perturbed_class(c, k) for c in clips for k in PERTURB_KINDS})


def epoch_perturbed(
    clips: list[Clip], classes: list[str], count: int, seed: int, epoch: int
) -> tuple[list[Planned], np.ndarray]:
    """The epoch's `count` perturbed copies (clips drawn without repeats while they last, kinds
    in rotation, from (seed, epoch) so a resumed run draws the same) and their labels."""
    if count == 0:
        return [], np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, epoch, 97])
    n = len(clips)
    origins = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    reps = -(-count // len(PERTURB_KINDS))
    kinds = np.concatenate([rng.permutation(len(PERTURB_KINDS)) for _ in range(reps)])[:count]
    seeds = rng.integers(0, 2**31, count)
    items = [
        Planned(int(o), PERTURB_KINDS[int(k)], int(s))
        for o, k, s in zip(origins, kinds, seeds, strict=True)
    ]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[perturbed_class(clips[it.origin], it.kind)] for it in items], np.int64)
    return items, labels


def _new_meta(
    roots: list[Path],
    cfg: ModelConfig,
    tcfg: TrainConfig,
    spec: FrontendSpec,
    classes: list[str],
    n_clips: int,
    ignored: list[Path],
    recipe: str | None,
) -> dict[str, Any]:
    """run.json of a run about to start (its models not trained yet)."""
    meta: dict[str, Any] = {
        "format": RUN_FORMAT,
        "config": cfg.to_dict(),
        "uses_featex": cfg.uses_featex,
        "train": {k: v for k, v in asdict(tcfg).items() if k != "verbose"},
        "frontend": spec.to_dict(),
        "classes": classes,
        "data": [str(r) for r in roots],
        "n_train_clips": n_clips,
        "models": [
            {"status": "training", "seed": tcfg.seed + k, "epochs_done": 0}
            for k in range(tcfg.runs)
        ],
        "skipped_files": {},
        "ignored_files": [str(p) for p in ignored],
    }
    if recipe is not None:
        meta["recipe"] = recipe
    return meta


def _resume_meta(out: Path, meta: dict[str, Any], resume: bool) -> None:
    """`meta` continues the run already in `out`: its models' progress and skipped files are
    kept; a different model, frontend or class list is an error (one line)."""
    if not resume:
        raise EdgeAgentError(f"{out}: run exists (pass --resume or choose another --out)")
    old = read_meta(out)
    # a run written before a switch existed has the switch's default
    old["config"] = ModelConfig.from_dict(old["config"]).to_dict()
    for key in ("config", "frontend", "classes"):
        if old[key] != meta[key]:
            raise EdgeAgentError(f"{out}: existing run has a different {key}; use a new --out")
    meta["models"] = old["models"] + meta["models"][len(old["models"]) :]
    meta["skipped_files"] = old.get("skipped_files", {})


def train_run(
    roots: list[Path],
    out: Path,
    cfg: ModelConfig = ModelConfig(),
    tcfg: TrainConfig = TrainConfig(),
    base_spec: FrontendSpec = DEFAULT_SPEC,
    resume: bool = True,
    recipe: str | None = None,
) -> Path:
    """Train `tcfg.runs` models into `out` (resuming what an earlier call left unfinished).

    `recipe`: the name of the `model_build.training.recipes` recipe the configs came from,
    recorded in run.json (evaluate and export default to its backend). Files under the
    roots' train/ folders that are not clips of the layout are named on stderr and listed in
    run.json (`ignored_files`); `tcfg.strict` makes the first one an error.
    """
    layout = scan_layout(roots, splits=("train",), strict=tcfg.strict)
    layout.warn()
    clips = [c for c in layout.clips if c.split == "train"]
    if not clips:
        raise DatasetError(f"{', '.join(map(str, roots))}: no training clips found")
    classes = class_names(clips)
    if tcfg.perturb_classes > 0:
        classes += perturbed_classes(clips)
    spec = cfg.frontend(base_spec)
    meta = _new_meta(roots, cfg, tcfg, spec, classes, len(clips), layout.ignored, recipe)
    if (out / "run.json").exists():
        _resume_meta(out, meta, resume)
    write_meta(out, meta)

    _configure_threads()
    paths = [str(c.path) for c in clips]
    labels = _labels(clips, classes)
    n_perturbed = tcfg.perturbed_per_epoch(len(paths))
    n_batches = -(-(len(paths) + n_perturbed) // tcfg.batch_size)
    for k, status in enumerate(meta["models"]):
        if status["status"] == "done":
            continue
        reader = ClipReader(paths, spec, tcfg.strict)
        trainer = Trainer(cfg, tcfg, spec, len(classes), status["seed"])
        folder = model_dir(out, k) / CHECKPOINT_DIR
        start = trainer.restore(folder)["epoch"] if (folder / "state.json").exists() else 0
        history: list[float] = list(status.get("loss_history", []))[:start]
        epochs = tcfg.epochs_for(len(paths))
        for epoch in range(start, epochs):
            reader.perturbed, extra = epoch_perturbed(
                clips, classes, n_perturbed, status["seed"], epoch
            )
            ds = make_dataset(
                reader,
                np.concatenate([labels, extra]),
                len(classes),
                tcfg.batch_size,
                order_seed=status["seed"] * 100_003 + epoch,
            )
            t0 = time.monotonic()
            try:
                loss = trainer.fit_epoch(
                    ds, n_batches, f"model {k + 1}/{len(meta['models'])} epoch {epoch + 1}/{epochs}"
                )
            except Exception as exc:  # a strict read failure surfaces as a TF op error
                if tcfg.strict and reader.skipped:
                    path, reason = next(iter(reader.skipped.items()))
                    raise AudioFileError(path, reason) from exc
                raise
            history.append(loss)
            trainer.end_epoch(epoch, epochs, folder, {"epoch": epoch + 1, "loss_history": history})
            status.update(
                epochs_done=epoch + 1,
                loss_history=history,
                last_epoch_seconds=round(time.monotonic() - t0, 2),
            )
            meta["skipped_files"].update(reader.skipped)
            write_meta(out, meta)
        trainer.finish(model_dir(out, k))
        status["status"] = "done"
        status["averaged_epochs"] = trainer.avg_count
        write_meta(out, meta)
    return out
