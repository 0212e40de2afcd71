"""Ed25519 signatures on bundle versions: which models this device may run.

Why: with fifty devices fed over the network, a model that anyone able to write into the
bundle folder (or to publish on the broker) can push is a hole. With `trusted_keys` in the
agent's config, a bundle version loads only when a trusted key vouches for it; unsigned, badly
signed or altered versions are refused with one line (a hot reload keeps the old model).
The cryptography is the `cryptography` package's Ed25519; nothing here is hand-written crypto.

Keys are PEM files (`generate_keypair`; `openssl genpkey -algorithm ed25519` makes the same):
the private key (PKCS#8, mode 0600) stays on the workstation that exports, the public one
(SubjectPublicKeyInfo) goes to the devices. A key's id is the first 16 hex digits of the
sha256 of its raw 32 bytes.

What a signature covers. `sign_version` signs the version's manifest.json: the signed message
is `asd-bundle-signature/1`, a newline, `manifest.json sha256 <hex>` and a newline, and the
manifest holds the sha256 of every other file. The signature lives beside it::

    signature.json   {"format": "asd-bundle-signature", "format_version": 1,
                      "manifest_sha256": "<hex>",
                      "signatures": [{"key_id": "...", "algorithm": "ed25519",
                                      "signature": "<base64>"}, ...]}

One entry per key: signing again with another key adds one (key rotation: sign with the old
and the new key while devices trust either). An exported, signed version is protected whole:
models, frontend spec, components, backend, thresholds.

Local adaptation. `edge-agent calibrate`, `enrol` and `tune` (and their fleet commands) write
new versions on the device (`bundle.write_adapted_version`): the same model files, a new
backend (references, centres, normalisers, thresholds, sections). The release key never leaves
the workstation, so the device cannot sign these with it. Two things vouch for such a version
instead, and a load with trusted keys requires both:
- its ORIGIN: `write_adapted_version` carries the signed parent's manifest and signature into
  the new version (`carry_origin`, file `signed_origin.json`; a parent that is itself adapted
  passes its own origin on). The origin's signature must verify with a trusted release key, and
  the version's frontend spec, components and model files (their sha256, checked against the
  bytes on disk) must be exactly the origin's: a model no release key signed never loads;
- its DEVICE SEAL (`device_seal.json`): an Ed25519 signature, by this device's own key, over
  the version's manifest digest (which covers backend.npz, so every threshold) and its origin
  file's digest. The device key is made on the device the first time it adapts a version
  (`device_signing_key`: `device-signing.key`, mode 0600, in the agent's state folder, beside
  the outbox; never in the bundle folder) and its public half (`device-signing.pub`) joins the
  trusted keys with the role `device` (`load_trust`). A device key vouches ONLY for seals:
  never for a release's signature.json.

So a carried origin vouches only for what this device itself made from a version it already
trusted. Bytes that arrive over the network are another matter: a fleet release must carry its
own signature.json (`verify_release`), and a version copied into the bundle folder with a
carried origin and a threshold of its own (the hole this closes: thresholds of 1e6 silenced
every alarm) is refused at start, at reload and at rollback, because no seal of this device
covers its manifest. What the device key does not protect against: whoever runs as the agent's
user can read the key (as they can run `edge-agent tune`); the threat model is in
docs/bundle.md ("What signing protects").

Checked bytes only: `load_bundle` reads manifest.json once and passes the digest of those
bytes to `check_signature` (`manifest_sha256`), so the signature is checked on the manifest the
load follows, and the models it then runs are the bytes it hashed (edge_agent.bundle). Rotate
keys to retire old releases: any version a trusted key signed can be made current again by
whoever can write into the folder (docs/bundle.md, "Downgrades").

Why the origin is carried in the version rather than found by walking `parent_version` at load
time: the walk breaks when `bundle.prune` removes an older version, when a rollout ships one
version directory, or when a version directory is loaded on its own; the carried origin checks
the same thing (these models, byte for byte, are the ones a trusted key signed) from the
version alone.

Errors: a bad key file is a one-line ConfigError naming it; a version that does not verify
is a one-line BundleError naming the version directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge_agent.bundle.manifest import (
    MANIFEST,
    check_version,
    parse_manifest,
    read_hashed,
    self_test_file,
    sha256_file,
)
from edge_agent.errors import BundleError, ConfigError
from edge_agent.scoring.frontend import FrontendSpec

# `cryptography` (~6 MB resident) is imported where a key is read or a signature checked: an
# agent without trusted_keys never needs it (BENCHMARKS.md, "One machine's agent as deployed")
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("edge_agent")

SIGNATURE = "signature.json"  # the version's own signatures
ORIGIN = "signed_origin.json"  # an adapted version: the signed version its models come from
DEVICE_SEAL = "device_seal.json"  # an adapted version: this device's signature over it
DEVICE_KEY = "device-signing.key"  # the device's private key (state folder, mode 0600)
DEVICE_PUBLIC = "device-signing.pub"  # its public half (what a load checks seals with)
ALGORITHM = "ed25519"
SIGNATURE_FORMAT = "asd-bundle-signature"
ORIGIN_FORMAT = "asd-bundle-origin"
SEAL_FORMAT = "asd-device-seal"
FORMAT_VERSION = 1
_MESSAGE_PREFIX = b"asd-bundle-signature/1\n"  # domain separation: these bytes sign nothing else
_SEAL_PREFIX = b"asd-device-seal/1\n"  # a seal's message can never be a release signature's
KeyRole = Literal["release", "device"]
_SIGN_HINT = "sign it with model-build export --sign-key, or model-build sign"


@dataclass(frozen=True)
class TrustedKey:
    """A public key the device trusts: `key_id` (16 hex digits), the file it came from, its raw
    32 bytes, and its `role`: a `release` key (trusted_keys) signs versions; the `device` key
    (this device's own, `load_trust`) only seals versions adapted here (module docstring)."""

    key_id: str
    path: Path
    raw: bytes = field(repr=False)
    role: KeyRole = "release"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def key_id_of(raw: bytes) -> str:
    """The short id of a raw Ed25519 public key: first 16 hex digits of its sha256."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _raw_public(key: Any) -> bytes:
    """The raw 32 bytes of an Ed25519 public key object."""
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def _message(manifest_sha256: str) -> bytes:
    return _MESSAGE_PREFIX + f"{MANIFEST} sha256 {manifest_sha256}\n".encode()


def _ids(trusted: Sequence[TrustedKey]) -> str:
    return ", ".join(k.key_id for k in trusted) or "(none)"


def _releases(trusted: Sequence[TrustedKey]) -> list[TrustedKey]:
    """The keys that may vouch for a release (a device key never does)."""
    return [k for k in trusted if k.role == "release"]


# ---------------------------------------------------------------- key files


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """A new Ed25519 key pair as PEM files: `private_path` (PKCS#8, unencrypted, mode 0600)
    and `public_path` (for the devices' `trusted_keys`). Refuses to overwrite either file: a
    lost private key cannot be recreated, and one overwritten by mistake orphans every bundle
    it signed."""
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.resolve() == public_path.resolve():
        raise ConfigError(f"{private_path}: the private and the public key need two files")
    for p in (private_path, public_path):
        if p.exists() or p.is_symlink():
            raise ConfigError(
                f"{p}: already exists; not overwritten (remove it or pick another name)"
            )
        if not p.parent.is_dir():
            raise ConfigError(f"{p}: folder {p.parent} does not exist")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)  # no private key without its public half
        raise


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never over an existing file: O_EXCL) with `mode`, whatever the umask."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; not overwritten") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: key file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read key file ({exc.strerror or exc})") from None


def load_public_key(path: str | Path) -> TrustedKey:
    """The Ed25519 public key in PEM file `path`, or a one-line ConfigError naming it."""
    path = Path(path)
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise ConfigError(
            f"{path}: is a private key; trusted keys are PUBLIC key files "
            "(model-build keygen --public); keep the private one off the device"
        )
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = " ".join(str(exc).split())[:80] or type(exc).__name__
        raise ConfigError(f"{path}: not a PEM public key ({reason})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key (a {type(key).__name__})")
    raw = _raw_public(key)
    return TrustedKey(key_id_of(raw), path, raw)


def load_public_keys(paths: Sequence[str | Path]) -> list[TrustedKey]:
    """The trusted keys of `paths` (the config's `trusted_keys`), in order, each key once."""
    out: dict[str, TrustedKey] = {}
    for p in paths:
        k = load_public_key(p)
        out.setdefault(k.key_id, k)
    return list(out.values())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file `path` (unencrypted), or a one-line ConfigError.
    A key file that group or others can read is one warning."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted, or a password where none is expected
        raise ConfigError(
            f"{path}: an encrypted private key; this tool reads unencrypted "
            "PEM keys (model-build keygen) kept at mode 0600"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = " (a public key: signing needs the private one)" if b"PUBLIC KEY" in data else ""
        reason = " ".join(str(exc).split())[:80] or type(exc).__name__
        raise ConfigError(f"{path}: not a PEM private key{hint} ({reason})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key (a {type(key).__name__})")
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        if mode & 0o077:
            log.warning(
                "%s: the private key can be read by group/others (mode %03o); chmod 600 it",
                path,
                stat.S_IMODE(mode),
            )
    return key


def public_key_of(private_key_path: str | Path) -> TrustedKey:
    """The public half of the private key in `private_key_path`, as a TrustedKey (what a
    device would trust; `model-build sign` checks its own signature with it)."""
    raw = _raw_public(load_private_key(private_key_path).public_key())
    return TrustedKey(key_id_of(raw), Path(private_key_path), raw)


# ---------------------------------------------------------------- the device's own key


def device_public_key(folder: str | Path) -> TrustedKey | None:
    """This device's public key (`DEVICE_PUBLIC` in state folder `folder`) with the role
    `device`, or None when the device has not made one yet (it has adapted nothing)."""
    path = Path(folder) / DEVICE_PUBLIC
    if not path.exists():
        return None
    key = load_public_key(path)
    return TrustedKey(key.key_id, path, key.raw, "device")


def device_signing_key(folder: str | Path) -> Ed25519PrivateKey:
    """This device's private key from state folder `folder`, made there on first use
    (`DEVICE_KEY`, mode 0600, and `DEVICE_PUBLIC`). Run as root (an admin's `sudo edge-agent
    calibrate`), new key files are given to the folder's owner, so the agent's own user (which
    owns its state folder) can use them too. A one-line ConfigError when the folder cannot
    hold them."""
    folder = Path(folder)
    private, public = folder / DEVICE_KEY, folder / DEVICE_PUBLIC
    if private.exists():
        key = load_private_key(private)
        if not public.exists():  # lost half: rewrite it from the private key
            from cryptography.hazmat.primitives import serialization

            _write_new(
                public,
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
                0o644,
            )
        return key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{folder}: cannot create the state folder for the device key ({exc.strerror or exc})"
        ) from None
    public.unlink(missing_ok=True)  # a public half without its private key vouches for nothing
    generate_keypair(private, public)
    with contextlib.suppress(OSError):
        owner = folder.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:
            for p in (private, public):
                os.chown(p, owner.st_uid, owner.st_gid)
    log.info("%s: made this device's key for sealing the versions it adapts", private)
    return load_private_key(private)


def load_trust(key_files: Sequence[str | Path], state_folder: str | Path) -> list[TrustedKey]:
    """What a load checks signatures with: the release keys in `key_files` (the config's
    `trusted_keys`) and, when it has one, this device's own key from `state_folder` (role
    `device`: it vouches only for versions adapted here). No key files: [] (no checks)."""
    if not key_files:
        return []
    keys = load_public_keys(key_files)
    device = device_public_key(state_folder)
    return keys if device is None else [*keys, device]


def seal_version(vdir: Path, key: Ed25519PrivateKey) -> Path:
    """Seal version directory `vdir`, adapted on this device, with the device's `key`: a
    signature over its manifest's digest and its carried origin's (see module docstring).
    Called by `write_adapted_version` before the version is renamed into place."""
    vdir = Path(vdir)
    manifest = sha256_file(vdir / MANIFEST)
    origin = sha256_file(vdir / ORIGIN)
    doc = {
        "format": SEAL_FORMAT,
        "format_version": FORMAT_VERSION,
        "key_id": key_id_of(_raw_public(key.public_key())),
        "algorithm": ALGORITHM,
        "manifest_sha256": manifest,
        "origin_sha256": origin,
        "signature": base64.b64encode(key.sign(_seal_message(manifest, origin))).decode(),
    }
    out = vdir / DEVICE_SEAL
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out


def _seal_message(manifest_sha256: str, origin_sha256: str) -> bytes:
    return (
        _SEAL_PREFIX
        + (f"{MANIFEST} sha256 {manifest_sha256}\n{ORIGIN} sha256 {origin_sha256}\n").encode()
    )


# ---------------------------------------------------------------- signing


def sign_version(vdir: Path, private_key_path: Path) -> Path:
    """Sign version directory `vdir` with the key in `private_key_path`; returns signature.json.

    The version is verified first (manifest digest, schema, every file's sha256): a signature
    vouches for files, so files that do not match their manifest are never signed. An existing
    signature.json for the same manifest keeps its other keys' entries (this key's is
    replaced); the file is replaced atomically."""
    vdir = Path(vdir)
    key = load_private_key(private_key_path)
    digest = check_version(vdir).manifest_sha256  # the manifest bytes that were checked
    kid = key_id_of(_raw_public(key.public_key()))
    entries: list[dict[str, Any]] = []
    path = vdir / SIGNATURE
    if path.is_file():
        with contextlib.suppress(BundleError):  # a damaged or stale file is simply replaced
            old = _signature_doc(_read_json(path), path)
            if old["manifest_sha256"] == digest:
                entries = [e for e in old["signatures"] if e["key_id"] != kid]
    entries.append(
        {
            "key_id": kid,
            "algorithm": ALGORITHM,
            "signature": base64.b64encode(key.sign(_message(digest))).decode("ascii"),
        }
    )
    doc = {
        "format": SIGNATURE_FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest_sha256": digest,
        "signatures": entries,
    }
    tmp = vdir / f".{SIGNATURE}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        Path(tmp).replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


# ---------------------------------------------------------------- verification


def verify_version(vdir: Path, trusted: Sequence[TrustedKey]) -> str:
    """The id of the trusted key that vouches for version directory `vdir`, or a one-line
    BundleError: files that do not match the manifest (the checks of `load_bundle`), not
    signed, signed by no trusted key, a bad signature, or a local adaptation whose models or
    frontend are not the signed ones or that no seal of this device covers."""
    vdir = Path(vdir)
    checked = check_version(vdir)
    return check_signature(vdir, checked.manifest, trusted, manifest_sha256=checked.manifest_sha256)


def verify_release(vdir: Path, trusted: Sequence[TrustedKey]) -> str:
    """`verify_version` for a version that arrived from elsewhere (a fleet release): it must
    carry its OWN signature by a trusted release key. A carried origin (and any seal) vouches
    only for versions this device adapted itself, never for bytes received."""
    vdir = Path(vdir)
    checked = check_version(vdir)
    if not (vdir / SIGNATURE).exists():
        carried = (
            f" (it carries {ORIGIN}, which vouches only for versions a device adapts "
            "itself, never for a release)"
            if (vdir / ORIGIN).exists()
            else ""
        )
        raise BundleError(
            f"{vdir}: release is not signed: no {SIGNATURE}{carried}; the agent "
            f"trusts keys {_ids(_releases(trusted))} ({_SIGN_HINT})"
        )
    return check_signature(vdir, checked.manifest, trusted, manifest_sha256=checked.manifest_sha256)


def check_signature(
    vdir: Path,
    manifest: Mapping[str, Any],
    trusted: Sequence[TrustedKey],
    manifest_sha256: str | None = None,
) -> str:
    """`verify_version` for a version whose files were already checked against `manifest`
    (what `load_bundle` does before it calls this). `manifest_sha256` is the digest of the
    manifest bytes `manifest` was parsed from; give it (load_bundle does): without it
    manifest.json is read again here, and a file swapped in between would have its signature
    checked while the other one is used."""
    releases = _releases(trusted)
    if not releases:
        raise BundleError(f"{vdir}: no trusted keys to check the signature with")
    digest = manifest_sha256 or sha256_file(vdir / MANIFEST)
    if (vdir / SIGNATURE).exists():
        return _check_signatures(vdir / SIGNATURE, _read_json(vdir / SIGNATURE), digest, releases)
    if (vdir / ORIGIN).exists():
        return _check_origin(vdir, manifest, trusted, digest)
    parent = manifest.get("parent_version")
    made = (
        f" (adapted from version {parent}, which was not signed then)" if parent is not None else ""
    )
    raise BundleError(
        f"{vdir}: bundle version is not signed{made}; the agent trusts keys "
        f"{_ids(releases)} ({_SIGN_HINT})"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:80]
        raise BundleError(f"{path}: unreadable ({reason})") from None


def _signature_doc(doc: Any, path: Path) -> dict[str, Any]:
    """`doc` if it is a signature file's content, else a one-line BundleError."""

    def bad(what: str) -> BundleError:
        return BundleError(f"{path}: not a bundle signature file ({what})")

    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
        raise bad(f"expected format {SIGNATURE_FORMAT!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise bad(f"unknown format_version {doc.get('format_version')!r}; update the agent")
    if not isinstance(doc.get("manifest_sha256"), str):
        raise bad("manifest_sha256: expected a sha256 hex digest")
    sigs = doc.get("signatures")
    if (
        not isinstance(sigs, list)
        or not sigs
        or not all(
            isinstance(e, dict)
            and all(isinstance(e.get(k), str) for k in ("key_id", "algorithm", "signature"))
            for e in sigs
        )
    ):
        raise bad("signatures: expected a non-empty list of {key_id, algorithm, signature}")
    return doc


def _check_signatures(path: Path, doc: Any, digest: str, trusted: Sequence[TrustedKey]) -> str:
    """The id of a trusted key whose signature in signature document `doc` (from `path`) is
    valid for the manifest of sha256 `digest`."""
    doc = _signature_doc(doc, path)
    by_id = {k.key_id: k for k in trusted}
    bad: list[str] = []
    for e in doc["signatures"]:
        key = by_id.get(e["key_id"])
        if key is None:
            continue
        if e["algorithm"] != ALGORITHM:
            raise BundleError(
                f"{path}: key {e['key_id']}: algorithm {e['algorithm']!r} is "
                f"not supported (expected {ALGORITHM})"
            )
        try:
            sig = base64.b64decode(e["signature"], validate=True)
        except binascii.Error:
            sig = b""
        if key.verifies(sig, _message(digest)):
            return key.key_id
        bad.append(key.key_id)
    if bad:
        edited = (
            f"; it was made for manifest.json sha256 {doc['manifest_sha256'][:12]}..., "
            f"this one is {digest[:12]}... (edited after signing)"
            if doc["manifest_sha256"] != digest
            else " (signature.json altered)"
        )
        raise BundleError(f"{path}: bad signature by key {', '.join(bad)}{edited}; refused")
    signers = ", ".join(e["key_id"] for e in doc["signatures"])
    raise BundleError(
        f"{path}: signed by key {signers}, which the agent does not trust (it "
        f"trusts keys {_ids(trusted)}); add the key to trusted_keys or re-sign"
    )


def _check_origin(
    vdir: Path, manifest: Mapping[str, Any], trusted: Sequence[TrustedKey], manifest_sha256: str
) -> str:
    """A local adaptation: its origin's signature is valid and trusted, its models, components
    and frontend spec are the origin's, and this device sealed it (module docstring)."""
    path = vdir / ORIGIN
    try:
        raw, origin_sha256 = read_hashed(path)  # the bytes checked are the bytes sealed
        doc = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:80]
        raise BundleError(f"{path}: unreadable ({reason})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != ORIGIN_FORMAT
        or doc.get("format_version") != FORMAT_VERSION
        or not isinstance(doc.get("manifest"), str)
    ):
        raise BundleError(
            f"{path}: not a signed-origin file (expected format "
            f"{ORIGIN_FORMAT!r} {FORMAT_VERSION} with the signed manifest)"
        )
    text: str = doc["manifest"]
    key_id = _check_signatures(
        path,
        doc.get("signature"),
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
        _releases(trusted),
    )
    origin = parse_manifest(text, path)
    where = f"{vdir}: a local adaptation of signed version {origin['version']}"
    if FrontendSpec.from_dict(origin["frontend"]) != FrontendSpec.from_dict(manifest["frontend"]):
        raise BundleError(f"{where}, but its frontend spec is not the signed one; refused")
    if origin["components"] != manifest["components"]:
        raise BundleError(f"{where}, but its components are not the signed ones; refused")
    if manifest.get("self_test") != origin.get("self_test"):
        raise BundleError(f"{where}, but its self_test is not the signed one; refused")
    covered = [c["file"] for c in manifest["components"] if c["kind"] == "model"]
    reference = self_test_file(manifest)
    for name in covered + ([reference] if reference is not None else []):
        got, signed = manifest["files"][name], origin["files"].get(name)
        if got != signed:
            raise BundleError(
                f"{vdir / name}: not the {'model' if name in covered else 'self-test'} file "
                f"signed in version {origin['version']} "
                f"(sha256 {got[:12]}..., signed {str(signed)[:12]}...); a model no trusted "
                "key signed never loads"
            )
    _check_seal(vdir, where, manifest_sha256, origin_sha256, trusted)
    return key_id


def _check_seal(
    vdir: Path, where: str, manifest_sha256: str, origin_sha256: str, trusted: Sequence[TrustedKey]
) -> None:
    """One-line BundleError unless `vdir`'s device seal is this device's valid signature over
    this manifest and this origin: only what the device made itself loads on its origin."""
    path = vdir / DEVICE_SEAL
    hint = (
        "only a version this device adapted itself loads without a release signature: a "
        "version received or copied from elsewhere needs its own signature.json; adapt it "
        "again here (calibrate/enrol/tune with the agent's --config) or roll back"
    )
    if not path.exists():
        raise BundleError(
            f"{where}, but no seal of this device covers it (no {DEVICE_SEAL}); {hint}"
        )
    doc = _read_json(path)
    fields = ("key_id", "algorithm", "manifest_sha256", "origin_sha256", "signature")
    if (
        not isinstance(doc, dict)
        or doc.get("format") != SEAL_FORMAT
        or doc.get("format_version") != FORMAT_VERSION
        or not all(isinstance(doc.get(k), str) for k in fields)
    ):
        raise BundleError(
            f"{path}: not a device seal (expected format {SEAL_FORMAT!r} "
            f"{FORMAT_VERSION} with {', '.join(fields)})"
        )
    devices = {k.key_id: k for k in trusted if k.role == "device"}
    key = devices.get(doc["key_id"])
    if key is None:
        mine = ", ".join(devices) or "none yet"
        raise BundleError(
            f"{path}: sealed by device key {doc['key_id']}, not by this device's ({mine}); {hint}"
        )
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
    except binascii.Error:
        sig = b""
    if doc["algorithm"] != ALGORITHM or not key.verifies(
        sig, _seal_message(manifest_sha256, origin_sha256)
    ):
        changed = [
            name
            for name, got, sealed in (
                (MANIFEST, manifest_sha256, doc["manifest_sha256"]),
                (ORIGIN, origin_sha256, doc["origin_sha256"]),
            )
            if got != sealed
        ]
        what = (
            f"{' and '.join(changed)} changed after the device sealed it"
            if changed
            else "the seal itself was altered"
        )
        raise BundleError(f"{path}: bad device seal ({what}); refused")


def carry_origin(
    parent_vdir: Path, vdir: Path, parent_manifest: bytes | None = None
) -> Path | None:
    """Give version directory `vdir`, adapted on the device from `parent_vdir`, the parent's
    signed origin: the parent's manifest and signature when it is signed, else the origin it
    carries itself. Returns the file written, None when the parent has neither (the new
    version is then as unsigned as its parent). `parent_manifest`: the parent's manifest.json
    as it was loaded (`Bundle.manifest_bytes`; default: read it now). Nothing is verified
    here: `check_signature` does that at every load."""
    sig = parent_vdir / SIGNATURE
    out = vdir / ORIGIN
    if sig.is_file():
        try:
            signature = json.loads(sig.read_text())
            raw = (
                (parent_vdir / MANIFEST).read_bytes()
                if parent_manifest is None
                else parent_manifest
            )
            text = raw.decode("utf-8")
            version = json.loads(text).get("version")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            log.warning("%s: signature not carried into %s (%s)", sig, vdir, exc)
            return None
        doc = {
            "format": ORIGIN_FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "manifest": text,
            "signature": signature,
        }
        out.write_text(json.dumps(doc, indent=2) + "\n")
        return out
    if (parent_vdir / ORIGIN).is_file():
        out.write_bytes((parent_vdir / ORIGIN).read_bytes())
        return out
    return None
