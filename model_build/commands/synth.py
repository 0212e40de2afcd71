"""`model-build synth`: the synthetic DCASE-layout data set (`model_build.synth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import Quiet, Seed


@fields_as_flags(test_per_label="--test", family="--family")
def synth_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder (DCASE layout is written inside).")],
    seed: Seed = 0,
    machines: Annotated[
        str | None,
        typer.Option(
            "--machines", help="Comma-separated machine types (default: all).", show_default=False
        ),
    ] = None,
    sections: Annotated[int, typer.Option("--sections", help="Sections per machine type.")] = 3,
    source_train: Annotated[
        int, typer.Option("--source-train", help="Source-domain training clips per section.")
    ] = 100,
    target_train: Annotated[
        int, typer.Option("--target-train", help="Target-domain training clips per section.")
    ] = 10,
    test: Annotated[
        int, typer.Option("--test", help="Test clips per section, domain and label.")
    ] = 50,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (files are identical either way).")
    ] = 1,
    family_name: Annotated[
        str,
        typer.Option(
            "--family",
            help="Generator family: harmonic (tonal machines), "
            "broadband (flow machines), cyclic (stroke machines), random "
            "(machines drawn from broad priors), texture (faults that keep band "
            "energies).",
        ),
    ] = "harmonic",
    quiet: Quiet = False,
) -> None:
    """Write a synthetic DCASE-layout data set (one module per family in model_build/synth/).

    Progress goes to stderr (redrawn on a terminal, a line per tenth in a log)."""
    import os
    import time

    from model_build.synth.core import SynthConfig, family, generate

    names = None if machines is None else tuple(m.strip() for m in machines.split(",") if m.strip())
    config = SynthConfig(seed, names, sections, source_train, target_train, test, family_name)
    config.check()
    t0 = time.perf_counter()
    meta = generate(config, out, max(1, min(workers, os.cpu_count() or 1)), progress=not quiet)
    fam_shifts = family(config.family).shifts
    shifts = ",".join(f"{s:02d}={fam_shifts[s % 3]}" for s in range(config.sections))
    print(
        f"synth: {len(meta['clips'])} clips, {len(config.machine_types)} machine types x "
        f"{config.sections} sections ({shifts}), seed {seed} -> {out} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
