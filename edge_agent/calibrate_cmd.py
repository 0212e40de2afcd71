"""`edge-agent calibrate`: adapt a section to a new condition from ten normal clips.

When a machine's settings or surroundings change (the paper's target domain), ten 10 s
clips of the new condition are captured from the microphone (or read with `--files`),
embedded with the bundle's OWN TFLite model through the one device path
(`scorer.embed_window`), and become the section's target reference vectors; the threshold is
recomputed from leave-one-out scores (`edge_agent.adapt`). No training, no TensorFlow.

The result is a NEW bundle version (`bundle.write_bundle`: same model.tflite, new
backend.npz, manifest with a `calibration` record and `parent_version`), written complete and
then activated by an atomic swap of `current`; a killed calibration leaves the old version
current and intact. A running agent notices the new `current` and reloads between windows.

`--rollback` points `current` back at the version the current one was made from
(`parent_version`), or, for an exported version, at the next lower version number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from . import clip_options as opt
from .errors import BundleError, ConfigError

# Fields write_bundle sets itself, and per-version records that must not leak into the next.
_DERIVED = {"format", "format_version", "version", "created", "sections", "files",
            "calibration", "enrolment", "parent_version"}


def _yaml_has(path: Path, key: str) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return True  # let load_config report the problem
    return isinstance(data, dict) and bool(data.get(key))


class Inputs:
    """Bundle, section, source and health settings from `--config` and the CLI flags."""

    def __init__(self, bundle: str | None, section: str | None, config: Path | None,
                 device: str | None, files: list[Path] | None, from_files: bool = False,
                 bundle_optional: bool = False) -> None:
        """`bundle_optional`: `record` reads only source/health/section from the config."""
        from .health import HealthSettings
        from .sources import SourceSettings

        self.source = SourceSettings()
        self.health = HealthSettings()
        self.bundle, self.section = bundle, section
        if config is not None:
            from .config import load_config

            ov: dict[str, Any] = {}
            if bundle is not None:
                ov["bundle"] = bundle
            elif bundle_optional and not _yaml_has(config, "bundle"):
                ov["bundle"] = str(config.resolve().parent)  # load_config insists on one
            if section is not None:
                ov["section"] = section
            cfg = load_config(config, ov)
            self.bundle, self.section = cfg.bundle, cfg.section
            self.source, self.health = cfg.source, cfg.health
        if from_files and not files and self.source.kind != "files":
            raise ConfigError("--files: give the WAV files or folders to read, e.g. --files "
                              "clips/*.wav")
        if files and device is not None:
            raise ConfigError("--files and --device: give one source of clips, not both")
        self.files: list[str] = []
        if device is not None:
            import dataclasses

            self.source = dataclasses.replace(self.source, kind="device", device=device)
        elif files:
            self.files = [str(f) for f in files]
        elif self.source.kind == "files":
            self.files = list(self.source.files)

    def require_bundle(self) -> str:
        if not self.bundle:
            raise ConfigError("--bundle: required (or `bundle:` in --config)")
        return self.bundle

    def require_section(self) -> str:
        if not self.section:
            raise ConfigError("--section: required (or `section:` in --config)")
        return self.section

    def origin(self) -> dict[str, Any]:
        """Where the clips came from, for the manifest record."""
        if self.files:
            return {"files": [str(Path(f).resolve()) for f in self.files]}
        return {"device": self.source.device, "kind": self.source.kind}


def collect_clips(inputs: Inputs, count: int, skip_refused: bool, retries: int,
                  quiet: bool = False) -> list[Any]:
    """The clips: all files of `--files`, or `count` clips captured live."""
    from .clips import Progress, capture_clips, file_clips

    progress = Progress(enabled=not quiet)
    if inputs.files:
        return file_clips(inputs.files, inputs.health, progress, skip_refused,
                          channel=inputs.source.channel)
    where = inputs.source.device or "the default input"
    progress.note(f"capturing {count} clips of 10 s from {where} ({count * 10} s)")
    return capture_clips(inputs.source, count, inputs.health, progress, retries)


def embed_clips(scorer: Any, clips: list[Any], quiet: bool = False) -> Any:
    """Device-path embeddings of the accepted clips, one (N, D_i) array per bundle component.

    Progress per clip: on a Pi this is seconds of work after the recording.
    """
    from .clips import Progress
    from .scorer import stack_embeddings

    progress = Progress(enabled=not quiet)
    out = []
    for i, c in enumerate(clips, 1):
        out.append(scorer.embed(c.samples))
        progress.note(f"embedding clip {i}/{len(clips)}")
    return stack_embeddings(out, scorer.dims)


def write_version(bundle: Any, backends: Mapping[str, Any], key: str,
                  record: dict[str, Any]) -> Path:
    """A new version: same model, `backends`, the old manifest plus this change's record.

    `adaptations` keeps the history of all records along the chain of versions.
    """
    from .bundle import write_bundle

    base = {k: v for k, v in bundle.manifest.items() if k not in _DERIVED}
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    base["adaptations"] = [*bundle.manifest.get("adaptations", []),
                           {"kind": key, "version_from": bundle.version, **record}]
    base[key] = record
    base["parent_version"] = bundle.version
    models = {name: bundle.path / name for name in bundle.model_files}
    return write_bundle(bundle.root, models, backends, base)


def rollback(root: str | Path) -> tuple[int, int]:
    """Make the version the current one came from current again; (old, new) numbers."""
    from .bundle import current_version, list_versions, load_bundle, set_current

    cur = load_bundle(root, verify=False)
    parent = cur.manifest.get("parent_version")
    older = [v for v in list_versions(root) if v < cur.version]
    if isinstance(parent, int) and parent in list_versions(root):
        target = parent
    elif older:
        target = older[-1]
    else:
        raise BundleError(
            f"{root}: nothing to roll back to (version {cur.version} is the oldest kept)"
        )
    load_bundle(root, verify=True, version=target)  # never activate a broken version
    before = current_version(root)
    set_current(root, target)
    return before, target


def calibrate_cmd(
    bundle: Annotated[str | None, typer.Option("--bundle", help="Bundle folder.")] = None,
    section: Annotated[
        str | None, typer.Option(help="Section to calibrate, e.g. fan_section_00.")
    ] = None,
    config: opt.Config = None,
    device: opt.Device = None,
    files: opt.Files = None,
    from_files: opt.FromFiles = False,
    count: Annotated[int, typer.Option(min=1, help="Clips to capture from the device.")] = 10,
    mode: Annotated[
        str, typer.Option(help="replace: new clips replace the target references; append: add.")
    ] = "replace",
    rule: Annotated[
        str, typer.Option("--threshold-rule", help="max: max(old, held-out percentile); "
                          "target: held-out percentile only.")
    ] = "max",
    percentile: Annotated[float, typer.Option(help="Percentile of held-out scores.")] = 90.0,
    skip_refused: opt.SkipRefused = False,
    retries: opt.Retries = 3,
    do_rollback: Annotated[
        bool, typer.Option("--rollback", help="Restore the previous bundle version and exit.")
    ] = False,
    threads: opt.Threads = 1,
    quiet: opt.Quiet = False,
) -> None:
    """Calibrate a section to a new condition (target domain) from normal clips; or --rollback."""
    inputs = Inputs(bundle, section, config, device, files, from_files)
    root = inputs.require_bundle()
    if do_rollback:
        before, after = rollback(root)
        print(f"rolled back {root}: current version {before} -> {after}")
        return
    sec = inputs.require_section()
    from .adapt import MODES, THRESHOLD_RULES, calibrated_section, check_choice

    check_choice("--mode", mode, MODES)  # before minutes of recording, not after
    check_choice("--threshold-rule", rule, THRESHOLD_RULES)
    from .scorer import Scorer

    scorer = Scorer.from_bundle(root, threads=threads)  # verified; unknown section fails early
    old = scorer.bundle.backend(sec)
    clips = collect_clips(inputs, count, skip_refused, retries, quiet)
    cal = calibrated_section(old, embed_clips(scorer, clips, quiet), scorer.bundle.backend_config,
                             mode, percentile, rule)
    backends = dict(scorer.bundle.backends)
    backends[sec] = cal.backend
    record = {"section": sec, "mode": mode, "n_clips": len(clips), "percentile": percentile,
              **inputs.origin(), **cal.record()}
    vdir = write_version(scorer.bundle, backends, "calibration", record)
    print(f"calibrated {sec} with {len(clips)} clips ({mode}): threshold {cal.old_threshold:.5f} "
          f"-> {cal.threshold:.5f}; bundle version {scorer.bundle.version} -> {vdir.name} "
          f"(undo: edge-agent calibrate --bundle {root} --rollback)")
