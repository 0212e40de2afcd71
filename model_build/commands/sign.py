"""`model-build sign`: sign an already exported bundle version (`edge_agent.bundle.signing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sign_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (or one version directory of it).")],
    key: Annotated[
        Path, typer.Option("--key", help="Ed25519 private key file (model-build keygen).")
    ],
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            min=1,
            help="Version to sign (default: the current one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Sign the current (or given) version after checking its files; a second key adds its
    signature next to the first (key rotation)."""
    from edge_agent.bundle.layout import resolve
    from edge_agent.bundle.signing import public_key_of, sign_version, verify_version

    _, vdir = resolve(bundle, version)
    path = sign_version(vdir, key)
    key_id = verify_version(vdir, [public_key_of(key)])  # what a device trusting it will check
    print(f"signed {vdir} with key {key_id} ({path.name})")
