"""The command layer's shared pieces: flags onto the agent config, field errors as flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.commands.overrides import Flags, agent_config, required_bundle, required_section
from edge_agent.commands.runner import fields_as_flags
from edge_agent.errors import ConfigError, EdgeAgentError, FieldError


def test_flags_set_the_same_config_keys_in_every_command(tmp_path: Path) -> None:
    yaml = tmp_path / "etc" / "agent.yaml"
    yaml.parent.mkdir()
    yaml.write_text("section: fan_section_00\nthreads: 4\nsource: {device: 'hw:1', channel: 1}\n")
    cfg = agent_config(yaml, Flags())
    assert (cfg.threads, cfg.source.kind, cfg.source.channel) == (4, "device", 1)
    clip = tmp_path / "a.wav"
    cfg = agent_config(
        yaml,
        Flags(
            threads=2,
            channel=0,
            paths=(clip,),
            from_files=True,
            section="valve_section_01",
            json=True,
            quiet=True,
        ),
    )
    assert (cfg.threads, cfg.source.channel, cfg.section) == (2, 0, "valve_section_01")
    # a path given as a flag is relative to the working directory, not to the YAML's folder
    assert cfg.source.kind == "files" and cfg.source.files == (str(clip),)
    assert cfg.log.json and not cfg.log.stdout


def test_one_source_of_audio_and_files_need_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--device and --files: give one source"):
        agent_config(None, Flags(device="hw:1", paths=(tmp_path / "a.wav",)))
    with pytest.raises(ConfigError, match=r"^--files and --stdin: give one source"):
        agent_config(None, Flags(stdin=True, paths=(tmp_path / "a.wav",)))
    with pytest.raises(ConfigError, match=r"^--files: give the WAV files"):
        agent_config(None, Flags(from_files=True))
    yaml = tmp_path / "agent.yaml"
    yaml.write_text(f"source: {{kind: files, files: [{tmp_path / 'b.wav'}]}}\n")
    assert agent_config(yaml, Flags(from_files=True)).source.files == (str(tmp_path / "b.wav"),)


def test_required_fields_name_the_flag_and_the_config_key() -> None:
    cfg = agent_config(None, Flags())
    with pytest.raises(ConfigError, match=r"^--bundle: required \(or `bundle:` in --config\)"):
        required_bundle(cfg)
    with pytest.raises(ConfigError, match=r"^--section: required \(or `section:` in --config\)"):
        required_section(cfg)


def test_field_errors_are_worded_as_the_flags_that_set_them() -> None:
    @fields_as_flags(model_index="--model")
    def command(field: str) -> None:
        raise FieldError(field, "expected 0..1, got 5")

    with pytest.raises(EdgeAgentError, match=r"^--model: expected 0\.\.1, got 5$"):
        command("model_index")
    with pytest.raises(EdgeAgentError, match=r"^--skip-unreadable: expected"):
        command("skip_unreadable")


def test_a_run_where_every_window_failed_exits_1_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle version that loads but cannot score (40000-bin spectra for a model that takes
    80000): the run ends, but not with exit 0: nothing was scored."""
    import shutil

    from cli_helpers import run_cli

    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.versions import write_bundle
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    root = tmp_path / "bundle"
    shutil.copytree(demo.bundle, root)
    args = (
        "run",
        "--bundle",
        str(root),
        "--section",
        demo.section,
        "--quiet",
        "--files",
        str(demo.paths[0]),
        str(demo.paths[1]),
    )
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err  # the shipped version scores
    b = load_bundle(root)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    manifest["frontend"] = {**manifest["frontend"], "spectrum_bins": 40_000}
    write_bundle(root, {n: b.path / n for n in b.model_files}, b.backends, manifest)
    code, _, err = run_cli(capsys, *args)
    assert code == 1, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        (
            "error: all 2 windows failed (window_errors 2, scored 0); the window_error lines above "
            "say why"
        )
    ]
