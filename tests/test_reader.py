"""Live capture through the real PortAudio/ALSA stack (fake microphones from audio_fixtures)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from audio_fixtures import AlsaSandbox, FakeMic, cat, drain, peak_hz, tone
from numpy.typing import NDArray

from edge_agent.config.sources import SourceSettings
from edge_agent.errors import DeviceError
from edge_agent.sources import open_source
from edge_agent.sources.base import Block
from edge_agent.sources.device import (
    DeviceInfo,
    DeviceSource,
    choose_capture_rate,
    list_input_devices,
    resolve_device,
)

RATE = 16000


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
    assert choose_capture_rate(None, RATE, usb.__contains__, 48000.0) == 48000
    # the device's default refused too
    assert choose_capture_rate(None, RATE, usb.__contains__, 96000.0) == 48000
    assert choose_capture_rate(None, RATE, {16000, 48000}.__contains__, 48000.0) == 16000
    assert choose_capture_rate(44100, RATE, usb.__contains__, 48000.0) == 44100
    with pytest.raises(DeviceError, match="does not accept 16000 Hz; it accepts 44100, 48000"):
        choose_capture_rate(16000, RATE, usb.__contains__, 48000.0)
    with pytest.raises(DeviceError, match="accepts none"):
        choose_capture_rate(None, RATE, lambda r: False, 48000.0)


# ----------------------------------------------------------------- real PortAudio capture


def capture(
    settings: SourceSettings, n: int, timeout: float = 5.0
) -> tuple[NDArray[np.float32], list[Block]]:
    with open_source(settings, RATE) as src:
        blocks = drain(src, n=n, timeout=timeout)
    return cat(blocks)[:n], blocks


@pytest.mark.audio
def test_file_mic_is_captured_sample_exactly(fake_mic: FakeMic) -> None:
    x = np.random.default_rng(3).uniform(-0.9, 0.9, 3 * RATE).astype(np.float32)
    name = fake_mic(x)
    y, blocks = capture(SourceSettings(device=name, blocksize=1600), x.size)
    np.testing.assert_array_equal(y, x)
    assert {b.samples.size for b in blocks[:-1]} == {1600}
    assert all(b.source_info == name and not b.overflow for b in blocks)


@pytest.mark.audio
def test_channel_selection_and_mixdown_on_a_stereo_mic(fake_mic: FakeMic) -> None:
    left, right = tone(440, 1.0, RATE), tone(1500, 1.0, RATE, amp=0.25)
    name = fake_mic(np.stack([left, right], 1), channels=2)
    y, _ = capture(SourceSettings(device=name, channel=1), RATE)
    np.testing.assert_array_equal(y, right)
    with pytest.raises(DeviceError, match="channel 200 requested"):
        capture(SourceSettings(device=name, channel=200), 1)


@pytest.mark.audio
def test_missing_device_lists_the_existing_ones(fake_mic: FakeMic) -> None:
    name = fake_mic(np.zeros(1600, np.float32))
    with pytest.raises(DeviceError, match=rf"no input device matching 'hw:7'.*'{name}'"):
        open_source(SourceSettings(device="hw:7"), RATE).start()
    with pytest.raises(DeviceError, match="index 999"):
        open_source(SourceSettings(device=999), RATE).start()
    devices = list_input_devices()
    mic = next(d for d in devices if d.name == name)
    assert {16000, 44100, 48000} <= set(mic.supported_rates)


@pytest.mark.audio
def test_48k_capture_is_resampled_continuously(
    fake_mic: FakeMic, caplog: pytest.LogCaptureFixture
) -> None:
    x = tone(1000, 2.0, 48000) + tone(5000, 2.0, 48000, amp=0.2)
    name = fake_mic(x, rate=48000)
    with caplog.at_level("INFO", logger="edge_agent.sources.device"):
        y, _ = capture(SourceSettings(device=name, capture_rate=48000), RATE)
    assert "at 48000 Hz" in caplog.text and "resampling to 16000 Hz" in caplog.text
    assert y.size == RATE
    assert peak_hz(y, RATE) == pytest.approx(1000, abs=2)
    # the same as resampling the whole signal at once: no edges at PortAudio block borders
    ref = scipy.signal.resample_poly(x.astype(np.float64), 1, 3)[:RATE]
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.audio
def test_overflow_flags_are_counted_and_put_on_the_next_block(fake_mic: FakeMic) -> None:
    sd = pytest.importorskip("sounddevice")
    name = fake_mic(np.zeros(RATE, np.float32))
    src = DeviceSource(SourceSettings(device=name), RATE)
    src.start()
    try:
        drain(src, n=3200)
        assert src._opened is not None and src._opened.capture is not None  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        capture = src._opened.capture  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        src.stop()  # no more real callbacks: inject them as PortAudio would deliver them
        while not capture.q.empty():  # the fast mic queued far more than we read
            capture.q.get_nowait()
        flags = sd.CallbackFlags()
        flags.input_overflow = True
        capture.callback(np.ones((160, 1), np.float32), 160, None, flags)
        capture.callback(np.ones((160, 1), np.float32), 160, None, sd.CallbackFlags())
        src._opened.capture = capture  # read() only needs the queued data now  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        first, second = src.read(1.0), src.read(1.0)
    finally:
        src.stop()
    assert first is not None and first.overflow and src.overflows == 1
    assert second is not None and not second.overflow


@pytest.mark.audio
def test_a_reader_far_behind_loses_blocks_and_the_next_one_is_flagged(fake_mic: FakeMic) -> None:
    """Real drops: the fast mic outruns a reader that does not read for a while."""
    x = np.random.default_rng(4).uniform(-0.5, 0.5, 2 * RATE).astype(np.float32)
    name = fake_mic(x)
    src = DeviceSource(SourceSettings(device=name, blocksize=1600), RATE, queue_blocks=40)
    src.start()
    try:
        time.sleep(0.5)  # the mic delivers thousands of times real time: the queue overflows
        read = [src.read(1.0) for _ in range(41)]
    finally:
        src.stop()
    blocks = [b for b in read if b is not None]
    assert len(blocks) == len(read)
    np.testing.assert_array_equal(cat(blocks[:20]), x)  # what was queued is intact
    assert not any(b.overflow for b in blocks[:40])
    assert blocks[40].overflow  # the first block after the dropped ones
    assert src.dropped > 0 and src.overflows == 1 and src.status()["dropped"] == src.dropped


@pytest.mark.audio
def test_paced_pulse_mic_delivers_in_real_time(fake_mic: FakeMic) -> None:
    x = np.random.default_rng(5).uniform(-0.5, 0.5, RATE).astype(np.float32)
    name = fake_mic(x, paced=True)
    t0 = time.time()
    y, blocks = capture(SourceSettings(device=name), RATE)
    elapsed = time.time() - t0
    np.testing.assert_array_equal(y, x)
    assert 0.8 < elapsed < 3.0
    # block timestamps follow the wall clock: 1 s of audio spans ~1 s
    assert blocks[-1].t_start - blocks[0].t_start == pytest.approx(
        (len(blocks) - 1) * 0.1, abs=0.15
    )
    assert abs(blocks[0].t_start - t0) < 1.0


@pytest.mark.audio
def test_device_loss_is_reported_and_recovered(
    alsa_sandbox: AlsaSandbox,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from audio_fixtures import PulseServer, pulse_or_skip

    pulse_or_skip()
    server = PulseServer(Path(tmp_path_factory.mktemp("palost")), {"lostsrc": 16000})
    server.start()
    alsa_sandbox.add_pcm("losablemic", server.pcm_body("lostsrc"))
    settings = SourceSettings(device="losablemic", reconnect_seconds=0.2, stall_seconds=2.0)
    src = DeviceSource(settings, RATE, close_timeout=1.0)
    try:
        src.start()
        drain(src, n=1600, timeout=20)
        with caplog.at_level("WARNING", logger="edge_agent.sources.device"):
            server.stop()  # the sound server dies: the stream fails
            # Generous bounds (a loaded 2-core machine): each is a deadline, not a sleep.
            deadline = time.monotonic() + 30
            while not src.lost:
                assert time.monotonic() < deadline, "loss not detected"
                src.read(0.2)
            assert "lost" in caplog.text
            for _ in range(3):  # retries fail quietly while it is gone, within read's timeout
                t0 = time.monotonic()
                assert src.read(0.3) is None
                assert time.monotonic() - t0 < 0.3 + 5
            server.start()
            blocks = drain(src, n=1600, timeout=60)
            assert "is back" in caplog.text
    finally:
        src.stop()
        server.stop()
        _wait_for_stuck_calls()
        alsa_sandbox.remove_pcm("losablemic")
    assert src.losses == 1 and src.recoveries == 1 and not src.lost
    assert src.status()["device"] == "losablemic" and src.status()["recoveries"] == 1
    assert blocks[0].overflow  # the gap is flagged on the first block after recovery


def _wait_for_stuck_calls(seconds: float = 30.0) -> None:
    """Let abandoned PortAudio calls finish (their server was killed) before a later test
    re-initialises PortAudio; a call that never returns is left behind (nothing to assert)."""
    from edge_agent.sources.device import stuck_calls

    deadline = time.monotonic() + seconds
    while stuck_calls() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.audio
def test_stop_is_bounded_when_the_sound_server_hangs(
    alsa_sandbox: AlsaSandbox,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stopped (SIGSTOP) PulseAudio never answers: PortAudio's close blocks; stop() does not.

    Without the bounded teardown `stop()` sits in Pa_CloseStream until the server dies.
    """
    from audio_fixtures import PulseServer, pulse_or_skip

    from edge_agent.sources.device import stuck_calls

    pulse_or_skip()
    server = PulseServer(Path(tmp_path_factory.mktemp("pahang")), {"hangsrc": 16000})
    server.start()
    alsa_sandbox.add_pcm("hangmic", server.pcm_body("hangsrc"))
    src = DeviceSource(SourceSettings(device="hangmic"), RATE, close_timeout=1.0)
    try:
        src.start()
        drain(src, n=1600, timeout=20)
        server.freeze()
        with caplog.at_level("WARNING", logger="edge_agent.sources.device"):
            t0 = time.monotonic()
            src.stop()
            elapsed = time.monotonic() - t0
        assert elapsed < 1.0 + 5, f"stop() took {elapsed:.1f} s"
        # the close really hung (else this test would prove nothing) and was abandoned
        assert src.abandoned_closes == 1 and stuck_calls() >= 1
        assert "did not return within 1.0 s" in caplog.text
        src.stop()  # twice: still safe and immediate
    finally:
        server.stop()
        _wait_for_stuck_calls()
        alsa_sandbox.remove_pcm("hangmic")


@pytest.mark.audio
def test_reconnect_goes_ahead_while_the_old_stream_close_hangs(
    alsa_sandbox: AlsaSandbox,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sound server hangs mid-stream: the loss is reported with every read() bounded, the
    stuck close is abandoned, and capture resumes on a new stream (from a second server that
    the device now points to) while the old close is still blocked."""
    from audio_fixtures import PulseServer, pulse_or_skip

    from edge_agent.sources.device import stuck_calls

    pulse_or_skip()
    first = PulseServer(Path(tmp_path_factory.mktemp("pahang1")), {"src1": 16000})
    second = PulseServer(Path(tmp_path_factory.mktemp("pahang2")), {"src1": 16000})
    first.start()
    second.start()
    alsa_sandbox.add_pcm("flakymic", first.pcm_body("src1"))
    settings = SourceSettings(device="flakymic", reconnect_seconds=0.2, stall_seconds=1.0)
    src = DeviceSource(settings, RATE, close_timeout=1.0)
    try:
        src.start()
        drain(src, n=1600, timeout=20)
        with caplog.at_level("WARNING", logger="edge_agent.sources.device"):
            first.freeze()
            alsa_sandbox.repoint_pcm("flakymic", second.pcm_body("src1"))
            slowest = 0.0
            deadline = time.monotonic() + 60
            while src.recoveries == 0:  # lost, then back
                assert time.monotonic() < deadline, f"lost={src.lost} {caplog.text}"
                t0 = time.monotonic()
                src.read(0.2)
                slowest = max(slowest, time.monotonic() - t0)
            assert slowest < 0.2 + 5, f"a read() took {slowest:.1f} s"
            assert src.losses == 1 and "lost (no audio for 1.0 s)" in caplog.text
            assert src.abandoned_closes == 1 and "abandoned it" in caplog.text
            assert stuck_calls() >= 1  # the old close is still blocked on the frozen server
            blocks = drain(src, n=1600, timeout=20)
        assert blocks[0].overflow and not src.lost
        t0 = time.monotonic()
        src.stop()  # the new stream (healthy server) closes normally
        assert time.monotonic() - t0 < 5 and src.abandoned_closes == 1
    finally:
        src.stop()
        first.stop()
        second.stop()
        _wait_for_stuck_calls()
        alsa_sandbox.remove_pcm("flakymic")


@pytest.mark.audio
def test_fake_mic_plays_a_wav_file_then_padding(fake_mic: FakeMic, tmp_path: Path) -> None:
    from edge_agent.audio.files import read_wav, write_wav

    write_wav(tmp_path / "m.wav", tone(700, 0.5, RATE), RATE)
    x, _ = read_wav(tmp_path / "m.wav")
    name = fake_mic(tmp_path / "m.wav", pad_seconds=0.5)
    y, _ = capture(SourceSettings(device=name), RATE)
    np.testing.assert_array_equal(y[: x.size], x)
    assert not np.any(y[x.size :])  # silence, not stale data


@pytest.mark.audio
def test_paced_48k_pulse_source_is_resampled_in_real_time(fake_mic: FakeMic) -> None:
    """The brief's USB-mic case on a paced clock: a 48 kHz PulseAudio null-source."""
    x = tone(440, 0.6, 48000)
    name = fake_mic(x, rate=48000, paced=True)
    t0 = time.monotonic()
    y, blocks = capture(
        SourceSettings(device=name, capture_rate=48000, blocksize=4800), round(0.5 * RATE)
    )
    elapsed = time.monotonic() - t0
    assert y.size == 8000 and 0.4 < elapsed < 2.5
    assert peak_hz(y, RATE) == pytest.approx(440, abs=2)
    ref = scipy.signal.resample_poly(x.astype(np.float64), 1, 3)[: y.size]
    np.testing.assert_allclose(y, ref, atol=1e-5)
    # each 0.1 s block of 4800 capture frames becomes 1600 samples (less the filter delay)
    assert {b.samples.size for b in blocks[1:]} == {1600}


@pytest.mark.audio
def test_arecord_piped_into_the_stdin_source(fake_mic: FakeMic) -> None:
    """The documented pipeline `arecord ... -t raw | edge-agent run --stdin`, on a fake mic."""
    import shutil
    import subprocess

    if shutil.which("arecord") is None:
        pytest.skip("arecord (alsa-utils) not installed")
    x = np.random.default_rng(8).uniform(-0.5, 0.5, RATE).astype(np.float32)
    name = fake_mic(x)
    proc = subprocess.Popen(
        [
            "arecord",
            "-q",
            "-D",
            name,
            "-f",
            "FLOAT_LE",
            "-r",
            "16000",
            "-c",
            "1",
            "-t",
            "raw",
            "-s",
            str(x.size),
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    settings = SourceSettings(kind="stdin", stdin_format="f32le")
    with open_source(settings, RATE, stdin=proc.stdout) as src:
        y = cat(drain(src))
    assert proc.wait(timeout=10) == 0
    np.testing.assert_array_equal(y, x)
