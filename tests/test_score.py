"""`edge-agent score`: device-path scores of WAV files, equal to evaluate's for the same bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.load import load_bundle
from edge_agent.cli import main as edge_main
from model_build.data.dataset import scan
from model_build.evaluation.evaluate import evaluate_embedder
from model_build.export import BundleEmbedder
from model_build.training.runs import load_run

TOLERANCE = 1e-5  # float32 device scores vs evaluate's float64 backend on the same embeddings


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        edge_main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_real_dcase_clips_score_through_the_device_path(
    bundle_dir: Path, capsys: pytest.CaptureFixture[str], real_data: Callable[[str], Path]
) -> None:
    sections = load_bundle(bundle_dir).sections
    machines = {s.split("_section_")[0] for s in sections}
    real = real_data("dcase2023-dev-mixed")
    files = sorted(p for p in real.glob("*.wav") if p.name.split("_")[0] in machines)
    if not files:
        pytest.skip("no real clip of a machine type the test bundle knows")
    code, out, _ = _run(["score", *map(str, files), "--bundle", str(bundle_dir), "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == len(files)
    for f, r in zip(files, rows, strict=True):
        assert r["section"] == f"{f.name.split('_')[0]}_section_00"
        # standardised fused score: finite, and the decision is score > threshold
        assert np.isfinite(r["score"]) and np.isfinite(r["threshold"])
        assert r["anomalous"] == (r["score"] > r["threshold"])


def test_scores_equal_evaluate_scores_for_the_same_bundle(
    bundle_dir: Path, trained_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    roots = [Path(p) for p in load_run(trained_run).meta["data"]]
    clips = scan(roots)
    test = [c for c in clips if c.split == "test"]
    argv = ["score", *map(str, roots), "--bundle", str(bundle_dir), "--json", "--threads", "2"]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    rows = {Path(r["file"]): r for r in map(json.loads, out.splitlines())}
    # `model-build evaluate`'s path on the bundle's (device-path) embeddings decides the same
    # per-section weights from the same pseudo-anomalies export made, and scores the same
    emb = BundleEmbedder(bundle_dir)
    b = load_bundle(bundle_dir)
    config = b.backend_config
    assert config.weighting == "pseudo"
    _, payload = evaluate_embedder(emb, clips, config, tmp_path / "ev", plots=False)
    for sec in b.sections:
        assert payload["weights"][sec]["weights"] == [
            round(c.weight, 6) for c in b.backend(sec).components
        ]
    ev_scores = {}
    for f in (tmp_path / "ev" / "system").glob("anomaly_score_*.csv"):
        for line in f.read_text().splitlines():
            name, value = line.split(",")
            ev_scores[name] = float(value)
    thresholds = payload["results"]["system"]["thresholds"]
    got = np.array([rows[Path(c.path)]["score"] for c in test])
    assert np.allclose(got, [ev_scores[c.path.name] for c in test], atol=TOLERANCE, rtol=0)
    for c in test:
        r = rows[Path(c.path)]
        assert r["section"] == c.section_id and r["model_version"] == b.model_version
        assert r["threshold"] == pytest.approx(thresholds[c.section_id], abs=TOLERANCE)
        assert r["anomalous"] == (r["score"] > r["threshold"])


def test_table_output_and_section_option(
    bundle_dir: Path, trained_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    roots = [Path(p) for p in load_run(trained_run).meta["data"]]
    clip = next(c for c in scan(roots) if c.split == "test")
    sections = load_bundle(bundle_dir).sections
    code, out, _ = _run(["score", str(clip.path), "--bundle", str(bundle_dir)], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["score", "threshold", "decision"]
    assert lines[1].split()[2] in ("ANOMALY", "normal") and clip.section_id in lines[1]
    other = next(s for s in sections if s != clip.section_id)
    code, out, _ = _run(
        ["score", str(clip.path), "--bundle", str(bundle_dir), "--section", other, "--json"],
        capsys,
    )
    assert code == 0 and json.loads(out)["section"] == other
    code, _, err = _run(
        ["score", str(clip.path), "--bundle", str(bundle_dir), "--section", "nope"], capsys
    )
    assert code == 2 and "no section 'nope'" in err
    plain = tmp_path / "recording.wav"
    plain.write_bytes(Path(clip.path).read_bytes())
    code, _, err = _run(["score", str(plain), "--bundle", str(bundle_dir)], capsys)
    assert code == 2 and "error: --section: needed for" in err and "no section_XX" in err
    code, _, err = _run(["score", str(tmp_path / "gone.wav"), "--bundle", str(bundle_dir)], capsys)
    assert code == 2 and err.startswith("error: ") and "no such file" in err


# ------------------------------------------------ long files, sensor faults, bad files (demo)


def _demo() -> tuple[Path, str, list[Path]]:
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    return demo.bundle, demo.section, list(demo.paths)


def _single_scores(
    files: list[Path], bundle: Path, section: str, capsys: pytest.CaptureFixture[str]
) -> list[float]:
    code, out, err = _run(
        ["score", *map(str, files), "--bundle", str(bundle), "--section", section, "--json"], capsys
    )
    assert code == 0, err
    return [json.loads(line)["score"] for line in out.splitlines()]


def test_long_file_every_window_scored_file_verdict_is_the_max_and_faults_are_not_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 40 s recording: two real clips, then 10 s of digital silence and 10 s stuck at a DC
    level. `score` scores the two, calls the other two SENSOR_FAULT (as `run` does, via
    health.assess_window) and gives the file the maximum of the scored windows."""
    from edge_agent.audio.files import read_wav, write_wav

    bundle, section, clips = _demo()
    pair = [clips[0], clips[-1]]  # a normal and a faulty demo clip
    x = np.concatenate(
        [read_wav(p)[0] for p in pair]
        + [np.zeros(160_000, np.float32), np.full(160_000, 0.25, np.float32)]
    )
    wav = tmp_path / "recording.wav"
    write_wav(wav, x, 16000)
    single = _single_scores(pair, bundle, section, capsys)
    argv = ["score", str(wav), "--bundle", str(bundle), "--section", section, "--hop", "10"]
    code, out, err = _run([*argv, "--json"], capsys)
    assert code == 0, err
    (v,) = map(json.loads, out.splitlines())
    w = v["windows"]
    assert [r["start_s"] for r in w] == [0.0, 10.0, 20.0, 30.0]
    assert np.allclose([r["score"] for r in w[:2]], single, atol=1e-4)
    assert [r["faults"] for r in w] == [[], [], ["silence"], ["silence"]]  # DC is no sound
    assert w[2]["score"] is None and w[2]["anomalous"] is None and w[2]["rms_dbfs"] == -120.0
    assert v["score"] == max(single) == pytest.approx(max(r["score"] for r in w[:2]))
    assert v["anomalous"] == (v["score"] > v["threshold"]) and v["faults"] == ["silence"]
    assert v["decision"] == ("ANOMALY" if v["anomalous"] else "normal")

    code, out, err = _run(argv, capsys)
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert [r.split()[-1] for r in rows[:2]] == [f"{wav}@0s", f"{wav}@10s"]
    assert "SENSOR_FAULT" in rows[2] and f"{wav}@20s" in rows[2] and "silent (RMS" in rows[2]
    assert rows[4].split()[2] == v["decision"] and f"{wav}  (max of 4 windows" in rows[4]
    assert "2 with a sensor fault (silence)" in rows[4]


def test_all_silent_file_is_a_sensor_fault_not_an_anomaly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.audio.files import write_wav

    bundle, section, _ = _demo()
    wav = tmp_path / "dead_mic.wav"
    write_wav(wav, np.zeros(160_000), 16000)
    argv = ["score", str(wav), "--bundle", str(bundle), "--section", section]
    code, out, _ = _run([*argv, "--json"], capsys)
    v = json.loads(out)
    assert code == 0 and v["decision"] == "SENSOR_FAULT" and v["score"] is None
    assert v["anomalous"] is None and v["faults"] == ["silence"]
    code, out, _ = _run(argv, capsys)
    assert code == 0 and out.splitlines()[1].split()[:3] == [
        "-",
        f"{v['threshold']:.5f}",
        "SENSOR_FAULT",
    ]


def test_unreadable_file_stops_or_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    bundle, section, clips = _demo()
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(clips[0], folder / "a.wav")
    (folder / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    zero = folder / "c.wav"  # a header sample rate of 0 used to be a traceback
    raw = bytearray(Path(clips[0]).read_bytes())
    raw[24:28] = bytes(4)
    zero.write_bytes(bytes(raw))
    argv = ["score", str(folder), "--bundle", str(bundle), "--section", section, "--json"]
    code, out, err = _run(argv, capsys)
    assert code == 2 and len(out.splitlines()) == 1  # a.wav was scored before b.wav stopped it
    assert err.strip().splitlines() == [
        (
            f"error: {folder / 'b.wav'}: not a readable WAV file (no valid 'fmt ' chunk) "
            "(remove the file or pass --skip-unreadable)"
        )
    ]
    code, out, err = _run([*argv, "--skip-unreadable"], capsys)
    assert code == 0 and [Path(json.loads(r)["file"]).name for r in out.splitlines()] == ["a.wav"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"skipped {folder / 'b.wav'}: not a readable")
    assert lines[1] == (
        f"skipped {zero}: implausible sample rate 0 Hz in the WAV header: "
        "expected 4000-384000 Hz (a corrupt or mislabelled header)"
    )
    code, _, err = _run(
        [
            "score",
            str(folder / "b.wav"),
            "--bundle",
            str(bundle),
            "--section",
            section,
            "--skip-unreadable",
        ],
        capsys,
    )
    assert code == 2 and err.strip().splitlines()[-1].endswith(": no readable WAV file")


def test_score_memory_is_bounded_whatever_the_file_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`score` on a 5-minute 48 kHz stereo recording (29 MB of 16-bit samples; the old
    whole-file read held it several times over as integers, floats and the resampled copy)
    stays under a bound set by the window, not the file."""
    import tracemalloc
    import wave

    bundle, section, _ = _demo()
    rate, t = 48_000, np.arange(48_000) / 48_000

    def write(path: Path, seconds: int) -> Path:
        with wave.open(str(path), "wb") as w:  # a second at a time: the test stays small
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(rate)
            noise = np.random.default_rng(0)
            for s in range(seconds):
                sec = 0.2 * np.sin(2 * np.pi * (300 + s) * t) + noise.normal(0, 0.02, rate)
                w.writeframes(np.round(np.stack([sec, -sec], 1) * 32767).astype("<i2").tobytes())
        return path

    wav = write(tmp_path / "long.wav", 300)
    opts = ["--bundle", str(bundle), "--section", section, "--hop", "140", "--json"]
    # imports, scipy's filter design, the TFLite runtime: constant costs, not measured
    _run(["score", str(write(tmp_path / "warm.wav", 10)), *opts], capsys)
    tracemalloc.start()
    try:
        code, out, err = _run(["score", str(wav), *opts], capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert [r["start_s"] for r in json.loads(out)["windows"]] == [0.0, 140.0, 280.0]
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MB"


@pytest.mark.parametrize(
    ("hop", "message"),
    [
        ("nan", "expected a finite number, got nan"),
        ("inf", "expected a finite number, got inf"),
        ("1e-9", r"expected a number in [0.1, 86400], got 1e-09"),  # reached 2.45 GB before
        ("0.05", r"expected a number in [0.1, 86400], got 0.05"),
    ],
)
def test_score_hop_is_checked_like_windows_hop(
    hop: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`score --hop` has `windows.hop`'s bounds and finiteness check, as one line, before any
    scoring (nan and inf used to end in a traceback, 1e-9 in gigabytes of windows)."""
    bundle, section, clips = _demo()
    code, out, err = _run(
        ["score", str(clips[0]), "--bundle", str(bundle), "--section", section, "--hop", hop],
        capsys,
    )
    assert code == 2 and out == ""
    assert err == f"error: --hop: {message}\n"


def test_a_fifo_is_named_for_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real FIFO given as a WAV file: `score` and `run --files` say it is a FIFO (not "no
    such file or folder") and where streamed audio goes; in a folder, a FIFO named *.wav is
    left out with a warning line and the real WAV beside it is scored. Nothing ever opens
    the FIFO (no writer: an open would block)."""
    import logging
    import os
    import shutil

    bundle, section, clips = _demo()
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    why = (
        "is a FIFO (named pipe), expected a regular WAV file (streamed audio: raw PCM into "
        "`edge-agent run --stdin`)"
    )
    for argv in (
        ["score", str(fifo), "--bundle", str(bundle), "--section", section],
        ["run", "--files", str(fifo), "--bundle", str(bundle), "--section", section, "--quiet"],
    ):
        code, out, err = _run(argv, capsys)
        assert code == 2, err
        assert err.splitlines()[-1] == f"error: {fifo}: {why}"
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "a_live.wav")
    shutil.copyfile(clips[0], folder / "b_clip.wav")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("edge_agent").addHandler(handler)
    try:
        code, out, err = _run(
            ["score", str(folder), "--bundle", str(bundle), "--section", section, "--json"], capsys
        )
    finally:
        logging.getLogger("edge_agent").removeHandler(handler)
    assert code == 0, err
    assert [json.loads(line)["file"] for line in out.splitlines()] == [str(folder / "b_clip.wav")]
    assert [r.getMessage() for r in records] == [f"{folder / 'a_live.wav'}: {why}; left out"]


def test_the_agents_own_evidence_flac_is_scored_like_its_wav(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alarm's evidence clip (16-bit FLAC, written by `runtime.evidence.encode`) used to be
    refused by `score` ("not a readable WAV file ... remove the file"). Now it scores exactly as
    the same audio as WAV does, alone or in a folder, and a broken FLAC is one line naming it."""
    from edge_agent.audio.files import read_wav, write_wav
    from edge_agent.commands.demo import load_demo
    from edge_agent.runtime.evidence import encode

    demo = load_demo()
    x, rate = read_wav(demo.paths[-1])
    clips = tmp_path / "evidence"
    clips.mkdir()
    (clips / "alarm.flac").write_bytes(encode(x, rate, "flac"))
    write_wav(tmp_path / "same.wav", x, rate)
    rows = {}
    for target in (clips / "alarm.flac", tmp_path / "same.wav", clips):
        code, out, err = _run(
            [
                "score",
                str(target),
                "--bundle",
                str(demo.bundle),
                "--section",
                demo.section,
                "--json",
            ],
            capsys,
        )
        assert code == 0, err
        (row,) = map(json.loads, out.splitlines())
        rows[target.name] = row
    assert rows["alarm.flac"]["score"] == rows["same.wav"]["score"] == rows["evidence"]["score"]
    assert rows["evidence"]["file"] == str(clips / "alarm.flac")
    (tmp_path / "broken.flac").write_bytes(b"fLaC" + bytes(200))
    code, _, err = _run(
        [
            "score",
            str(tmp_path / "broken.flac"),
            "--bundle",
            str(demo.bundle),
            "--section",
            demo.section,
        ],
        capsys,
    )
    assert code == 2
    assert err.strip().startswith(f"error: {tmp_path / 'broken.flac'}: not a readable FLAC file"), (
        err
    )
    assert len(err.strip().splitlines()) == 1
