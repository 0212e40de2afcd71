"""Audio sources: stdin PCM, file replay, and live capture through the real PortAudio/ALSA stack."""

from __future__ import annotations

import io
import itertools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from edge_agent.audio import read_wav, write_wav
from edge_agent.errors import AudioFileError, ConfigError, DeviceError
from edge_agent.sources import (
    Block,
    DeviceInfo,
    DeviceSource,
    SourceSettings,
    choose_capture_rate,
    decode_pcm,
    list_input_devices,
    open_source,
    resolve_device,
)

RATE = 16000


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def drain(source, n: int | None = None, timeout: float = 5.0) -> list[Block]:
    """Blocks until `n` samples (or exhaustion), failing after `timeout` seconds."""
    blocks: list[Block] = []
    got = 0
    deadline = time.monotonic() + timeout
    while (n is None or got < n) and not source.exhausted:
        assert time.monotonic() < deadline, f"only {got} samples after {timeout} s"
        b = source.read(0.2)
        if b is not None:
            blocks.append(b)
            got += b.samples.size
    return blocks


def cat(blocks: list[Block]) -> np.ndarray:
    return np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.float32)


# ----------------------------------------------------------------- stdin PCM


@pytest.mark.parametrize(
    ("fmt", "dtype", "scale"),
    [("s16le", "<i2", 32768.0), ("s32le", "<i4", 2147483648.0), ("f32le", "<f4", 1.0)],
)
def test_decode_pcm_all_formats_mixdown_and_channel(fmt: str, dtype: str, scale: float) -> None:
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
def test_stdin_source_reads_all_samples_and_flags_end(fmt: str) -> None:
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
    with open_source(settings, stdin=stream) as src:
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
    with open_source(settings, stdin=io.BytesIO(pcm.tobytes())) as src:
        y = cat(drain(src))
    assert y.size == 2 * RATE
    assert peak_hz(y, RATE) == pytest.approx(3000, abs=2)
    # continuous: equal to resampling the whole channel at once
    ref = scipy.signal.resample_poly(pcm[:, 1] / 32768.0, 1, 3)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_stdin_source_from_a_pipe_waits_for_data() -> None:
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    x = (np.arange(3200) % 100).astype("<i2")
    with open_source(SourceSettings(kind="stdin", blocksize=1600), stdin=reader) as src:
        assert src.read(0.1) is None  # nothing written yet: "no data", not the end
        assert not src.exhausted

        def writer() -> None:
            with os.fdopen(w, "wb") as f:
                f.write(x.tobytes())

        threading.Thread(target=writer).start()
        y = cat(drain(src))
    reader.close()
    np.testing.assert_array_equal(y, x / 32768.0)


def test_stdin_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="stdin_format"):
        open_source(SourceSettings(kind="stdin", stdin_format="s24le"), stdin=io.BytesIO())
    with pytest.raises(ConfigError, match=r"source.channel: channel 2 .* 2 channel"):
        open_source(SourceSettings(kind="stdin", stdin_channels=2, channel=2), io.BytesIO())
    with pytest.raises(ConfigError, match=r"source.kind"):
        open_source(SourceSettings(kind="microphone"))
    with pytest.raises(ConfigError, match="blocksize"):
        open_source(SourceSettings(kind="stdin", blocksize=0), io.BytesIO())


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
    with open_source(settings) as src:
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


def test_file_replay_paced_vs_fast(tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", tone(500, 0.6, RATE), RATE)
    t = time.monotonic()
    with open_source(SourceSettings(kind="files", files=(str(tmp_path / "x.wav"),))) as src:
        assert cat(drain(src)).size == 9600
    fast = time.monotonic() - t
    settings = SourceSettings(kind="files", files=(str(tmp_path / "x.wav"),), realtime=True)
    t = time.monotonic()
    with open_source(settings) as src:
        assert src.read(0.01) is None  # the first block is not "heard" before 0.1 s
        blocks = drain(src)
        assert cat(blocks).size == 9600
        assert blocks[-1].t_start + 0.1 <= time.time() + 0.02
    paced = time.monotonic() - t
    assert fast < 0.2
    assert 0.55 < paced < 1.0


def test_file_replay_loop(tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", np.linspace(-0.5, 0.5, 1000), RATE)
    settings = SourceSettings(kind="files", files=(str(tmp_path / "x.wav"),), loop=True,
                              blocksize=400)
    with open_source(settings) as src:
        y = cat(drain(src, n=3500))
        assert not src.exhausted
    x, _ = read_wav(tmp_path / "x.wav")
    np.testing.assert_array_equal(y[:3000], np.tile(x, 3))


def test_file_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"missing.wav: no such file or folder"):
        open_source(SourceSettings(kind="files", files=(str(tmp_path / "missing.wav"),)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match=r"folder contains no .wav files"):
        open_source(SourceSettings(kind="files", files=(str(tmp_path / "empty"),)))
    with pytest.raises(ConfigError, match=r"source.files"):
        open_source(SourceSettings(kind="files"))
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with open_source(SourceSettings(kind="files", files=(str(tmp_path / "bad.wav"),))) as src, \
            pytest.raises(AudioFileError, match=r"bad.wav: not a readable WAV"):
        src.read(0.1)


# ----------------------------------------------------------------- device choice (pure)


DEVICES = [
    DeviceInfo(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 44100.0, (44100, 48000)),
    DeviceInfo(1, "USB PnP Sound Device: Audio (hw:1,0)", 1, 48000.0, (44100, 48000)),
    DeviceInfo(2, "pulse", 32, 44100.0, (16000, 48000), is_default=True),
    DeviceInfo(3, "pulsemic", 32, 44100.0, (16000,)),
]


def test_resolve_device_by_index_name_substring_and_default() -> None:
    assert resolve_device(1, DEVICES).index == 1
    assert resolve_device("1", DEVICES).index == 1
    assert resolve_device("usb pnp", DEVICES).index == 1
    assert resolve_device("hw:0", DEVICES).index == 0
    assert resolve_device("PULSE", DEVICES).index == 2  # exact name beats substring
    assert resolve_device(None, DEVICES).index == 2
    with pytest.raises(DeviceError, match=r"no input device matching 'hw:5'.*1 'USB PnP"):
        resolve_device("hw:5", DEVICES)
    with pytest.raises(DeviceError, match="index 9"):
        resolve_device(9, DEVICES)
    with pytest.raises(DeviceError, match="matches several"):
        resolve_device("hw:", DEVICES)
    with pytest.raises(DeviceError, match="no input device found"):
        resolve_device(None, [])


def test_choose_capture_rate_falls_back_when_16k_is_refused() -> None:
    usb = {44100, 48000}
    assert choose_capture_rate(None, usb.__contains__, 48000.0) == 48000
    assert choose_capture_rate(None, usb.__contains__, 96000.0) == 48000  # default refused too
    assert choose_capture_rate(None, {16000, 48000}.__contains__, 48000.0) == 16000
    assert choose_capture_rate(44100, usb.__contains__, 48000.0) == 44100
    with pytest.raises(DeviceError, match="does not accept 16000 Hz; it accepts 44100, 48000"):
        choose_capture_rate(16000, usb.__contains__, 48000.0)
    with pytest.raises(DeviceError, match="accepts none"):
        choose_capture_rate(None, lambda r: False, 48000.0)


# ----------------------------------------------------------------- real PortAudio capture


def capture(settings: SourceSettings, n: int, timeout: float = 5.0) -> tuple[np.ndarray, list]:
    with open_source(settings) as src:
        blocks = drain(src, n=n, timeout=timeout)
    return cat(blocks)[:n], blocks


@pytest.mark.audio
def test_file_mic_is_captured_sample_exactly(fake_mic) -> None:
    x = np.random.default_rng(3).uniform(-0.9, 0.9, 3 * RATE).astype(np.float32)
    name = fake_mic(x)
    y, blocks = capture(SourceSettings(device=name, blocksize=1600), x.size)
    np.testing.assert_array_equal(y, x)
    assert {b.samples.size for b in blocks[:-1]} == {1600}
    assert all(b.source_info == name and not b.overflow for b in blocks)


@pytest.mark.audio
def test_channel_selection_and_mixdown_on_a_stereo_mic(fake_mic) -> None:
    left, right = tone(440, 1.0, RATE), tone(1500, 1.0, RATE, amp=0.25)
    name = fake_mic(np.stack([left, right], 1), channels=2)
    y, _ = capture(SourceSettings(device=name, channel=1), RATE)
    np.testing.assert_array_equal(y, right)
    with pytest.raises(DeviceError, match="channel 200 requested"):
        capture(SourceSettings(device=name, channel=200), 1)


@pytest.mark.audio
def test_missing_device_lists_the_existing_ones(fake_mic) -> None:
    name = fake_mic(np.zeros(1600, np.float32))
    with pytest.raises(DeviceError, match=rf"no input device matching 'hw:7'.*'{name}'"):
        open_source(SourceSettings(device="hw:7")).start()
    with pytest.raises(DeviceError, match="index 999"):
        open_source(SourceSettings(device=999)).start()
    devices = list_input_devices()
    mic = next(d for d in devices if d.name == name)
    assert {16000, 44100, 48000} <= set(mic.supported_rates)


@pytest.mark.audio
def test_48k_capture_is_resampled_continuously(fake_mic, caplog) -> None:
    x = tone(1000, 2.0, 48000) + tone(5000, 2.0, 48000, amp=0.2)
    name = fake_mic(x, rate=48000)
    with caplog.at_level("INFO", logger="edge_agent.sources"):
        y, _ = capture(SourceSettings(device=name, capture_rate=48000), RATE)
    assert "at 48000 Hz" in caplog.text and "resampling to 16000 Hz" in caplog.text
    assert y.size == RATE
    assert peak_hz(y, RATE) == pytest.approx(1000, abs=2)
    # the same as resampling the whole signal at once: no edges at PortAudio block borders
    ref = scipy.signal.resample_poly(x.astype(np.float64), 1, 3)[:RATE]
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.audio
def test_overflow_flags_are_counted_and_put_on_the_next_block(fake_mic) -> None:
    sd = pytest.importorskip("sounddevice")
    name = fake_mic(np.zeros(RATE, np.float32))
    src = DeviceSource(SourceSettings(device=name))
    src.start()
    try:
        drain(src, n=3200)
        src.stop()  # no more real callbacks: inject them as PortAudio would deliver them
        while not src._q.empty():  # the fast mic queued far more than we read
            src._q.get_nowait()
        src._dropped_seen = src._dropped
        flags = sd.CallbackFlags()
        flags.input_overflow = True
        src._callback(np.ones((160, 1), np.float32), 160, None, flags)
        src._callback(np.ones((160, 1), np.float32), 160, None, sd.CallbackFlags())
        assert src._opened is not None
        src._opened.stream = object()  # read() only needs the queued data now
        first, second = src.read(1.0), src.read(1.0)
    finally:
        src.stop()
    assert first is not None and first.overflow and src.overflows == 1
    assert second is not None and not second.overflow


@pytest.mark.audio
def test_paced_pulse_mic_delivers_in_real_time(fake_mic) -> None:
    x = np.random.default_rng(5).uniform(-0.5, 0.5, RATE).astype(np.float32)
    name = fake_mic(x, paced=True)
    t0 = time.time()
    y, blocks = capture(SourceSettings(device=name), RATE)
    elapsed = time.time() - t0
    np.testing.assert_array_equal(y, x)
    assert 0.8 < elapsed < 3.0
    # block timestamps follow the wall clock: 1 s of audio spans ~1 s
    assert blocks[-1].t_start - blocks[0].t_start == pytest.approx(
        (len(blocks) - 1) * 0.1, abs=0.15)
    assert abs(blocks[0].t_start - t0) < 1.0


@pytest.mark.audio
def test_device_loss_is_reported_and_recovered(alsa_sandbox, tmp_path_factory, caplog) -> None:
    from audio_fixtures import PulseServer, pulse_or_skip

    pulse_or_skip()
    server = PulseServer(Path(tmp_path_factory.mktemp("palost")), {"lostsrc": 16000})
    server.start()
    alsa_sandbox.add_pcm("losablemic", server.pcm_body("lostsrc"))
    settings = SourceSettings(device="losablemic", reconnect_seconds=0.2, stall_seconds=2.0)
    src = DeviceSource(settings)
    try:
        src.start()
        drain(src, n=1600)
        with caplog.at_level("WARNING", logger="edge_agent.sources"):
            server.stop()  # the sound server dies: the stream fails
            deadline = time.monotonic() + 5
            while not src.lost:
                assert time.monotonic() < deadline, "loss not detected"
                src.read(0.2)
            assert "lost" in caplog.text
            for _ in range(3):  # retries fail quietly while it is gone
                assert src.read(0.3) is None
            server.start()
            blocks = drain(src, n=1600, timeout=8)
            assert "is back" in caplog.text
    finally:
        src.stop()
        server.stop()
        alsa_sandbox.remove_pcm("losablemic")
    assert src.losses == 1 and src.recoveries == 1 and not src.lost
    assert blocks[0].overflow  # the gap is flagged on the first block after recovery
