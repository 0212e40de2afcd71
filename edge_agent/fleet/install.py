"""A received bundle version: checked (signature, checksums, smoke test), installed, rolled back.

The checks, in order, each a one-line refusal that installs nothing:
1. the version's manifest.json is the one the release notice names (`manifest_sha256`);
2. its OWN signature: `signing.verify_release` with the agent's trusted keys (which also
   checks every file's sha256 against the manifest); a carried `signed_origin.json` never
   stands in for it (an origin vouches only for versions the device adapted itself).
   Without trusted keys a release is refused, unless `fleet.allow_unsigned` says otherwise
   (then only the checksums are checked);
3. it loads as the agent would load it (`Scorer.from_bundle` with the trusted keys and the
   agent's TFLite runtimes), passes its self-test on this device (edge_agent.runtime.selftest:
   this runtime and CPU reproduce its reference numbers), its windows are the agent's window
   length, and it scores a synthetic window of every section the agent's monitors use
   (`Scorer.smoke_test`), so a version that cannot serve this agent never becomes current;
4. the model_version it will report is the one the notice announced.

Install: the version folder is copied unchanged (the signature covers its manifest, so not a
byte of it may change) to `versions/<n>` under a temporary name, renamed into place and made
current with `bundle.set_current`; the agent's own bundle poll then hot-reloads it with its own
checks. `n` is the next free number, or the version's own number when that is higher, so a
fleet's version numbers stay the exported ones where the device's history allows. The install
record (edge_agent.fleet.state) keeps the version that was current before, which
`rollback` returns to.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.bundle.layout import VERSIONS, current_version, list_versions
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import MANIFEST, sha256_file
from edge_agent.bundle.versions import rollback_target, set_current
from edge_agent.errors import BundleError
from edge_agent.fleet.messages import FleetError, Release
from edge_agent.fleet.state import FleetState, InstallRecord

if TYPE_CHECKING:
    from edge_agent.bundle.signing import TrustedKey
    from edge_agent.scoring.embedder import RuntimeRequest


@dataclass(frozen=True)
class Candidate:
    """A received version that passed every check."""

    vdir: Path
    model_version: str
    bundle_version: int  # the manifest's own version number
    signed_by: str | None


def check_candidate(
    vdir: Path,
    release: Release,
    trusted: Sequence[TrustedKey],
    allow_unsigned: bool,
    sections: Sequence[str],
    window_samples: int,
    request: RuntimeRequest | None = None,
) -> Candidate:
    """The checks of the module docstring; FleetError / BundleError (one line) on the first
    that fails."""
    from edge_agent.runtime.scorer import Scorer

    what = f"release {release.release}"
    if sha256_file(vdir / MANIFEST) != release.manifest_sha256:
        raise FleetError(f"{what}: manifest.json is not the one the notice names")
    signed_by: str | None = None
    if trusted:
        from edge_agent.bundle.signing import verify_release

        try:
            signed_by = verify_release(vdir, trusted)
        except BundleError as exc:
            raise FleetError(f"{what}: {_short(exc, vdir)}") from None
    elif not allow_unsigned:
        raise FleetError(
            f"{what}: refused: this agent has no trusted_keys to check its "
            "signature with (set trusted_keys, or fleet.allow_unsigned on a test "
            "rig)"
        )
    try:
        scorer = Scorer.from_bundle(vdir, 1, trusted=trusted, request=request)
        if scorer.spec.clip_samples != window_samples:
            raise FleetError(
                f"{what}: windows of {scorer.spec.clip_samples} samples, the "
                f"agent cuts {window_samples}"
            )
        for section in sorted(set(sections)):
            scorer.smoke_test(section, window_samples)
    except BundleError as exc:
        raise FleetError(f"{what}: {_short(exc, vdir)}") from None
    if scorer.bundle.manifest_sha256 != release.manifest_sha256:  # the bytes that were loaded
        raise FleetError(f"{what}: manifest.json changed while it was checked")
    if scorer.bundle.model_version != release.model_version:
        raise FleetError(
            f"{what}: holds model {scorer.bundle.model_version}, the notice "
            f"announced {release.model_version}"
        )
    return Candidate(vdir, scorer.bundle.model_version, scorer.bundle.version, signed_by)


def _short(exc: Exception, vdir: Path) -> str:
    """The error without the staging folder's path (meaningless to the operator)."""
    return str(exc).replace(f"{vdir}/", "").replace(str(vdir), "the version")


def install(root: Path, candidate: Candidate) -> tuple[int, int | None]:
    """Copy the candidate's folder into the bundle at `root` as a new version and make it
    current; (new version, the version current before, None when there was none)."""
    try:
        previous: int | None = current_version(root)
    except BundleError:
        previous = None
    versions = list_versions(root)
    number = max((versions[-1] + 1) if versions else 1, candidate.bundle_version)
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-fleet-", dir=root / VERSIONS))
    try:
        for f in sorted(candidate.vdir.iterdir()):
            shutil.copyfile(f, tmp / f.name)
        final = root / VERSIONS / str(number)
        Path(tmp).rename(final)  # fails (not overwrites) if another writer took the number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    set_current(root, number)
    return number, previous


def revert(root: Path, record: InstallRecord) -> bool:
    """Make the version before `record`'s install current again, if `record`'s version is still
    the current one (an install the agent did not take up). True when it did."""
    return record.previous is not None and restore(root, record.previous, record.version)


def roll_back(
    root: Path, state: FleetState, trusted: Sequence[TrustedKey]
) -> tuple[int, int, InstallRecord | None]:
    """(from, to, the fleet install undone or None). A current version that a fleet install
    made goes back to the version current before that install; any other goes back the
    bundle's own way (`rollback_target`). Either target is verified with the trusted keys
    first (the agent's reload would refuse a version they do not sign, and a restart would then
    fail to start): a one-line BundleError, and `current` unchanged, when it would not load."""
    cur = current_version(root)
    record = state.by_version(cur)
    if record is not None and record.previous is not None:
        target = record.previous
        if target not in list_versions(root):
            raise BundleError(
                f"{root}: version {target}, current before release "
                f"{record.release}, is no longer kept"
            )
    else:
        record, target = None, rollback_target(root)
    try:
        load_bundle(root, verify=True, version=target, trusted=trusted)
    except BundleError as exc:
        raise BundleError(
            f"rollback to version {target} refused, version {cur} stays current: "
            f"{' '.join(str(exc).split())}"
        ) from None
    set_current(root, target)
    if record is not None:
        state.mark_rolled_back(record)
    return cur, target, record


def restore(root: Path, before: int, after: int) -> bool:
    """Make `before` current again if `after` still is (a rollback or install the agent did not
    take up: an agent must always be able to start on `current`). True when it did."""
    if current_version(root) != after:
        return False
    set_current(root, before)
    return True


def wait_running(
    running: Callable[[], str],
    expected: str,
    timeout: float,
    stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll `running()` until it returns `expected` (True) or `timeout` seconds pass (False):
    the agent's own reload takes up to its `reload_poll_seconds` plus a model load."""
    end = time.monotonic() + timeout
    while True:
        if running() == expected:
            return True
        if time.monotonic() >= end or stop():
            return False
        time.sleep(0.1)


def sections_of(monitors: Mapping[str, str]) -> list[str]:
    return sorted(set(monitors.values()))
