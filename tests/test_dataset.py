"""model_build.data (DCASE layout parsing) and edge_agent.audio loading edge cases.

Fixture WAVs are written into tmp_path; real MIMII 8-channel clips are used when the shared
folder exists and the test skips otherwise.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from edge_agent.audio.files import expand_files, load_clip, read_wav
from edge_agent.errors import AudioFileError, EdgeAgentError
from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.data.clip import DatasetError
from model_build.data.dataset import class_key, class_names, scan, scan_layout

FS = 16_000


def _touch_wav(path: Path, seconds: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.wavfile.write(path, FS, np.zeros(int(FS * seconds), dtype=np.int16))
    return path


# ------------------------------------------------------------------ model_build.data


def test_full_names_parse_into_fields(tmp_path: Path) -> None:
    root = tmp_path / "dev"
    _touch_wav(root / "fan/train/section_00_source_train_normal_0000_m-n_X.wav")
    _touch_wav(root / "fan/train/section_00_target_train_normal_0001_m-n_Y.wav")
    _touch_wav(root / "fan/test/section_01_target_test_anomaly_0007_spd_1200_load_3.wav")
    _touch_wav(root / "valve/train/section_02_source_train_normal_0003.wav")  # no attrs
    (root / "fan/train/README.txt").write_text("not a clip")
    _touch_wav(root / "fan/train/notes_00_00000000.wav")  # not a DCASE name: ignored
    clips = scan([root])
    assert len(clips) == 4
    by_name = {c.path.name: c for c in clips}
    c = by_name["section_01_target_test_anomaly_0007_spd_1200_load_3.wav"]
    assert (c.machine, c.section, c.split, c.domain, c.label, c.attrs) == (
        "fan",
        "01",
        "test",
        "target",
        "anomaly",
        "spd_1200_load_3",
    )
    assert c.section_id == "fan_section_01" and c.is_anomaly
    v = by_name["section_02_source_train_normal_0003.wav"]
    assert v.attrs == "" and v.machine == "valve"
    assert (
        class_key(by_name["section_00_source_train_normal_0000_m-n_X.wav"]) == "fan|00|m-n_X|source"
    )
    assert class_names(clips) == ["fan|00|m-n_X|source", "fan|00|m-n_Y|target", "valve|02||source"]


def test_files_outside_the_layout_are_named_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing under train/ or test/ is dropped without a word; --strict stops."""
    root = tmp_path / "dev"
    _touch_wav(root / "fan/train/section_00_source_train_normal_0000_a_1.wav")
    _touch_wav(root / "fan/test/section_00_source_test_normal_0000_a_1.wav")
    _touch_wav(root / "fan/test/section_00_source_test_anomaly_0001_a_1.wav")
    bad = _touch_wav(root / "fan/test/section_00_test_normal_0000.wav")  # no domain
    notes = root / "fan/train/notes.txt"
    notes.write_text("recorded on site\n")
    (root / "fan/test/extra").mkdir()
    _touch_wav(root / "fan/test/._section_00_source_test_normal_0000_a_1.wav")  # macOS fork
    _touch_wav(root / "fan/train/.section_00_source_train_normal_0001.tmp.wav")  # record's
    layout = scan_layout([root])
    assert len(layout.clips) == 3
    assert layout.ignored == sorted([bad, notes, root / "fan/test/extra"])
    assert layout.summary() == (
        "3 clips used, 3 files under train/ or test/ ignored (not a "
        "clip of the DCASE layout; --strict stops)"
    )
    scan([root])  # the plain scan warns too
    err = capsys.readouterr().err.splitlines()
    assert f"warning: {bad}: not used (name not in the DCASE layout" in err[1]
    assert f"warning: {notes}: not used (not a .wav file)" in err
    assert err[-1] == f"warning: {layout.summary()}"
    with pytest.raises(
        DatasetError,
        match=rf"^{re.escape(str(root / 'fan/test/extra'))}: "
        r"a folder inside a split folder \(and 2 more\); --strict stops",
    ):
        scan_layout([root], strict=True)
    # a training scan looks at train/ only
    assert scan_layout([root], splits=("train",)).ignored == [notes]


def test_many_ignored_files_are_counted_not_all_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "dev"
    _touch_wav(root / "fan/train/section_00_source_train_normal_0000.wav")
    for i in range(25):
        (root / f"fan/train/junk_{i:02d}.wav").write_bytes(b"")
    scan([root])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 22 and err[20] == "warning: ... and 5 more files not used"
    assert "25 files under train/ or test/ ignored" in err[21]


def test_dcase_2020_names(tmp_path: Path) -> None:
    """2020: machine ids read as sections, one domain (source), labels in dev names."""
    root = tmp_path / "dcase2020"
    _touch_wav(root / "ToyConveyor/train/normal_id_01_00000000.wav")
    _touch_wav(root / "ToyConveyor/test/anomaly_id_01_00000007.wav")
    _touch_wav(root / "ToyConveyor/test/normal_id_03_00000012.wav")
    _touch_wav(root / "pump/test/id_05_00000000.wav")  # eval test: no label
    clips = {c.path.name: c for c in scan([root])}
    a = clips["anomaly_id_01_00000007.wav"]
    assert (a.machine, a.section, a.split, a.domain, a.label) == (
        "ToyConveyor",
        "01",
        "test",
        "source",
        "anomaly",
    )
    assert clips["normal_id_01_00000000.wav"].split == "train"
    assert clips["normal_id_03_00000012.wav"].section_id == "ToyConveyor_section_03"
    e = clips["id_05_00000000.wav"]
    assert (e.section, e.domain, e.label) == ("05", "source", None)


def test_real_dcase_2020_clips(tmp_path: Path, real_data: Callable[[str], Path]) -> None:
    """Real 2020 dev clips copied into the official <machine>/{train,test} layout."""
    src = real_data("dcase2020-dev-lite")
    root = tmp_path / "dev"
    for f in sorted(src.glob("*/*.wav")):
        split = "train" if f.name.endswith(("6.wav", "2.wav")) and "normal" in f.name else "test"
        (root / f.parent.name / split).mkdir(parents=True, exist_ok=True)
        (root / f.parent.name / split / f.name).symlink_to(f)
    clips = scan([root])
    assert len(clips) == 36
    assert {c.machine for c in clips} == {"ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve"}
    assert sum(c.is_anomaly for c in clips) == 18
    assert all(c.domain == "source" and c.label is not None for c in clips)
    assert {c.section_id for c in clips if c.machine == "pump"} == {"pump_section_04"}


def test_dcase_2021_layout_and_ground_truth(tmp_path: Path) -> None:
    """2021: dev test clips in source_test/ and target_test/; eval test names carry the domain,
    labels come from ground_truth_<machine>_section_XX_<domain>_test.csv."""
    dev, ev = tmp_path / "dev", tmp_path / "eval"
    _touch_wav(dev / "gearbox/train/section_00_target_train_normal_0000.wav")
    _touch_wav(dev / "gearbox/source_test/section_00_source_test_anomaly_0001.wav")
    _touch_wav(dev / "gearbox/target_test/section_00_target_test_normal_0002.wav")
    _touch_wav(ev / "gearbox/train/section_03_source_train_normal_0000.wav")
    _touch_wav(ev / "gearbox/source_test/section_03_source_test_0000.wav")
    _touch_wav(ev / "gearbox/target_test/section_03_target_test_0000.wav")
    gt = tmp_path / "evaluator/ground_truth_data"
    gt.mkdir(parents=True)
    (gt / "ground_truth_gearbox_section_03_source_test.csv").write_text(
        "section_03_source_test_0000.wav,1\n"
    )
    (gt / "ground_truth_gearbox_section_03_target_test.csv").write_text(
        "section_03_target_test_0000.wav,0\n"
    )
    clips = {c.path.name: c for c in scan([dev, ev], truth_roots=[tmp_path / "evaluator"])}
    assert len(clips) == 6
    assert (
        clips["section_00_source_test_anomaly_0001.wav"].split,
        clips["section_00_target_test_normal_0002.wav"].domain,
    ) == ("test", "target")
    s, t = clips["section_03_source_test_0000.wav"], clips["section_03_target_test_0000.wav"]
    assert (s.split, s.domain, s.label) == ("test", "source", "anomaly")
    assert (t.split, t.domain, t.label) == ("test", "target", "normal")


def test_dcase_2023_2024_attribute_files_and_one_section_per_machine(tmp_path: Path) -> None:
    """Every machine type has only section 00; attributes_00.csv supplies the attributes of
    names that carry none (2024 `noAttribute`)."""
    root = tmp_path / "dev2024"
    _touch_wav(root / "3DPrinter/train/section_00_source_train_normal_0000_noAttribute.wav")
    _touch_wav(root / "3DPrinter/train/section_00_target_train_normal_0001_noAttribute.wav")
    _touch_wav(root / "ToyNscale/train/section_00_source_train_normal_0000_car_A1_spd_28V.wav")
    (root / "3DPrinter/attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "3DPrinter/train/section_00_source_train_normal_0000_noAttribute.wav,speed,20,,\n"
        "3DPrinter/train/section_00_target_train_normal_0001_noAttribute.wav,noAttribute,,,\n"
    )
    (root / "ToyNscale/attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "ToyNscale/train/section_00_source_train_normal_0000_car_A1_spd_28V.wav,car,B2,spd,1V\n"
    )
    clips = {c.path.name: c for c in scan([root])}
    assert clips["section_00_source_train_normal_0000_noAttribute.wav"].attrs == "speed_20"
    assert clips["section_00_target_train_normal_0001_noAttribute.wav"].attrs == "noAttribute"
    # a name that carries attributes keeps them
    assert clips["section_00_source_train_normal_0000_car_A1_spd_28V.wav"].attrs == (
        "car_A1_spd_28V"
    )
    assert sorted({c.section_id for c in clips.values()}) == [
        "3DPrinter_section_00",
        "ToyNscale_section_00",
    ]
    assert len(class_names(clips.values())) == 3


def test_any_machine_type_name(tmp_path: Path) -> None:
    from edge_agent.audio.dcase import parse_section_id

    for machine in ("robotic_arm", "Pump.v2", "3DPrinter", "HoveringDrone"):
        _touch_wav(tmp_path / machine / "train" / "section_00_source_train_normal_0000.wav")
    clips = scan([tmp_path])
    assert sorted(c.section_id for c in clips) == [
        "3DPrinter_section_00",
        "HoveringDrone_section_00",
        "Pump.v2_section_00",
        "robotic_arm_section_00",
    ]
    assert [parse_section_id(c.section_id)[0] for c in clips] == [c.machine for c in clips]


def test_several_roots_and_a_machine_folder_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _touch_wav(a / "fan/train/section_00_source_train_normal_0000_x_1.wav")
    _touch_wav(b / "pump/train/section_00_source_train_normal_0000_y_2.wav")
    clips = scan([a, b / "pump"])
    assert sorted(c.machine for c in clips) == ["fan", "pump"]
    assert [str(c.path) for c in clips] == sorted(str(c.path) for c in clips)


def test_empty_or_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "fan" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty: no DCASE clips found"):
        scan([empty])
    with pytest.raises(DatasetError, match="nope: data root not found"):
        scan([tmp_path / "nope"])
    assert issubclass(DatasetError, EdgeAgentError)


# ------------------------------------------------------------------ edge_agent.audio


def _tone(f: float, seconds: float, rate: int = FS) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * f * t)


def _peak_hz(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * FS / x.size)


def test_24_bit_pcm_is_scaled_to_float(tmp_path: Path) -> None:
    x = _tone(440, 1.0)
    ints = np.round(x * 2**23).astype(np.int32)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints[:2000])
    p = tmp_path / "pcm24.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(FS)
        w.writeframes(raw)
    y, rate = read_wav(p)
    assert rate == FS and y.dtype == np.float32 and y.size == 2000
    np.testing.assert_allclose(y, x[:2000], atol=1e-6)


def test_float_wav_and_stereo_channel_choice(tmp_path: Path) -> None:
    x = _tone(1000, 10.0).astype(np.float32)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)
    p = tmp_path / "float.wav"
    scipy.io.wavfile.write(p, FS, stereo)
    np.testing.assert_allclose(load_clip(p, DEFAULT_SPEC, channel=0), x, atol=1e-7)
    np.testing.assert_allclose(load_clip(p, DEFAULT_SPEC), x / 2, atol=1e-7)  # mixdown averages
    with pytest.raises(AudioFileError, match="channel 2 requested but the file has 2"):
        read_wav(p, channel=2)


def test_44k1_is_resampled_to_16k(tmp_path: Path) -> None:
    p = tmp_path / "cd.wav"
    scipy.io.wavfile.write(p, 44_100, (_tone(1000, 10.0, 44_100) * 32767).astype(np.int16))
    y = load_clip(p, DEFAULT_SPEC)
    assert y.shape == (160_000,)
    assert abs(_peak_hz(y) - 1000.0) < 1.0
    assert 0.3 < float(np.max(np.abs(y[1000:-1000]))) < 0.6


def test_12_s_clip_keeps_the_first_10_s(tmp_path: Path) -> None:
    x = np.concatenate([_tone(500, 10.0), _tone(3000, 2.0)]).astype(np.float32)
    p = tmp_path / "toycar.wav"
    scipy.io.wavfile.write(p, FS, x)
    y = load_clip(p, DEFAULT_SPEC)
    np.testing.assert_array_equal(y, x[:160_000])


def test_short_clip_is_looped_and_too_short_is_refused(tmp_path: Path) -> None:
    x = _tone(250, 3.0).astype(np.float32)
    p = tmp_path / "short.wav"
    scipy.io.wavfile.write(p, FS, x)
    y = load_clip(p, DEFAULT_SPEC)
    assert y.shape == (160_000,)
    np.testing.assert_array_equal(y[48_000:96_000], x)
    np.testing.assert_array_equal(y[144_000:], x[:16_000])
    q = tmp_path / "tiny.wav"
    scipy.io.wavfile.write(q, FS, x[:8000])
    with pytest.raises(AudioFileError, match=r"tiny\.wav: too short: 8000 samples"):
        load_clip(q, DEFAULT_SPEC)


def test_unreadable_file_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00not really a wave file")
    with pytest.raises(AudioFileError, match=r"broken\.wav: not a readable WAV file") as ei:
        load_clip(p, DEFAULT_SPEC)
    assert ei.value.path == str(p)
    with pytest.raises(AudioFileError, match=r"missing\.wav: file not found"):
        load_clip(tmp_path / "missing.wav", DEFAULT_SPEC)


def test_real_mimii_8_channel_extensible_header(real_data: Callable[[str], Path]) -> None:
    path = real_data("mimii-8ch") / "fan_id_00_normal_00000000.wav"
    _, data = scipy.io.wavfile.read(path)
    assert data.ndim == 2 and data.shape[1] == 8
    mix = load_clip(path, DEFAULT_SPEC)
    ch3 = load_clip(path, DEFAULT_SPEC, channel=3)
    assert mix.shape == ch3.shape == (160_000,)
    assert np.all(np.isfinite(mix)) and 0 < float(np.std(mix)) < 1
    assert not np.array_equal(mix, ch3)
    with pytest.raises(AudioFileError, match="channel 8 requested but the file has 8"):
        load_clip(path, DEFAULT_SPEC, channel=8)


def test_expand_files_expands_folders_and_reject_missing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.wav").write_bytes(b"")
    (tmp_path / "a" / "y.WAV").write_bytes(b"")
    (tmp_path / "a" / "n.txt").write_bytes(b"")
    (tmp_path / "a" / "x.flac").write_bytes(b"")  # the agent's evidence clips
    assert [p.name for p in expand_files([tmp_path / "a"])] == ["x.flac", "y.WAV", "z.wav"]
    with pytest.raises(AudioFileError, match="no such file"):
        expand_files([tmp_path / "nope.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match=r"no \.wav or \.flac files"):
        expand_files([tmp_path / "empty"])


# ------------------------------------------------- streamed reading (edge_agent.audio.wavfile)


def _write_streamed(path: Path, rate: int, channels: int, seconds: int) -> None:
    """A long 16-bit WAV written one second at a time, so the test itself stays small."""
    t = np.arange(rate) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        for s in range(seconds):
            sec = 0.3 * np.sin(2 * np.pi * (200 + 10 * (s % 50)) * t)
            frames = np.repeat(sec[:, None], channels, axis=1) * [1.0, -0.5][:channels]
            w.writeframes(np.round(frames * 32767).astype("<i2").tobytes())


@pytest.mark.parametrize(
    ("dtype", "channels"),
    [("u1", 1), ("<i2", 2), ("<i4", 3), ("<f4", 2), ("<f8", 1)],
)
def test_streamed_blocks_equal_a_whole_file_read(tmp_path: Path, dtype: str, channels: int) -> None:
    from edge_agent.audio.files import WavStream
    from edge_agent.audio.pcm import to_float, to_mono

    rng = np.random.default_rng(3)
    x = rng.uniform(-0.9, 0.9, (5000, channels))
    if dtype == "u1":
        data = np.round(x * 127 + 128).astype(np.uint8)
    elif dtype[1] == "i":
        data = np.round(x * float(2 ** (8 * int(dtype[2]) - 1) - 1)).astype(dtype)
    else:
        data = x.astype(dtype)
    p = tmp_path / "x.wav"
    scipy.io.wavfile.write(p, FS, data if channels > 1 else data[:, 0])
    want = to_mono(to_float(data))
    blocks = list(WavStream(p).blocks(frames=777))  # blocks that do not divide the file
    assert len(blocks) == 7 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), want)
    if channels > 1:
        np.testing.assert_array_equal(read_wav(p, channel=1)[0], to_float(data)[:, 1])


def test_24_bit_extensible_and_unknown_data_size(tmp_path: Path) -> None:
    """WAVE_FORMAT_EXTENSIBLE 24-bit stereo whose data size says 0xFFFFFFFF (a recorder that
    streamed to a pipe and never came back to fill the size in): all samples are read."""
    import struct

    ints = np.array([[0x7FFFFF, -0x800000], [1, -1], [-12345, 54321]], dtype=np.int32)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints.reshape(-1))
    guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, FS, FS * 6, 6, 24, 22, 24, 3) + guid
    body = (
        b"WAVE"
        b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + raw
    )
    p = tmp_path / "ext24.wav"
    p.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body)
    y, rate = read_wav(p, channel=0)
    assert rate == FS
    np.testing.assert_allclose(y, ints[:, 0] / 2**23, atol=1e-7)
    np.testing.assert_allclose(read_wav(p)[0], ints.mean(axis=1) / 2**23, atol=1e-7)


@pytest.mark.parametrize("rate", [0, 1, 3999, 400_000])
def test_implausible_header_rates_are_one_line_errors(tmp_path: Path, rate: int) -> None:
    """A rate of 0 used to crash, and 1 Hz was upsampled 16 000x (gigabytes): both refused."""
    p = tmp_path / f"r{rate}.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * 50)
    raw = bytearray(p.read_bytes())
    raw[24:28] = rate.to_bytes(4, "little")  # the fmt chunk's sample rate field
    p.write_bytes(bytes(raw))
    with pytest.raises(
        AudioFileError,
        match=rf"r{rate}\.wav: implausible sample rate {rate} "
        r"Hz in the WAV header: expected 4000-384000 Hz",
    ) as ei:
        load_clip(p, DEFAULT_SPEC)
    assert "\n" not in str(ei.value)


def test_load_clip_of_a_long_48k_file_streams_only_the_first_clip(tmp_path: Path) -> None:
    """The first 10 s at 16 kHz, equal to resampling the whole file at once (what load_clip
    did before it streamed), read without loading the audio after it."""
    import scipy.signal

    p = tmp_path / "long48k.wav"
    _write_streamed(p, 48_000, 2, 20)
    whole, _ = read_wav(p)
    ref = scipy.signal.resample_poly(whole.astype(np.float64), 1, 3)[:160_000]
    np.testing.assert_allclose(load_clip(p, DEFAULT_SPEC), ref, atol=1e-5)


@pytest.mark.parametrize("seconds", [60, 240])
def test_file_windows_memory_does_not_grow_with_the_file(tmp_path: Path, seconds: int) -> None:
    """Reading, mixing down and resampling a long 48 kHz stereo file into windows holds a few
    windows, not the file: the same bound for 1 and 4 minutes (4 min as float32 mono at
    48 kHz alone would be 46 MB; the old whole-file read took several times that)."""
    import tracemalloc

    from edge_agent.audio.resample import StreamResampler
    from edge_agent.runtime.offline import file_windows

    p = tmp_path / "long.wav"
    _write_streamed(p, 48_000, 2, seconds)
    StreamResampler(48_000, 16_000)  # imports scipy.signal: a constant, not what is measured
    tracemalloc.start()
    try:
        starts = [fw.start_s for fw in file_windows(p, DEFAULT_SPEC, hop=80_000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert starts == [5.0 * i for i in range((seconds - 10) // 5 + 1)]
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB"
