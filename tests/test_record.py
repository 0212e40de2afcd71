"""`edge-agent record` and the shared clip capture (edge_agent.adaptation.clips), through real
PortAudio.

The fake microphones (audio_fixtures) are unpaced ALSA file PCMs: sample-exact and far faster
than real time, so ten 10 s clips take a fraction of a second. A blocksize of 16000 keeps the
100 blocks well inside the capture queue (no drops, so no overflow flags).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import FakeMic
from cli_helpers import run_cli as cli

from edge_agent.adaptation.clips import ClipReader, ClipRefusedError, capture_clips, check_clip
from edge_agent.audio.dcase import next_index, write_train_clips
from edge_agent.audio.files import read_wav, write_wav
from edge_agent.config.runtime import HealthSettings
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import FieldError
from edge_agent.scoring.frontend import DEFAULT_SPEC
from edge_agent.sources.base import Block
from model_build.data.dataset import scan

N = DEFAULT_SPEC.clip_samples
RATE = DEFAULT_SPEC.sample_rate


def noise(n_clips: int, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-amp, amp, n_clips * N).astype(np.float32)


def config(tmp_path: Path, device: str, section: str = "fan_section_00") -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(f"section: {section}\nsource: {{device: {device}, blocksize: 16000}}\n")
    return p


@pytest.mark.audio
def test_record_ten_clips_from_a_fake_microphone(
    fake_mic: FakeMic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = noise(10)
    name = fake_mic(x, pad_seconds=2.0)
    out = tmp_path / "data"
    code, stdout, err = cli(
        capsys,
        "record",
        str(out),
        "--config",
        str(config(tmp_path, name)),
        "--attrs",
        "spd_1200_load_1",
        "--count",
        "10",
    )
    assert code == 0, err
    assert "recorded 10 clips" in stdout and "clip 10/10 ok" in err
    files = sorted((out / "fan" / "train").glob("*.wav"))
    assert [f.name for f in files] == [
        f"section_00_source_train_normal_{i:04d}_spd_1200_load_1.wav" for i in range(10)
    ]
    for i, f in enumerate(files):
        y, rate = read_wav(f)
        assert rate == 16000 and y.size == N
        # 16-bit PCM: equal to what the microphone delivered up to quantisation
        np.testing.assert_allclose(y, x[i * N : (i + 1) * N], atol=1.5 / 32768)
    clips = scan([out])
    assert len(clips) == 10 and {c.section_id for c in clips} == {"fan_section_00"}
    assert {(c.split, c.domain, c.label, c.attrs) for c in clips} == {
        ("train", "source", "normal", "spd_1200_load_1")
    }


@pytest.mark.audio
def test_a_silent_clip_from_the_device_is_refused_and_captured_again(
    fake_mic: FakeMic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = noise(1, 1), noise(1, 2)
    name = fake_mic(np.concatenate([a, np.zeros(N, np.float32), b]), pad_seconds=2.0)
    out = tmp_path / "data"
    code, _, err = cli(
        capsys,
        "record",
        str(out),
        "--device",
        name,
        "--section",
        "fan_section_01",
        "--domain",
        "target",
        "--count",
        "2",
    )
    assert code == 0, err
    assert "clip 2/2 refused" in err and "silent" in err and "capturing it again" in err
    files = sorted((out / "fan" / "train").glob("section_01_target_train_normal_*.wav"))
    assert len(files) == 2
    np.testing.assert_allclose(read_wav(files[0])[0], a, atol=1.5 / 32768)
    np.testing.assert_allclose(read_wav(files[1])[0], b, atol=1.5 / 32768)


@pytest.mark.audio
def test_a_dead_microphone_fails_after_the_retries(fake_mic: FakeMic) -> None:
    name = fake_mic(np.zeros(5 * N, np.float32), pad_seconds=1.0)
    with pytest.raises(ClipRefusedError, match=r"clip 1 refused 3 times, last: silent"):
        capture_clips(
            SourceSettings(device=name, blocksize=16000), DEFAULT_SPEC, count=1, retries=2
        )


def test_overflow_in_any_block_refuses_the_clip() -> None:
    class Fake:
        exhausted = False

        def __init__(self) -> None:
            self.k = 0

        def read(self, timeout: float | None = None) -> Block:
            self.k += 1
            return Block(np.full(64_000, 0.1, np.float32), 0.0, overflow=self.k == 2)

    reader = ClipReader(Fake(), N)  # type: ignore[arg-type]
    x, overflow = reader.next()
    assert x.size == N and overflow  # blocks 1-3, block 2 followed lost samples
    _, why = check_clip(x, "mic", HealthSettings(), overflow)
    assert why is not None and "overflow" in why
    x2, overflow2 = reader.next()  # starts with the 32 000 samples left over from block 3
    assert x2.size == N and not overflow2


def test_record_from_files_numbers_on_and_feeds_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(3)
    write_wav(src / "a.wav", rng.uniform(-0.3, 0.3, 12 * 44100), 44100)  # 12 s at 44.1 kHz
    write_wav(src / "b.wav", rng.uniform(-0.3, 0.3, 4 * 16000), RATE)  # 4 s: looped
    out = tmp_path / "data"
    folder = out / "valve" / "train"
    folder.mkdir(parents=True)
    write_wav(folder / "section_00_target_train_normal_0007_pat_01.wav", np.zeros(N), RATE)
    assert next_index(folder, "00", "target") == 8 and next_index(folder, "00", "source") == 0
    code, _, err = cli(
        capsys,
        "record",
        str(out),
        "--section",
        "valve_section_00",
        "--domain",
        "target",
        "--attrs",
        "pat_03_cyc_1600",
        "--files",
        str(src),
    )
    assert code == 0, err
    new = sorted(folder.glob("section_00_target_train_normal_000[89]_*.wav"))
    assert [f.name for f in new] == [
        "section_00_target_train_normal_0008_pat_03_cyc_1600.wav",
        "section_00_target_train_normal_0009_pat_03_cyc_1600.wav",
    ]
    assert all(read_wav(f)[0].size == N and read_wav(f)[1] == 16000 for f in new)
    assert not list(folder.glob(".*"))  # no temporary files left
    clips = [c for c in scan([out]) if c.attrs == "pat_03_cyc_1600"]
    assert len(clips) == 2 and all(c.domain == "target" and c.label == "normal" for c in clips)


def test_record_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "a.wav"
    write_wav(wav, np.full(N, 0.1), RATE)
    for args, msg in [
        (["--section", "fan", "--files", str(wav)], "expected <machine>_section_<XX>"),
        (
            ["--section", "fan_section_00", "--domain", "both", "--files", str(wav)],
            "--domain: expected source or target",
        ),
        (["--section", "fan_section_00", "--attrs", "a b/c", "--files", str(wav)], "--attrs"),
        (["--files", str(wav)], "--section: required"),
    ]:
        code, _, err = cli(capsys, "record", str(tmp_path / "out"), *args)
        assert code == 2 and msg in err.strip().splitlines()[-1], (args, err)
    with pytest.raises(FieldError, match=r"^domain: expected source or target"):
        write_train_clips(tmp_path, "fan_section_00", "both", "", [np.zeros(N, np.float32)], RATE)


@pytest.mark.audio
def test_record_monitor_opens_the_shared_device_as_run_does(
    fake_mic: FakeMic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/monitors.md's wiring check: `record --monitor pump_3` of four machines on one
    4-channel interface. It used to open the device with 3 channels (channel 2 needs 3), which
    an interface may map differently from the 4 that `run` opens (here: the ALSA file PCM reads
    the 4-channel frames as 3-channel ones, so the "clip" is other channels' samples). Now the
    device is opened with the capture group's lanes, as `run` opens it, and the clip is
    exactly channel 2."""
    chans = np.stack([noise(1, seed=k, amp=0.1 * (k + 1)) for k in range(4)], axis=1)
    name = fake_mic(chans, channels=4, pad_seconds=2.0)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"source: {{device: {name}, blocksize: 16000}}\nmonitors:\n"
        + "".join(
            f"  - {{name: pump_{k + 1}, section: pump_section_0{k}, channel: {k}}}\n"
            for k in range(4)
        )
    )
    out = tmp_path / "data"
    code, _, err = cli(
        capsys, "record", str(out), "--config", str(cfg), "--monitor", "pump_3", "--count", "1"
    )
    assert code == 0, err
    assert f"capturing 1 clips of 10 s from {name} channel 2" in err
    (f,) = sorted((out / "pump" / "train").glob("*.wav"))
    assert f.name.startswith("section_02_source_train_normal_0000")
    y, _ = read_wav(f)
    np.testing.assert_allclose(y, chans[:, 2], atol=1.5 / 32768)
