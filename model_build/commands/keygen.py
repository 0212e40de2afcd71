"""`model-build keygen`: an Ed25519 key pair for signing bundles (`edge_agent.bundle.signing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def keygen_cmd(
    private: Annotated[
        Path,
        typer.Option(
            "--private",
            help="Private key file to create (PEM, mode 0600; "
            "keep it on the workstation that exports).",
        ),
    ],
    public: Annotated[
        Path,
        typer.Option(
            "--public", help="Public key file to create (PEM; goes into the devices' trusted_keys)."
        ),
    ],
) -> None:
    """Create a new signing key pair; never overwrites an existing file."""
    from edge_agent.bundle.signing import generate_keypair, load_public_key

    generate_keypair(private, public)
    print(
        f"wrote {private} (private, mode 0600) and {public} (public, key id "
        f"{load_public_key(public).key_id})"
    )
