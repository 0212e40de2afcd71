from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli as run_in_process

from edge_agent.config.agent import AgentConfig
from edge_agent.config.load import dump, load_config
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


def demo_bundle() -> Path:
    from edge_agent.commands.demo import load_demo

    return load_demo().bundle


def test_config_check_cli(tmp_path: Path, bundle: Path) -> None:
    good = f"bundle: {demo_bundle()}\nsection: fan_section_00\n"
    ok = run_cli("config", "check", str(write(tmp_path, good)))
    assert ok.returncode == 0, ok.stderr
    # one line that says OK (it printed ~90 lines of resolved config and no verdict)
    assert ok.stdout.count("\n") == 1 and ok.stderr == "", ok.stdout
    assert ok.stdout.startswith(
        f"OK: {tmp_path / 'agent.yaml'}: fan_section_00; bundle version 1 (v1-"
    ), ok.stdout
    assert "no MQTT" in ok.stdout
    shown = run_cli("config", "check", "--show", str(write(tmp_path, good)))
    assert shown.returncode == 0, shown.stderr
    assert "section: fan_section_00" in shown.stdout and "clear_after: 3" in shown.stdout
    assert "OK" not in shown.stdout
    bad = run_cli("config", "check", str(write(tmp_path, "bundle: bundle\nsection: s\nx: 1\n")))
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: x: unknown key")
    assert "Traceback" not in bad.stderr


# --- one validator: `config check` refuses what `run` refuses, with the same one line ---

SEC = "fan_section_00"

# (YAML added to a valid config, regex the one-line error must match). Every case is refused
# by `config check` and by `run --config` with the same line and exit code 2.
REFUSED = [
    # a hop of 0.48 samples cut the same window for ever (100 % CPU, RSS to 2.3 GB in 6 s); one
    # sample took 1.09 GB and dropped 36 524 windows in 25 s: under what a device can score
    (
        "windows: {hop: 0.00003}",
        (
            r"^windows\.hop: expected a number in \[0\.1, 86400\], "
            r"got 3e-05"
        ),
    ),
    ("windows: {hop: 0.0000625}", r"^windows\.hop: expected a number in \[0\.1, 86400\]"),
    ("windows: {hop: 0}", r"^windows\.hop: expected a number in \[0\.1, 86400\], got 0"),
    ("windows: {hop: .nan}", r"^windows\.hop: expected a finite number, got nan"),
    ("windows: {hop: .inf}", r"^windows\.hop: expected a finite number, got inf"),
    # every window failed (and run exited 0): refused at start, naming the clip length
    ("windows: {seconds: 5}", r"^windows\.seconds: the bundle's model takes 10 s windows, got 5"),
    ("windows: {seconds: -1}", r"^windows\.seconds: expected a number > 0, got -1"),
    ("section2: x", r"^section2: unknown key"),
    (
        "source: {kind: files, files: [CLIP], blocksize: 0}",
        r"^source\.blocksize: expected an integer in \[1, 480000\], got 0",
    ),
    ("source: {kind: microphone}", r"^source\.kind: expected one of device, files, stdin"),
    ("source: {kind: files, files: [nowhere.wav]}", r"nowhere\.wav: no such file or folder"),
    ("source: {kind: files, files: []}", r"^source\.files: expected at least one WAV file"),
    ("source: {kind: files, files: [UNREADABLE]}", r"^source\.files: .*locked\.wav: not readable"),
    ("threads: 0", r"^threads: expected an integer in \[1, 256\], got 0"),
    ("queue_size: 0", r"^queue_size: expected an integer >= 1, got 0"),
    ("decision: {threshold: .nan}", r"^decision\.threshold: expected a finite number, got nan"),
    ("decision: {threshold: -.inf}", r"^decision\.threshold: expected a finite number"),
    ("health: {silence_dbfs: .nan}", r"^health\.silence_dbfs: expected a finite number"),
    (
        "mqtt: {host: broker}\nmqtt: {}",
        (
            r"agent\.yaml: line 5: duplicate key 'mqtt' \(first at "
            r"line 4\)"
        ),
    ),
    ("mqtt: {host: a, host: b}", r"agent\.yaml: line 4: duplicate key 'host'"),
    ("mqtt: {port: 0}", r"^mqtt\.port: expected an integer in \[1, 65535\], got 0"),
    ("mqtt: {port: 65536}", r"^mqtt\.port: expected an integer in \[1, 65535\], got 65536"),
    ("mqtt: {keepalive: 0}", r"^mqtt\.keepalive: expected an integer in \[1, 65535\]"),
    ("mqtt: {reconnect_min: 5, reconnect_max: 1}", r"^mqtt\.reconnect_min"),
    ("mqtt: {reconnect_min: .nan}", r"^mqtt\.reconnect_min: expected a finite number"),
    ("mqtt: {password_file: EMPTY}", r"^mqtt\.password_file: .*empty\.txt is empty"),
    ("mqtt: {password_file: FOLDER}", r"^mqtt\.password_file: .* is a folder"),
    # names that become MQTT topic levels and Home Assistant ids (edge_agent.config.ids): HA
    # ignored a `.` or a space, a `+` / `#` made the broker drop every connect
    *[
        (
            f"mqtt: {{device_id: '{d}'}}",
            (
                rf"^mqtt\.device_id: '{re.escape(d)}' cannot be a "
                r"device id: expected letters, digits, _ and - "
                r"\(up to 64, first a letter or digit\)"
            ),
        )
        for d in ("press 01", "press.01", "press+01", "press#", "")
    ],
    *[
        (
            f"mqtt: {{prefix: '{p}'}}",
            (
                r"^mqtt\.prefix: expected topic levels separated by / "
                r"\(each letters, digits, _ \. -"
            ),
        )
        for p in ("site//a", "site/+", "$SYS/x", "/a")
    ],
    ("mqtt: {ha_prefix: 'home assistant'}", r"^mqtt\.ha_prefix: expected topic levels"),
    (
        "fleet: {group: 'a b'}",
        (
            r"^fleet\.group: expected a group name, one MQTT topic level: "
            r"letters, digits"
        ),
    ),
    (
        "log: {jsonl_file: no/such/dir/events.jsonl}",
        r"^log\.jsonl_file: folder .*no/such/dir does not exist",
    ),
    ("log: {jsonl_file: FOLDER}", r"^log\.jsonl_file: .* is a folder"),
    # `config check` passed these and `run` refused them: a channel the input does not have,
    # an evidence folder that is a file (read-only ones: test_evidence_folder_read_only_...)
    (
        "source: {kind: stdin, stdin_channels: 2, channel: 5}",
        r"^source\.channel: channel 5 requested but stdin has 2 channel\(s\)",
    ),
    (
        "source: {kind: files, files: [CLIP], channel: 3}",
        r"01_normal\.wav: channel 3 requested but the file is mono",
    ),
    (
        "evidence: {folder: EMPTY}",
        (
            r"^evidence\.folder: .*empty\.txt is a file, expected a "
            r"folder$"
        ),
    ),
    (
        "evidence: {folder: EMPTY/clips}",
        (
            r"^evidence\.folder: .*empty\.txt is a file, expected "
            r"a folder \(cannot create .*empty\.txt/clips below it\)"
        ),
    ),
]


@pytest.fixture
def refusal_files(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Files the refused cases name: an empty password file, a folder, an unreadable WAV."""
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "folder").mkdir()
    locked = tmp_path / "locked.wav"
    locked.write_bytes(b"RIFF")
    locked.chmod(0)
    yield {
        "EMPTY": str(tmp_path / "empty.txt"),
        "FOLDER": str(tmp_path / "folder"),
        "UNREADABLE": str(locked),
    }
    locked.chmod(0o600)


@pytest.mark.parametrize(("extra", "message"), REFUSED)
def test_config_check_and_run_refuse_the_same_thing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    refusal_files: dict[str, str],
    extra: str,
    message: str,
) -> None:
    from edge_agent.commands.demo import load_demo

    if "UNREADABLE" in extra and os.geteuid() == 0:
        pytest.skip("root reads any file")
    clip = load_demo().paths[0]
    for name, path in {**refusal_files, "CLIP": str(clip)}.items():
        extra = extra.replace(name, path)
    source = "" if extra.startswith("source:") else f"source: {{kind: files, files: [{clip}]}}\n"
    p = write(tmp_path, f"bundle: {demo_bundle()}\nsection: {SEC}\n{source}{extra}\n")
    lines = []
    for args in (("config", "check", str(p)), ("run", "--config", str(p), "--quiet")):
        code, out, err = run_in_process(capsys, *args)
        assert code == 2, (args, out, err)
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, err
        assert re.search(message, errors[0].removeprefix("error: ")), errors[0]
        lines.append(errors[0])
    assert lines[0] == lines[1]  # the same validator, the same words


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device-id", "press+01"), "error: mqtt.device_id: 'press+01' cannot be a device id"),
        (("--device-id", "hall 2"), "error: mqtt.device_id: 'hall 2' cannot be a device id"),
    ],
)
def test_a_bad_device_id_flag_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """The flag goes through the same validator as the config: exit 2, one line, no broker
    contact (with `+` the broker used to drop every connect while the agent said nothing)."""
    code, out, err = run_in_process(capsys, "demo", "--fast", "--mqtt-host", "127.0.0.1", *args)
    assert code == 2 and _errors(err) == [x for x in err.splitlines() if x.strip()], err
    assert _errors(err)[0].startswith(message) and out == ""


def test_a_single_machines_section_is_its_name_and_is_checked_like_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path, f"bundle: {demo_bundle()}\nsection: fan.section_00\n")
    code, _, err = run_in_process(capsys, "config", "check", str(p))
    assert code == 2 and _errors(err) == [
        (
            "error: section: 'fan.section_00' cannot be a machine's name: expected letters, "
            "digits, _ and - (up to 64, first a letter or digit), because it is an MQTT topic "
            "level and "
            "part of Home Assistant's ids"
        )
    ]


def _check_and_run(capsys: pytest.CaptureFixture[str], p: Path) -> list[tuple[int, str]]:
    """(exit code, stderr) of `config check P` and of `run --config P --quiet`."""
    out = []
    for args in (("config", "check", str(p)), ("run", "--config", str(p), "--quiet")):
        code, _, err = run_in_process(capsys, *args)
        assert "Traceback" not in err
        out.append((code, err))
    return out


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("below", [False, True])
def test_evidence_folder_read_only_is_refused_by_check_and_run_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], below: bool
) -> None:
    """A real read-only file system (a `ro` tmpfs; root writes through any mode bits, not
    through that): the evidence folder on it, or to be created in it."""
    from disk_fixtures import mounted_tmpfs

    from edge_agent.commands.demo import load_demo

    clip = load_demo().paths[0]
    with mounted_tmpfs(tmp_path / "ro", "64k", read_only=True) as disk:
        ro = disk.path
        folder = ro / "clips" if below else ro
        p = write(
            tmp_path,
            f"bundle: {demo_bundle()}\nsection: {SEC}\n"
            f"source: {{kind: files, files: [{clip}]}}\nevidence: {{folder: {folder}}}\n",
        )
        got = _check_and_run(capsys, p)
    want = f"error: evidence.folder: {ro} is on a read-only file system"
    if below:
        want += f" (cannot create {folder} in it)"
    assert [(code, _errors(err)) for code, err in got] == [(2, [want])] * 2


def test_device_channel_beyond_the_device_is_refused_by_check_and_run_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alsa_sandbox: Any
) -> None:
    """A real PortAudio device (an ALSA file PCM: PortAudio reports 128 input channels) asked
    for channel 200. `config check` queries the device list as `run` does when it opens it
    and refuses with the same line; a device it cannot find here (config checked away from
    the machine) is one warning line and no refusal, while `run` refuses it."""
    raw = tmp_path / "silence.f32"
    raw.write_bytes(bytes(64_000))
    name = alsa_sandbox.file_pcm("wide128", raw)
    try:
        head = f"bundle: {demo_bundle()}\nsection: {SEC}\n"
        p = write(tmp_path, head + f"source: {{device: {name}, channel: 200}}\n")
        got = _check_and_run(capsys, p)
        want = f"error: source.channel: channel 200 requested but {name!r} has 128 input channel(s)"
        assert [(code, _errors(err)) for code, err in got] == [(2, [want])] * 2
        p = write(tmp_path, head + "source: {device: no-such-mic, channel: 2}\n")
        (check_code, check_err), (run_code, run_err) = _check_and_run(capsys, p)
        assert check_code == 0
        (warning,) = check_err.splitlines()  # one line (a log prefix when a handler is set)
        assert (
            "source.channel: channel(s) 2 not checked against the device: source.device: "
            "no input device matching 'no-such-mic'; available input devices: "
        ) in warning
        assert f"{name!r}" in warning
        assert run_code == 2
        (error,) = _errors(run_err)
        assert error.startswith("error: source.device: no input device matching 'no-such-mic'")
    finally:
        alsa_sandbox.remove_pcm(name)


def test_merge_keys_may_still_be_overridden(tmp_path: Path, bundle: Path) -> None:
    """Only a key written twice is refused: YAML's `<<:` merge is meant to be overridden."""
    p = write(tmp_path, "bundle: bundle\nsection: s\ndecision: {<<: {k: 2, n: 4}, n: 6}\n")
    assert (load_config(p).decision.k, load_config(p).decision.n) == (2, 6)


@pytest.mark.parametrize("value", ["hunter2 secret", "12345678", "[hunter2]"])
def test_errors_never_echo_what_may_be_the_password(
    tmp_path: Path, bundle: Path, value: str
) -> None:
    """A password pasted into `password_env` (or a wrongly typed one) is not repeated in the
    error: error lines end up in logs and bug reports."""
    with pytest.raises(ConfigError, match=r"^mqtt\.password_env: ") as exc:
        load_config(
            write(tmp_path, f"bundle: bundle\nsection: s\nmqtt: {{password_env: {value}}}\n")
        )
    assert "hunter2" not in str(exc.value) and "12345678" not in str(exc.value)


def test_password_env_empty_and_contents_never_in_errors(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASD_PW", "")
    p = write(tmp_path, "bundle: bundle\nsection: s\nmqtt: {password_env: ASD_PW}\n")
    with pytest.raises(
        ConfigError,
        match=r"^mqtt\.password_env: environment variable ASD_PW "
        r"is empty$",
    ):
        load_config(p)
    monkeypatch.setenv("ASD_PW", "s3cret")
    bad = write(tmp_path, "bundle: bundle\nsection: s\nmqtt: {password_env: ASD_PW, port: 0}\n")
    with pytest.raises(ConfigError, match=r"^mqtt\.port") as exc:
        load_config(bad)
    assert "s3cret" not in str(exc.value)


def test_password_file_readable_by_others_is_one_warning(tmp_path: Path, bundle: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("fromfile\n")
    p = write(tmp_path, "bundle: bundle\nsection: s\nmqtt: {password_file: pw}\n")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("edge_agent")
    logger.addHandler(handler)
    try:
        pw.chmod(0o600)
        assert load_config(p).mqtt.password == "fromfile" and not records
        pw.chmod(0o644)
        assert load_config(p).mqtt.password == "fromfile"
    finally:
        logger.removeHandler(handler)
    assert [r.levelno for r in records] == [logging.WARNING]
    msg = records[0].getMessage()
    assert "group/others (mode 644)" in msg and str(pw) in msg and "fromfile" not in msg
