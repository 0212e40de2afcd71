"""edge_agent.bundle.layout: moved from edge_agent.bundle.manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.bundle.manifest import MANIFEST
from edge_agent.errors import BundleError

if TYPE_CHECKING:  # signing imports this module; at run time it is imported where it is used
    pass


CURRENT = "current"


VERSIONS = "versions"


def _version_dirs(root: Path) -> dict[int, Path]:
    vdir = root / VERSIONS
    if not vdir.is_dir():
        return {}
    return {int(p.name): p for p in vdir.iterdir() if p.is_dir() and p.name.isdigit()}


def list_versions(root: str | Path) -> list[int]:
    return sorted(_version_dirs(Path(root)))


def current_version(root: str | Path) -> int:
    root = Path(root)
    try:
        text = (root / CURRENT).read_text().strip()
        return int(text)
    except FileNotFoundError:
        raise BundleError(f"{root}: not a bundle (expected {CURRENT} and {VERSIONS}/)") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{root / CURRENT}: expected a version number") from None
    except OSError as exc:  # `current` is a directory, or the root a file
        raise BundleError(f"{root / CURRENT}: unreadable ({exc.strerror or exc})") from None


def resolve(path: str | Path, version: int | None = None) -> tuple[Path, Path]:
    """(root, version directory) for a bundle root or a version directory itself."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{p}: bundle not found")
    if not p.is_dir():
        raise BundleError(
            f"{p}: is a file; expected a bundle directory (with {CURRENT} and {VERSIONS}/, or a "
            f"version directory with {MANIFEST})"
        )
    if (p / MANIFEST).exists() and not (p / CURRENT).exists():
        return p, p
    v = current_version(p) if version is None else version
    vdir = p / VERSIONS / str(v)
    if not vdir.is_dir():
        raise BundleError(f"{p}: version {v} missing (has {list_versions(p)})")
    return p, vdir
