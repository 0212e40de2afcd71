from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig, dump, load_config
from edge_agent.errors import ConfigError


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    b.mkdir()
    return b


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


def test_minimal_config_and_defaults(tmp_path: Path, bundle: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "bundle: bundle\nsection: fan_section_00\n"
            "source: {device: 'hw:1'}\nmqtt: {host: broker}\n",
        )
    )
    assert cfg.bundle == str(bundle)  # relative to the config file's folder
    assert cfg.source.device == "hw:1" and cfg.source.kind == "device"
    assert (cfg.decision.k, cfg.decision.n, cfg.decision.clear_after) == (3, 5, 3)
    assert cfg.windows.seconds is None and cfg.windows.hop == 10.0  # length: the bundle's
    assert cfg.mqtt.port == 1883 and cfg.mqtt.enabled
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.section = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt: {hots: x}", r"mqtt\.hots: unknown key"),
        ("mqtt: {port: '1883'}", r"mqtt\.port: expected an integer"),
        ("decision: {k: 9}", r"decision\.k: expected 1 <= k <= n"),
        ("source: {realtime: 1}", r"source\.realtime: expected true or false"),
        ("mqtt: {tls: {ca_file: nowhere.pem}}", r"mqtt\.tls\.ca_file: file not found"),
        ("mqtt: {password: hunter2}", r"mqtt\.password: not allowed in the config file"),
        ("mqtt: {password_env: NO_SUCH_VAR_XYZ}", r"mqtt\.password_env: environment variable"),
        ("windows: 5", r"windows: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, bundle: Path, text: str, message: str) -> None:
    p = write(tmp_path, f"bundle: bundle\nsection: s\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_missing_bundle_and_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bundle: file not found: .*nope"):
        load_config(write(tmp_path, "bundle: nope\nsection: s\n"))
    with pytest.raises(ConfigError, match="section: required"):
        load_config(None, {"bundle": str(tmp_path)})


def test_password_from_env_and_file_never_printed(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASD_PW", "s3cret")
    cfg = load_config(
        write(
            tmp_path,
            "bundle: bundle\nsection: s\nmqtt: {host: h, username: u, password_env: ASD_PW}\n",
        )
    )
    assert cfg.mqtt.password == "s3cret"
    assert "s3cret" not in dump(cfg) and "s3cret" not in repr(cfg)
    (tmp_path / "pw").write_text("fromfile\n")
    cfg = load_config(write(tmp_path, "bundle: bundle\nsection: s\nmqtt: {password_file: pw}\n"))
    assert cfg.mqtt.password == "fromfile"


def test_overrides_beat_yaml(tmp_path: Path, bundle: Path) -> None:
    p = write(tmp_path, "bundle: bundle\nsection: a\nsource: {kind: device, device: x}\n")
    cfg = load_config(p, {"section": "b", "source.kind": "files", "source.realtime": True})
    assert (cfg.section, cfg.source.kind, cfg.source.device, cfg.source.realtime) == (
        "b",
        "files",
        "x",
        True,
    )
    assert isinstance(cfg, AgentConfig)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_config_check_cli(tmp_path: Path, bundle: Path) -> None:
    ok = run_cli("config", "check", str(write(tmp_path, "bundle: bundle\nsection: s\n")))
    assert ok.returncode == 0, ok.stderr
    assert "section: s" in ok.stdout and "clear_after: 3" in ok.stdout
    bad = run_cli("config", "check", str(write(tmp_path, "bundle: bundle\nsection: s\nx: 1\n")))
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: x: unknown key")
    assert "Traceback" not in bad.stderr
