"""model_build.synth: layout, determinism, audio sanity, anomalies, CLI; baseline features."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_agent.audio.files import read_wav
from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.cli import app
from model_build.data.dataset import scan
from model_build.evaluation.baseline import baseline_features, score_clips
from model_build.synth.core import (
    MACHINE_TYPES,
    ClipJob,
    Section,
    SynthConfig,
    SynthError,
    family,
    generate,
    make_section,
    render,
)

TINY = SynthConfig(
    seed=3, machines=("valve",), sections=1, source_train=2, target_train=1, test_per_label=1
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def test_layout_parses_back_into_expected_counts(synth_root: Path) -> None:
    clips = scan([synth_root])
    counts = Counter((c.machine, c.section, c.split, c.domain, c.label) for c in clips)
    expected = {}
    for m in ("fan", "gearbox"):
        for s in ("00", "01"):
            expected[(m, s, "train", "source", "normal")] = 16
            expected[(m, s, "train", "target", "normal")] = 4
            for d in ("source", "target"):
                for lab in ("normal", "anomaly"):
                    expected[(m, s, "test", d, lab)] = 4
    assert dict(counts) == expected
    # attributes in the DCASE way, per machine type
    assert all(c.attrs.startswith("spd_") for c in clips if c.machine == "fan")
    assert all(c.attrs.startswith("volt_") for c in clips if c.machine == "gearbox")


def test_synth_json_describes_shifts_and_anomalies(synth_root: Path) -> None:
    meta = json.loads((synth_root / "synth.json").read_text())
    assert meta["config"]["seed"] == 0
    assert meta["sections"]["fan_section_00"]["shift"] == "operating_point"
    assert meta["sections"]["fan_section_01"]["shift"] == "background"
    clips = meta["clips"]
    assert len(clips) == 144
    for c in clips:
        assert (synth_root / c["file"]).is_file()
        if "_anomaly_" in c["file"]:
            assert c["kind"] and 0.05 <= c["severity"] <= 1.0
        else:
            assert c["kind"] is None and c["severity"] is None
    # operating-point shift: target speeds are absent from source
    sec = meta["sections"]["fan_section_00"]
    assert not set(sec["source_attrs"]) & set(sec["target_attrs"])


def test_audio_is_ten_seconds_finite_and_not_clipping(synth_root: Path) -> None:
    for path in sorted((synth_root / "fan" / "test").glob("*.wav"))[:8]:
        x, rate = read_wav(path)
        assert rate == 16_000 and x.shape == (160_000,)
        assert np.all(np.isfinite(x))
        assert 0.005 < float(np.sqrt(np.mean(x**2))) < 0.3
        assert float(np.max(np.abs(x))) < 0.95


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate(TINY, tmp_path / "a")
    generate(TINY, tmp_path / "b", workers=2)
    generate(replace(TINY, seed=4), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) == 2 + 1 + 4
    assert a == b
    meta_a, meta_b = ((tmp_path / x / "synth.json").read_text() for x in "ab")
    assert meta_a == meta_b
    assert set(a.values()).isdisjoint(c.values())  # another seed: no file is the same


@pytest.mark.parametrize("machine", MACHINE_TYPES)
def test_every_anomaly_kind_changes_the_sound(machine: str) -> None:
    """Same clip random state with and without the anomaly: the waves must differ, and
    normal clips of one section must differ from each other (nuisance variation)."""
    sec = make_section(0, machine, 0)
    n0, _ = render(ClipJob(machine, 0, "source", "test", "normal", 0, 0), sec)
    n1, _ = render(ClipJob(machine, 0, "source", "test", "normal", 1, 0), sec)
    assert float(np.std(n0 - n1)) > 0.1 * float(np.std(n0))
    kinds = set()
    for i in range(12):
        x, info = render(ClipJob(machine, 0, "source", "test", "anomaly", i, 0), sec)
        assert info.kind is not None and info.severity is not None
        kinds.add(info.kind)
        assert np.all(np.isfinite(x)) and x.shape == (160_000,)
    assert len(kinds) >= 2


def test_anomaly_adds_energy_at_its_frequency() -> None:
    """An extra bearing harmonic of full severity is visible in the fine full-clip spectrum."""
    from model_build.synth import core as synth

    sec = make_section(0, "bearing", 0)
    rng = np.random.default_rng(0)
    normal, anom = synth.machine_sound(
        rng, sec, "vel_10_loc_A", synth.Anomaly("extra_harmonic", 1.0)
    )
    assert float(np.std(anom)) > 0.05 * float(np.std(normal))
    spec = np.abs(np.fft.rfft(anom))
    peak = int(np.argmax(spec))
    assert spec[peak] > 50 * np.median(spec)  # narrowband


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(SynthError, match=r"^machines: expected some of"):
        SynthConfig(machines=("toaster",)).check()
    with pytest.raises(SynthError, match=r"^sections: expected 1\.\.99"):
        SynthConfig(sections=0).check()
    with pytest.raises(SynthError, match=r"^test_per_label: expected >= 0"):
        SynthConfig(test_per_label=-1).check()
    res = CliRunner().invoke(app, ["synth", "/tmp/never", "--machines", "toaster"])
    assert res.exit_code != 0


def test_cli_words_field_errors_as_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_build.cli import main

    for args, line in [
        (["--machines", "toaster"], "error: --machines: expected some of"),
        (["--test", "-1"], "error: --test: expected >= 0"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["synth", str(tmp_path / "never"), *args])
        assert exc.value.code == 2
        assert capsys.readouterr().err.startswith(line)


def test_cli_writes_set_and_prints_summary(tmp_path: Path) -> None:
    out = tmp_path / "set"
    res = CliRunner().invoke(
        app,
        [
            "synth",
            str(out),
            "--seed",
            "1",
            "--machines",
            "fan",
            "--sections",
            "1",
            "--source-train",
            "2",
            "--target-train",
            "1",
            "--test",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "7 clips" in res.output and "seed 1" in res.output
    assert len(scan([out])) == 7


def test_baseline_features_are_normalised_mean_and_std() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 160_000)).astype(np.float32) * 0.1
    f = baseline_features(x, DEFAULT_SPEC)
    assert f.shape == (2, 2 * 513)
    np.testing.assert_allclose(np.linalg.norm(f, axis=-1), 1.0, rtol=1e-5)
    # reference computation: plain numpy STFT (periodic Hann 1024, hop 512, no padding)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([x[0, i * 512 : i * 512 + 1024] * win for i in range(311)])
    logmag = np.log(np.abs(np.fft.rfft(frames, axis=-1)) + 1e-6)
    ref = np.concatenate([logmag.mean(0), logmag.std(0)])
    np.testing.assert_allclose(f[0], ref / np.linalg.norm(ref), atol=1e-5)
    # a steady 1 kHz tone (bin 64) is the largest time-mean and has a small time-std there
    t = np.arange(160_000) / 16_000
    g = baseline_features(x[0] + np.sin(2 * np.pi * 1000 * t).astype(np.float32), DEFAULT_SPEC)
    assert int(np.argmax(g[:513])) == 64
    assert g[513 + 64] < np.median(g[513:])


def test_baseline_scores_every_test_clip(synth_root: Path) -> None:
    scores = score_clips(scan([synth_root]))
    assert len(scores) == 2 * 2 * 16
    assert all(np.isfinite(s.score) and s.score >= -1e-6 for s in scores)
    assert {s.clip.split for s in scores} == {"test"}


def test_baseline_embedder_runs_through_evaluate(synth_root: Path) -> None:
    """The baseline plugs into model_build.evaluation.evaluate like a trained run does."""
    from model_build.evaluation.baseline import BaselineEmbedder
    from model_build.evaluation.evaluate import evaluate_embedder

    text, payload = evaluate_embedder(BaselineEmbedder(), scan([synth_root]), plots=False)
    sections = [s["section"] for s in payload["results"]["model_0"]["sections"]]
    assert sections == [
        "fan_section_00",
        "fan_section_01",
        "gearbox_section_00",
        "gearbox_section_01",
    ]
    assert "harmonic mean" in text


@pytest.mark.parametrize("name", ["broadband", "cyclic", "random", "texture"])
def test_other_families_write_their_own_machines_deterministically(
    tmp_path: Path, name: str
) -> None:
    """Every family: its machine types and shifts, the same bytes for the same seed, every
    anomaly kind changes the sound, normal clips of a section differ from each other."""
    fam = family(name)
    assert set(fam.machines).isdisjoint(MACHINE_TYPES) and len(fam.shifts) == 3
    cfg = SynthConfig(
        seed=2,
        machines=fam.machines[:2],
        sections=2,
        source_train=2,
        target_train=1,
        test_per_label=1,
        family=name,
    )
    meta = generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b", workers=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert meta["family"] == name
    assert [meta["sections"][f"{fam.machines[0]}_section_0{i}"]["shift"] for i in range(2)] == list(
        fam.shifts[:2]
    )
    clips = scan([tmp_path / "a"])
    assert {c.machine for c in clips} == set(fam.machines[:2]) and len(clips) == 2 * 2 * 7
    for machine in fam.machines:
        sec = fam.make_section(0, machine, 0)
        n0, _ = fam.render(ClipJob(machine, 0, "source", "test", "normal", 0, 0), sec)
        n1, _ = fam.render(ClipJob(machine, 0, "source", "test", "normal", 1, 0), sec)
        assert n0.shape == (160_000,) and np.all(np.isfinite(n0))
        assert float(np.std(n0 - n1)) > 0.1 * float(np.std(n0))
        assert float(np.sqrt(np.mean(n0**2))) > 0.005 and float(np.max(np.abs(n0))) < 0.95
        kinds = set()
        for i in range(16):
            x, info = fam.render(ClipJob(machine, 0, "source", "test", "anomaly", i, 0), sec)
            assert info.kind in fam.anomaly_kinds[machine] and np.all(np.isfinite(x))
            kinds.add(info.kind)
        assert len(kinds) >= 3


def test_family_is_checked_and_each_family_needs_its_own_machines() -> None:
    with pytest.raises(SynthError, match="family: expected one of"):
        SynthConfig(family="jazz").check()
    with pytest.raises(SynthError, match="family broadband"):
        SynthConfig(family="broadband", machines=("fan",)).check()
    assert SynthConfig(family="cyclic").machine_types == family("cyclic").machines


def test_a_clog_darkens_the_broadband_spectrum() -> None:
    """A spectral-balance fault: same clip random state, the clogged pump has relatively less
    high-frequency energy than the healthy one."""
    from model_build.synth import broadband as bb

    sec = bb.make_section(0, "pump", 0)
    attrs = bb._parse("flow_140_pres_3")  # noqa: SLF001 -- the test observes or drives an internal the API keeps private

    def hf_share(kind: str | None) -> float:
        normal, anom = bb._machine(np.random.default_rng(1), sec, attrs, kind, 1.0)  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        spec = np.abs(np.fft.rfft(normal + anom)) ** 2
        return float(spec[40_000:].sum() / spec.sum())  # above 2 kHz

    assert hf_share("clog") < 0.7 * hf_share(None)


def test_cyclic_timing_faults_move_the_cycle_starts() -> None:
    from model_build.synth.cyclic import cycle_starts

    normal = cycle_starts(np.random.default_rng(0), 1.0, None, 0.0)
    assert np.allclose(np.diff(normal), 1.0, atol=0.05)
    slow = cycle_starts(np.random.default_rng(0), 1.0, "slowdown", 1.0)
    assert np.diff(slow).max() > 1.2 and len(slow) < len(normal)
    missing = cycle_starts(np.random.default_rng(0), 1.0, "missing_cycle", 1.0)
    assert len(missing) <= len(normal) - 2
    jitter = cycle_starts(np.random.default_rng(0), 1.0, "timing_jitter", 1.0)
    assert np.std(np.diff(jitter)) > 5 * np.std(np.diff(normal))


def test_texture_faults_keep_band_energies_but_change_the_fine_spectrum() -> None:
    """The texture family's faults, rendered from the same random state as the normal clip:
    the band statistics' time means move less than between two normal clips of the section
    (a classical detector has little to go on), while the full-clip spectrum changes."""
    from edge_agent.scoring.classical import band_stats
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from model_build.synth import texture as tx

    nb = 53  # the band-mean half of the band statistics
    for machine in tx.MACHINES:
        sec = tx.make_section(0, machine, 0)

        def sound(kind: str | None, seed: int = 1, sec: Section = sec) -> np.ndarray:
            x = tx._machine(np.random.default_rng(seed), sec, 1.0, 1.0, kind, 0.8)  # noqa: SLF001 -- the family's renderer, no public per-clip entry point
            return np.asarray(x / np.sqrt(np.mean(x**2)), dtype=np.float32)

        base = sound(None)
        ref = band_stats(base, DEFAULT_SPEC)[:nb]
        spread = np.abs(band_stats(sound(None, 2), DEFAULT_SPEC)[:nb] - ref).mean()
        for kind in tx.ANOMALY_KINDS[machine]:
            y = sound(kind)
            moved = np.abs(band_stats(y, DEFAULT_SPEC)[:nb] - ref).mean()
            assert moved < 0.6 * spread + 0.05, (machine, kind, moved, spread)
            fine = np.abs(np.abs(np.fft.rfft(y)) - np.abs(np.fft.rfft(base))).sum()
            assert fine > 0.01 * np.abs(np.fft.rfft(base)).sum(), (machine, kind)


def test_random_family_sections_are_draws_from_a_broad_prior() -> None:
    """Sections of one machine name differ in what they are made of (series, resonances,
    noise colour), and a speed shift moves the whole tonal spectrum of the target domain."""
    from model_build.synth import random as sr

    secs = [sr.make_section(s, "alpha", i) for s in range(4) for i in range(3)]
    assert len({round(sc.params["f0_0"]) for sc in secs}) == len(secs)
    assert len({int(sc.params["n_series"]) for sc in secs}) >= 2
    assert np.ptp([sc.params["colour"] for sc in secs]) > 3.0
    sec = next(sc for sc in secs if sc.shift == "speed" and sc.params["n_series"] >= 1)
    assert all(float(a.split("_")[1]) >= 1.3 for a in sec.target_attrs)
    assert all(float(a.split("_")[1]) <= 1.1 for a in sec.source_attrs)
