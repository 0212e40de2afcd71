"""`edge-agent enrol`: add a section for a machine the model never saw, from N normal clips.

The embedding model is used as it is (it learned machine sounds in general; the paper's
auxiliary task is what makes its embeddings useful beyond the training machines). The N clips
are embedded through the device path and become the new section's SOURCE domain: k-means
centres fitted on the device (`backend.fit_section`, numpy only) and a cross-fitted
threshold, exactly the rule `model-build export` applies to the training sections. The other
sections are copied unchanged into a new bundle version (`calibrate_cmd.write_version`);
`edge-agent calibrate --rollback` undoes an enrolment too.

At least `adapt.MIN_ENROL_CLIPS` (10) clips are required; BENCHMARKS.md "On-device
adaptation" shows how the threshold and the false alarm rate settle as N grows.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import clip_options as opt
from .errors import BundleError


def enrol_cmd(
    bundle: Annotated[str | None, typer.Option("--bundle", help="Bundle folder.")] = None,
    section: Annotated[
        str | None, typer.Option(help="New section id, <machine>_section_<XX>.")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Clips to capture from the device.")] = 30,
    config: opt.Config = None,
    device: opt.Device = None,
    files: opt.Files = None,
    from_files: opt.FromFiles = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a section that already exists.")
    ] = False,
    percentile: Annotated[float, typer.Option(help="Percentile of cross-fitted scores.")] = 90.0,
    skip_refused: opt.SkipRefused = False,
    retries: opt.Retries = 3,
    threads: opt.Threads = 1,
    quiet: opt.Quiet = False,
) -> None:
    """Enrol a new machine: a section fitted on the device from N normal clips."""
    from .adapt import MIN_ENROL_CLIPS, enrolled_section, parse_section
    from .backend import BackendError
    from .calibrate_cmd import Inputs, collect_clips, embed_clips, write_version
    from .scorer import Scorer

    # --section names the NEW section; a config's `section:` is the one the agent listens to
    inputs = Inputs(bundle, section or "-", config, device, files, from_files)
    root = inputs.require_bundle()
    if section is None:
        raise BackendError("--section: required (the new section, e.g. press_section_00)")
    parse_section(section)
    if not inputs.files and count < MIN_ENROL_CLIPS:
        raise BackendError(f"--count: need at least {MIN_ENROL_CLIPS} clips, got {count}")
    scorer = Scorer.from_bundle(root, threads=threads)
    if section in scorer.bundle.backends and not replace:
        raise BundleError(
            f"{root}: section {section!r} already exists; pass --replace to refit it "
            "(or calibrate it with edge-agent calibrate)"
        )
    clips = collect_clips(inputs, count, skip_refused, retries, quiet)
    backend = enrolled_section(embed_clips(scorer, clips, quiet), scorer.bundle.backend_config,
                               percentile, weights=scorer.bundle.weights)
    backends = dict(scorer.bundle.backends)
    replaced = section in backends
    backends[section] = backend
    n_refs = backend.components[0].n_source
    record = {"section": section, "n_clips": len(clips), "percentile": percentile,
              "n_references": n_refs, "threshold": backend.threshold,
              "replaced": replaced, **inputs.origin()}
    vdir = write_version(scorer.bundle, backends, "enrolment", record)
    print(f"enrolled {section} from {len(clips)} clips: {n_refs} references, threshold "
          f"{backend.threshold:.5f}; bundle version {scorer.bundle.version} -> {vdir.name} "
          f"(undo: edge-agent calibrate --bundle {root} --rollback)")
