"""Audio sources: contracts, stdin PCM and file replay (live capture: test_reader.py)."""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from audio_fixtures import cat, drain, peak_hz, tone

from edge_agent.audio.files import read_wav, write_wav
from edge_agent.config.sources import SourceSettings, StdinFormat
from edge_agent.errors import AudioFileError, ConfigError
from edge_agent.sources import open_source
from edge_agent.sources.stdin import decode_pcm

RATE = 16000


# ----------------------------------------------------------------- stdin PCM


@pytest.mark.parametrize(
    ("fmt", "dtype", "scale"),
    [("s16le", "<i2", 32768.0), ("s32le", "<i4", 2147483648.0), ("f32le", "<f4", 1.0)],
)
def test_decode_pcm_all_formats_mixdown_and_channel(
    fmt: StdinFormat, dtype: str, scale: float
) -> None:
    rng = np.random.default_rng(1)
    if dtype == "<f4":
        frames = rng.uniform(-1, 1, (100, 2)).astype(dtype)
    else:
        info = np.iinfo(np.dtype(dtype))
        frames = rng.integers(info.min, info.max, (100, 2), endpoint=True).astype(dtype)
    data = frames.tobytes()
    want = frames.astype(np.float64) / scale
    np.testing.assert_allclose(decode_pcm(data, fmt, 2, channel=1), want[:, 1], rtol=1e-6)
    np.testing.assert_allclose(decode_pcm(data, fmt, 2), want.mean(axis=1), rtol=1e-5, atol=1e-7)
    mono = decode_pcm(frames[:, 0].tobytes(), fmt, 1)
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, want[:, 0], rtol=1e-6)
    if dtype == "<i2":  # full scale maps to [-1, 1)
        edge = decode_pcm(np.array([-32768, 32767], "<i2").tobytes(), fmt, 1)
        assert edge[0] == -1.0 and edge[1] < 1.0


@pytest.mark.parametrize("fmt", ["s16le", "s32le", "f32le"])
def test_stdin_source_reads_all_samples_and_flags_end(fmt: StdinFormat) -> None:
    x = tone(440, 1.0, RATE)
    x[::7] = -x[::7]  # not band-limited: any resampling would change it
    dtype = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}[fmt]
    if dtype == "<f4":
        pcm, expect = x.astype(dtype), x
    else:
        scale = float(np.iinfo(np.dtype(dtype)).max) + 1
        pcm = np.round(x * (scale / 2)).astype(dtype)  # half scale: no overflow
        expect = pcm.astype(np.float64) / scale
    stream = io.BytesIO(pcm.tobytes() + b"\x01")  # a dangling byte (half a frame) is dropped
    settings = SourceSettings(kind="stdin", stdin_format=fmt, blocksize=700)
    with open_source(settings, RATE, stdin=stream) as src:
        blocks = drain(src)
    assert src.exhausted
    np.testing.assert_allclose(cat(blocks), expect, rtol=1e-6, atol=1e-9)
    assert all(b.samples.dtype == np.float32 for b in blocks)
    # t_start follows the audio: consecutive blocks are block-length apart
    for a, b in itertools.pairwise(blocks):
        assert b.t_start - a.t_start == pytest.approx(a.samples.size / RATE, abs=1e-6)


def test_stdin_source_resamples_48k_stereo_channel() -> None:
    left = tone(1000, 2.0, 48000)
    right = tone(3000, 2.0, 48000)
    pcm = np.round(np.stack([left, right], 1) * 32767).astype("<i2")
    settings = SourceSettings(kind="stdin", stdin_rate=48000, stdin_channels=2, channel=1)
    with open_source(settings, RATE, stdin=io.BytesIO(pcm.tobytes())) as src:
        y = cat(drain(src))
    assert y.size == 2 * RATE
    assert peak_hz(y, RATE) == pytest.approx(3000, abs=2)
    # continuous: equal to resampling the whole channel at once
    ref = scipy.signal.resample_poly(pcm[:, 1] / 32768.0, 1, 3)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_stdin_source_from_a_pipe_waits_and_follows_pauses() -> None:
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    x = (np.arange(6400) % 100).astype("<i2")
    with open_source(SourceSettings(kind="stdin", blocksize=1600), RATE, stdin=reader) as src:
        assert src.read(0.1) is None  # nothing written yet: "no data", not the end
        assert not src.exhausted

        def writer() -> None:
            with os.fdopen(w, "wb") as f:
                f.write(x[:3200].tobytes())
                f.flush()
                time.sleep(1.3)  # the recorder stalls: later audio is later in time
                f.write(x[3200:].tobytes())

        threading.Thread(target=writer).start()
        blocks = drain(src)
    reader.close()
    np.testing.assert_array_equal(cat(blocks), x / 32768.0)
    steps = np.diff([b.t_start for b in blocks])
    assert steps[0] == pytest.approx(0.1, abs=1e-6)  # the stream's own clock
    assert steps[1] == pytest.approx(1.4, abs=0.3)  # moved on by the pause
    assert steps[2] == pytest.approx(0.1, abs=1e-6)


def test_stdin_source_stop_ends_the_reader_while_the_pipe_stays_open() -> None:
    """The writer keeps the pipe open and silent: stop() still ends the reader thread (it
    waits in poll, not inside a buffered read that would hold the stream's lock)."""
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    try:
        src = open_source(SourceSettings(kind="stdin", blocksize=1600), RATE, stdin=reader)
        src.start()
        os.write(w, np.zeros(800, "<i2").tobytes())  # half a block: the reader waits for more
        assert src.read(0.3) is None
        started = time.monotonic()
        src.stop()
        thread = src._thread  # type: ignore[attr-defined]  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        assert thread is not None and not thread.is_alive()
        assert time.monotonic() - started < 2.0
    finally:
        os.close(w)
        reader.close()


@pytest.mark.parametrize("feed", [0, 8000, 320_000])
def test_sigterm_during_run_stdin_with_the_pipe_open_exits_0(tmp_path: Path, feed: int) -> None:
    """`edge-agent run --stdin` as a service manager stops it: SIGTERM while the writer keeps
    the pipe open (no data yet, half a block, two windows' worth still being scored). Before,
    Python aborted at shutdown (`Fatal Python error: _enter_buffered_busy`, exit 134). Three
    real processes per case: it must hold every time, not by luck of timing."""
    import signal
    import subprocess
    import sys

    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    repo = Path(__file__).resolve().parents[1]  # this checkout's agent, run in tmp_path: its
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(repo)}  # history too
    for attempt in range(3):
        err_path = tmp_path / f"err{attempt}.txt"
        with Path(err_path).open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge_agent.cli",
                    "run",
                    "--stdin",
                    "--bundle",
                    str(demo.bundle),
                    "--section",
                    demo.section,
                    "--json",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=tmp_path,
            )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            deadline = time.monotonic() + 60
            while b"PCM from stdin" not in err_path.read_bytes():
                assert proc.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, "the agent never started reading"
                time.sleep(0.05)
            if feed:
                proc.stdin.write(np.zeros(feed, "<i2").tobytes())
                proc.stdin.flush()
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)  # the pipe stays open until after the exit
            out = proc.stdout.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()
            proc.stdout.close()
        err_text = err_path.read_text()
        assert code == 0, err_text
        assert "Fatal Python error" not in err_text and "Traceback" not in err_text
        stopped = [json.loads(line) for line in out.splitlines() if '"stopped"' in line]
        assert stopped and stopped[-1]["kind"] == "status", out


def test_stdin_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="stdin_format"):
        open_source(
            SourceSettings(kind="stdin", stdin_format="s24le"),  # type: ignore[arg-type]
            RATE,
            stdin=io.BytesIO(),
        )
    with pytest.raises(ConfigError, match=r"source.channel: channel 2 .* 2 channel"):
        open_source(SourceSettings(kind="stdin", stdin_channels=2, channel=2), RATE, io.BytesIO())
    with pytest.raises(ConfigError, match=r"source.kind"):
        open_source(SourceSettings(kind="microphone"), RATE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="blocksize"):
        open_source(SourceSettings(kind="stdin", blocksize=0), RATE, io.BytesIO())


# ----------------------------------------------------------------- file replay


@pytest.fixture
def wav_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_wav(folder / "a.wav", rng.uniform(-0.5, 0.5, 8000), RATE)
    write_wav(folder / "sub" / "b.wav", rng.uniform(-0.5, 0.5, 5000), RATE)
    write_wav(folder / "c.WAV", tone(2000, 0.5, 48000), 48000)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_file_replay_is_one_continuous_stream(wav_folder: Path) -> None:
    settings = SourceSettings(kind="files", files=(str(wav_folder),), blocksize=1000)
    with open_source(settings, RATE) as src:
        blocks = drain(src)
    names = [Path(b.source_info).name for b in blocks]
    assert names == ["a.wav"] * 8 + ["c.WAV"] * 8 + ["b.wav"] * 5  # sorted paths, recursive
    a, _ = read_wav(wav_folder / "a.wav")
    b, _ = read_wav(wav_folder / "sub" / "b.wav")
    y = cat(blocks)
    np.testing.assert_array_equal(y[:8000], a)
    np.testing.assert_array_equal(y[-5000:], b)
    c = y[8000:-5000]
    assert c.size == 8000 and peak_hz(c, RATE) == pytest.approx(2000, abs=3)  # 48k -> 16k
    starts = [b.t_start for b in blocks]
    np.testing.assert_allclose(np.diff(starts), [b.samples.size / RATE for b in blocks[:-1]])
    assert src.blocks == len(blocks) and src.overflows == 0
    assert src.status() == {"blocks": len(blocks), "overflows": 0}


def test_file_replay_paced_vs_fast(tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", tone(500, 0.6, RATE), RATE)
    t = time.monotonic()
    with open_source(SourceSettings(kind="files", files=(str(tmp_path / "x.wav"),)), RATE) as src:
        assert cat(drain(src)).size == 9600
    fast = time.monotonic() - t
    settings = SourceSettings(kind="files", files=(str(tmp_path / "x.wav"),), realtime=True)
    t = time.monotonic()
    with open_source(settings, RATE) as src:
        assert src.read(0.01) is None  # the first block is not "heard" before 0.1 s
        blocks = drain(src)
        assert cat(blocks).size == 9600
        assert blocks[-1].t_start + 0.1 <= time.time() + 0.02
    paced = time.monotonic() - t
    assert fast < min(0.5, paced / 2)
    assert 0.55 < paced < 2.0


def test_file_replay_loop(tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", np.linspace(-0.5, 0.5, 1000), RATE)
    settings = SourceSettings(
        kind="files", files=(str(tmp_path / "x.wav"),), loop=True, blocksize=400
    )
    with open_source(settings, RATE) as src:
        y = cat(drain(src, n=3500))
        assert not src.exhausted
    x, _ = read_wav(tmp_path / "x.wav")
    np.testing.assert_array_equal(y[:3000], np.tile(x, 3))


def test_file_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"missing.wav: no such file or folder"):
        open_source(SourceSettings(kind="files", files=(str(tmp_path / "missing.wav"),)), RATE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match=r"folder contains no .wav or .flac files"):
        open_source(SourceSettings(kind="files", files=(str(tmp_path / "empty"),)), RATE)
    with pytest.raises(ConfigError, match=r"source.files"):
        open_source(SourceSettings(kind="files"), RATE)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    bad = SourceSettings(kind="files", files=(str(tmp_path / "bad.wav"),))
    with pytest.raises(AudioFileError, match=r"bad.wav: not a readable WAV.*--skip-unreadable"):
        open_source(bad, RATE)  # the header is checked before any replay


def _bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_wav(folder / "a.wav", tone(500, 1.0, RATE), RATE)
    (folder / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    raw = bytearray((folder / "a.wav").read_bytes())
    raw[24:28] = (1).to_bytes(4, "little")  # 1 Hz: would be upsampled 16 000x
    (folder / "c.wav").write_bytes(bytes(raw))
    write_wav(folder / "d.wav", tone(700, 1.0, RATE), RATE)
    return folder


def test_file_replay_skip_unreadable_and_short_file_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _bad_folder(tmp_path)
    strict = SourceSettings(kind="files", files=(str(folder),))
    with pytest.raises(
        AudioFileError,
        match=r"b\.wav: not a readable WAV file .*"
        r"\(remove the file or pass --skip-unreadable\)$",
    ):
        open_source(strict, RATE)  # before anything plays, not after a.wav
    skip = SourceSettings(kind="files", files=(str(folder),), skip_unreadable=True)
    with (
        caplog.at_level("WARNING", logger="edge_agent"),
        open_source(skip, RATE, window=10 * RATE) as src,
    ):
        blocks = drain(src)
    assert {Path(b.source_info).name for b in blocks} == {"a.wav", "d.wav"}
    assert cat(blocks).size == 2 * RATE
    msgs = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(f"{folder / 'b.wav'}: not a readable WAV") and "skipped" in m for m in msgs
    )
    assert any(f"{folder / 'c.wav'}: implausible sample rate 1 Hz" in m for m in msgs)
    short = [m for m in msgs if "shorter than one 10.00 s window" in m]
    assert len(short) == 2 and short[0].startswith(f"{folder / 'a.wav'}: 1.00 s is shorter")
    only_bad = SourceSettings(kind="files", files=(str(folder / "b.wav"),), skip_unreadable=True)
    with pytest.raises(AudioFileError, match="no readable WAV file"):
        open_source(only_bad, RATE)


def test_run_on_a_folder_with_a_bad_file_errors_or_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-agent run --files`: one line naming the bad file and exit 2, or with
    --skip-unreadable the good files are scored."""
    import shutil

    from cli_helpers import run_cli

    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    folder = _bad_folder(tmp_path)
    shutil.copy(demo.paths[0], folder / "e.wav")
    argv = [
        "run",
        "--files",
        str(folder),
        "--bundle",
        str(demo.bundle),
        "--section",
        demo.section,
        "--json",
    ]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (  # after a.wav's short-file warning
        f"error: {folder / 'b.wav'}: not a readable WAV file (no valid 'fmt ' chunk) "
        "(remove the file or pass --skip-unreadable)"
    )
    assert "Traceback" not in err
    code, out, err = run_cli(capsys, *argv, "--skip-unreadable")
    assert code == 0, err
    scores = [e for e in map(json.loads, out.splitlines()) if e.get("kind") == "score"]
    assert len(scores) == 1  # 1 + 1 + 10 s: one full window
    assert "b.wav: not a readable WAV file" in err and "c.wav: implausible sample rate" in err


def test_a_piped_replay_summarises_dropped_windows_and_keeps_quiet(tmp_path: Path) -> None:
    """`cat recording.raw | edge-agent run --stdin --quiet`: the pipe delivers far faster than
    real time, so windows are dropped (the scorer cannot keep up); it used to print an INFO line
    per dropped window, even with --quiet. Now: nothing on stdout, the drops as a summary (the
    first at once, then at most one a minute, the rest at the end), and the counts add up to
    the run's `windows_dropped`."""
    import re
    import subprocess
    import sys

    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"bundle: {demo.bundle}\nsection: {demo.section}\nsource: {{kind: stdin}}\n"
        f"windows: {{hop: 0.1}}\nqueue_size: 1\n"
        f"outbox: {{path: {tmp_path}/outbox.sqlite}}\n"
    )
    pcm = (np.random.default_rng(0).standard_normal(RATE * 90) * 3000).astype("<i2").tobytes()
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg), "--quiet"],
        input=pcm,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout == b""  # --quiet: no per-window line
    drops = [line for line in err.splitlines() if "windows_dropped:" in line]
    stopped = json.loads(
        next(line for line in err.splitlines() if '"event": "stopped"' in line).split(
            "status: ", 1
        )[1]
    )
    assert stopped["windows_dropped"] > 50, err  # the scorer did fall behind
    assert 1 <= len(drops) <= 3, drops  # a summary, not a line per window (the run < 2 min)
    assert all(f" WARNING {demo.section} windows_dropped: scorer_behind" in d for d in drops)
    counts = [int(re.search(r"count=(\d+)", d)[1]) for d in drops]  # type: ignore[index]
    assert sum(counts) == stopped["windows_dropped"]
