"""Training end to end on tiny real WAV files: run dir, fixed centres, resume, bad files."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio.files import load_clip
from edge_agent.errors import EdgeAgentError
from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.data.dataset import class_names, scan
from model_build.training.model import ModelConfig
from model_build.training.runs import CHECKPOINT_DIR, RunError, load_run, read_meta
from model_build.training.train import ClipReader, TrainConfig, Trainer, make_dataset, train_run

NARROW = ModelConfig(width=0.25)
QUIET = TrainConfig(epochs=1, batch_size=4, verbose=False)


def test_trained_run_loads_and_embeds(trained_run: Path) -> None:
    meta = read_meta(trained_run)
    roots = [Path(r) for r in meta["data"]]
    clips = scan(roots)
    assert meta["classes"] == class_names(clips)
    assert [m["status"] for m in meta["models"]] == ["done"]
    run = load_run(trained_run)
    assert run.config == ModelConfig.from_dict(meta["config"])
    emb = run.embed_clips(clips[:6], batch_size=4)
    assert emb.shape == (1, 6, 256) and np.isfinite(emb).all()
    waves = np.stack([load_clip(c.path, DEFAULT_SPEC) for c in clips[:6]])
    np.testing.assert_allclose(run.embed_waves(waves, batch_size=6), emb, rtol=1e-4, atol=1e-5)
    assert not np.allclose(emb[0, 0], emb[0, 1])


def test_centres_stay_fixed_while_the_network_learns(tiny_dcase_root: Path) -> None:
    clips = [c for c in scan([tiny_dcase_root]) if c.split == "train"]
    classes = class_names(clips)
    trainer = Trainer(NARROW, QUIET, NARROW.frontend(), len(classes), seed=0)
    centres = np.asarray(trainer.head.centres).copy()
    scale = float(trainer.head.scale)
    weights = [np.asarray(w).copy() for w in trainer.model.trainable_weights]
    reader = ClipReader([str(c.path) for c in clips], NARROW.frontend(), strict=False)
    labels = np.array(
        [classes.index(f"{c.machine}|{c.section}|{c.attrs}|{c.domain}") for c in clips]
    )
    trainer.fit_epoch(make_dataset(reader, labels, len(classes), 4, order_seed=0), 3)
    np.testing.assert_array_equal(np.asarray(trainer.head.centres), centres)
    assert float(trainer.head.scale) != scale  # re-estimated every batch
    moved = [
        not np.array_equal(np.asarray(w), w0)
        for w, w0 in zip(trainer.model.trainable_weights, weights, strict=True)
    ]
    assert all(moved)


def test_resume_continues_from_the_last_checkpoint(tiny_dcase_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_run([tiny_dcase_root], out, NARROW, QUIET)
    first = read_meta(out)["models"][0]["loss_history"]
    # pretend the process died after epoch 1 of a 2-epoch run
    meta = read_meta(out)
    meta["models"][0]["status"] = "training"
    (out / "run.json").write_text(json.dumps(meta))
    ckpt = out / "model_0" / CHECKPOINT_DIR
    iters_before = int(np.load(ckpt / "optimizer.npz")["arr_0"])
    train_run([tiny_dcase_root], out, NARROW, TrainConfig(epochs=2, batch_size=4, verbose=False))
    status = read_meta(out)["models"][0]
    assert status["status"] == "done" and status["epochs_done"] == 2
    assert status["loss_history"][0] == first[0] and len(status["loss_history"]) == 2
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2
    assert int(np.load(ckpt / "optimizer.npz")["arr_0"]) == 2 * iters_before > 0
    # a run written before an ablation switch existed resumes with the switch's default
    meta = read_meta(out)
    del meta["config"]["combine"]
    (out / "run.json").write_text(json.dumps(meta))
    train_run([tiny_dcase_root], out, NARROW, TrainConfig(epochs=2, batch_size=4, verbose=False))
    assert read_meta(out)["config"]["combine"] == "concat"
    # a different architecture cannot silently continue the same run
    with pytest.raises(EdgeAgentError, match="different config"):
        train_run([tiny_dcase_root], out, ModelConfig(width=0.5), QUIET)


def test_unreadable_file_is_reported_and_skipped(
    tiny_dcase_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_build.cli import main

    root = tmp_path / "data"
    shutil.copytree(tiny_dcase_root, root)
    bad = root / "fan" / "train" / "section_00_source_train_normal_0099_a_0.wav"
    bad.write_bytes(b"RIFF not really a wav")
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(root),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--width",
        "0.25",
        "--quiet",
    ]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code in (0, None)
    err = capsys.readouterr().err
    assert f"skipping unreadable file {bad}" in err
    assert str(bad) in read_meta(out)["skipped_files"]
    assert load_run(out).embed_clips([c.path for c in scan([tiny_dcase_root])][:2]).shape[1] == 2
    with pytest.raises(SystemExit) as exc:
        main([*argv[:4], str(tmp_path / "strict"), *argv[5:], "--strict"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {bad}")


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"run\.json"):
        load_run(tmp_path)


@pytest.mark.slow
def test_runs_trains_an_ensemble_of_different_models(
    trained_ensemble: Path, synth_root: Path
) -> None:
    meta = read_meta(trained_ensemble)
    assert [(m["seed"], m["status"]) for m in meta["models"]] == [(5, "done"), (6, "done")]
    emb = load_run(trained_ensemble).embed_clips([c.path for c in scan([synth_root])][:3])
    assert emb.shape == (2, 3, 256)
    assert not np.allclose(emb[0], emb[1])


def test_min_steps_adds_epochs_on_small_sets() -> None:
    cfg = TrainConfig(epochs=10, batch_size=64, min_steps=300)
    assert cfg.epochs_for(240) == 75  # 4 batches per epoch
    assert cfg.epochs_for(6400) == 10  # 100 batches per epoch: the epochs already suffice
    assert TrainConfig(epochs=10).epochs_for(240) == 10


def test_average_covers_the_last_fraction_of_the_epochs() -> None:
    assert TrainConfig(average=0.0).average_from(10) == 10  # off: no epoch averaged
    assert TrainConfig(average=0.5).average_from(10) == 5
    assert TrainConfig(average=0.01).average_from(10) == 9  # at least the last epoch
    assert TrainConfig(average=1.0).average_from(4) == 0


def test_featex_and_augment_train_and_resume(tiny_dcase_root: Path, tmp_path: Path) -> None:
    """The FeatEx head (3C classes, trainable centres) trains next to the fixed AdaCos head and
    is checkpointed with it; min_steps stretches a tiny set to more epochs; with `average` the
    final weights are the mean of the last epochs' weights (BatchNorm statistics included),
    which the checkpoint keeps as a running sum for a resume."""
    cfg = ModelConfig(width=0.25, featex=True)
    tcfg = TrainConfig(
        epochs=1, batch_size=4, min_steps=2 * 6, augment=True, verbose=False, average=0.5
    )
    n_clips = len([c for c in scan([tiny_dcase_root]) if c.split == "train"])
    run = train_run([tiny_dcase_root], tmp_path / "run", cfg, tcfg)
    meta = read_meta(run)
    assert meta["config"]["featex"] and meta["train"]["augment"]
    assert meta["models"][0]["epochs_done"] == tcfg.epochs_for(n_clips) > 1
    averaged = tcfg.epochs_for(n_clips) - tcfg.average_from(tcfg.epochs_for(n_clips))
    assert meta["models"][0]["averaged_epochs"] == averaged >= 2
    avg = np.load(run / "model_0" / "checkpoint" / "average.npz")
    final = load_run(run).models[0].get_weights()
    assert int(avg["count"]) == averaged and len(final) == len(avg.files) - 1
    for i, w in enumerate(final):
        np.testing.assert_allclose(w, avg[f"arr_{i}"] / averaged, rtol=1e-5, atol=1e-6)
    from model_build.training.model import build_embedding_model

    last = build_embedding_model(cfg, load_run(run).spec)  # the last epoch's own weights
    last.load_weights(run / "model_0" / "checkpoint" / "embedding.weights.h5")
    assert not all(np.allclose(a, b) for a, b in zip(last.get_weights(), final, strict=True))
    head = np.load(run / "model_0" / "head.npz")
    n_classes = len(meta["classes"])
    assert head["featex_centres"].shape == (256, 3 * n_classes * 16)
    assert head["centres"].shape == (256, n_classes * 16)
    emb = load_run(run).embed_clips([c.path for c in scan([tiny_dcase_root])][:2])
    assert emb.shape == (1, 2, 256) and np.all(np.isfinite(emb))
    assert not ModelConfig(featex=True, inputs="spectrum").uses_featex  # one branch: no FeatEx


def test_perturbed_copies_are_drawn_per_epoch_and_labelled_by_section_and_kind(
    tiny_dcase_root: Path,
) -> None:
    """TrainConfig.perturb_classes: an epoch's copies come from (seed, epoch) alone (a resumed
    run draws the same), use every clip before any twice, rotate the kinds, and each copy's
    label is the class of its own clip's machine, section and kind."""
    from edge_agent.scoring.pseudo import FIRST_KINDS, perturb
    from model_build.training.train import PERTURB_KINDS, epoch_perturbed, perturbed_classes

    clips = [c for c in scan([tiny_dcase_root]) if c.split == "train"]
    classes = class_names(clips) + perturbed_classes(clips)
    n = len(clips)
    assert (
        len(classes) == len(class_names(clips)) + len({(c.machine, c.section) for c in clips}) * 6
    )
    items, labels = epoch_perturbed(clips, classes, n, seed=3, epoch=1)
    again, labels2 = epoch_perturbed(clips, classes, n, seed=3, epoch=1)
    assert items == again and np.array_equal(labels, labels2)
    assert items != epoch_perturbed(clips, classes, n, seed=3, epoch=2)[0]
    assert sorted(it.origin for it in items) == list(range(n))  # every clip once
    # kinds in rotation: the six measured as classes, not the wobble the backend plan added
    assert {it.kind for it in items[:6]} == set(PERTURB_KINDS) == set(FIRST_KINDS)
    for it, lab in zip(items, labels, strict=True):
        c = clips[it.origin]
        assert classes[lab] == f"{c.machine}|{c.section}|~{it.kind}|perturbed"
        assert lab >= len(class_names(clips))  # never a normal clip's class
    assert epoch_perturbed(clips, classes, 0, seed=3, epoch=1)[0] == []
    assert TrainConfig(perturb_classes=0.5).perturbed_per_epoch(10) == 5
    assert TrainConfig(batch_size=4, perturb_classes=1.0).epochs_for(8) == 10
    assert TrainConfig(batch_size=4, min_steps=40, perturb_classes=1.0).epochs_for(8) == 10
    assert TrainConfig(batch_size=4, min_steps=40).epochs_for(8) == 20

    reader = ClipReader([str(c.path) for c in clips], DEFAULT_SPEC, strict=False)
    reader.perturbed = items
    wave, ok = reader(np.asarray(n))  # the first copy, after the n clips
    origin = load_clip(clips[items[0].origin].path, DEFAULT_SPEC)
    assert bool(ok) and wave.dtype == np.float32 and wave.shape == origin.shape
    np.testing.assert_array_equal(wave, perturb(origin, items[0], DEFAULT_SPEC.sample_rate))
    assert not np.allclose(wave, origin)


def test_perturb_classes_train_a_head_with_the_extra_classes(
    tiny_dcase_root: Path, tmp_path: Path
) -> None:
    tcfg = TrainConfig(epochs=1, batch_size=4, verbose=False, perturb_classes=0.5)
    run = train_run([tiny_dcase_root], tmp_path / "run", NARROW, tcfg)
    meta = read_meta(run)
    clips = [c for c in scan([tiny_dcase_root]) if c.split == "train"]
    n_sections = len({(c.machine, c.section) for c in clips})
    assert len(meta["classes"]) == len(class_names(clips)) + 6 * n_sections
    assert meta["train"]["perturb_classes"] == 0.5
    assert np.load(run / "model_0" / "head.npz")["centres"].shape == (
        256,
        len(meta["classes"]) * NARROW.n_subclusters,
    )
    emb = load_run(run).embed_clips([c.path for c in clips[:2]])
    assert emb.shape == (1, 2, 256) and np.all(np.isfinite(emb))
    # a resume with the switch off is a different class list: refused in one line
    with pytest.raises(EdgeAgentError, match="different classes"):
        train_run([tiny_dcase_root], tmp_path / "run", NARROW, replace(tcfg, perturb_classes=0.0))
