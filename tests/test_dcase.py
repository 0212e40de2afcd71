"""DCASE naming (edge_agent.audio.dcase): section ids, clip names, numbering, a file's section."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.audio.dcase import (
    ClipName,
    check_attrs,
    infer_section,
    next_index,
    parse_clip_name,
    parse_section_id,
    train_clip_name,
)
from edge_agent.errors import FieldError


def test_infer_section_from_dcase_names() -> None:
    secs = ["fan_section_00", "fan_section_01", "valve_section_01"]
    assert infer_section(Path("d/fan/test/section_01_source_test_normal_0001_a.wav"), secs) == (
        "fan_section_01"
    )
    assert infer_section(Path("x/section_00_target_test_anomaly_0002.wav"), secs) == (
        "fan_section_00"
    )
    with pytest.raises(FieldError, match="ambiguous"):
        infer_section(Path("x/section_01_source_test_normal_0001.wav"), secs)
    with pytest.raises(FieldError, match="no section_XX"):
        infer_section(Path("x/recording.wav"), secs)
    with pytest.raises(FieldError, match="pump_section_00 is not in the bundle"):
        infer_section(Path("pump/test/section_00_x.wav"), ["fan_section_01"])
    assert infer_section(Path("x/recording.wav"), ["only"]) == "only"
    flat = Path("d/valve_test_section_01_source_test_normal_0001_v.wav")
    assert infer_section(flat, secs) == "valve_section_01"


def test_clip_names_round_trip_and_eval_names_have_no_label() -> None:
    name = train_clip_name("03", "target", 7, "spd_1200_load_1")
    assert name == "section_03_target_train_normal_0007_spd_1200_load_1.wav"
    assert parse_clip_name(name) == ClipName(
        "03", 7, "target", "train", "normal", "spd_1200_load_1"
    )
    assert parse_clip_name("section_01_0042.wav") == ClipName("01", 42)
    assert parse_clip_name("README.wav") is None
    # 2021 eval test names carry the domain; 2020 names a machine id (read as the section)
    assert parse_clip_name("section_04_target_test_0009.wav") == ClipName("04", 9, "target", "test")
    assert parse_clip_name("anomaly_id_02_00000106.wav") == ClipName(
        "02", 106, "source", None, "anomaly"
    )
    assert parse_clip_name("id_05_00000001.wav") == ClipName("05", 1, "source")
    assert parse_section_id("press-2_section_07") == ("press-2", "07")
    with pytest.raises(FieldError, match=r"^section: expected <machine>_section_<XX>"):
        parse_section_id("press_section_7")
    with pytest.raises(FieldError, match=r"^attrs: expected key_value pairs"):
        check_attrs("a b")


def test_next_index_counts_only_normal_training_clips_of_the_section_and_domain(
    tmp_path: Path,
) -> None:
    assert next_index(tmp_path / "missing", "00", "source") == 0
    for name in (
        train_clip_name("00", "source", 4),
        train_clip_name("00", "source", 11, "a_1"),
        train_clip_name("01", "source", 50),
        train_clip_name("00", "target", 60),
        "section_00_source_test_normal_0090.wav",
    ):
        (tmp_path / name).write_bytes(b"")
    assert next_index(tmp_path, "00", "source") == 12
    assert next_index(tmp_path, "00", "target") == 61
    assert next_index(tmp_path, "02", "source") == 0


def test_parse_section_id() -> None:
    assert parse_section_id("fan_section_00") == ("fan", "00")
    assert parse_section_id("press-7_section_12") == ("press-7", "12")
    assert parse_section_id("robotic_arm_section_01") == ("robotic_arm", "01")
    assert parse_section_id("Pump.v2_section_00") == ("Pump.v2", "00")
    for bad in (
        "fan",
        "fan_section_0",
        "fan_section_000",
        "fan/x_section_00",
        "_section_00",
        "fan_section_ab",
    ):
        with pytest.raises(FieldError, match="expected <machine>_section_<XX>"):
            parse_section_id(bad)
