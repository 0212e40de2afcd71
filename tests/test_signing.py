"""Signed bundles (edge_agent.bundle.signing): keys, signing, verification, local adaptations under
signing, the model-build commands and `edge-agent config check`, on copies of the shipped demo
bundle."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from cli_helpers import run_build, run_cli
from waiting import wait_until

from edge_agent.bundle.layout import current_version
from edge_agent.bundle.load import load_bundle, provenance, save_backends
from edge_agent.bundle.manifest import MANIFEST, sha256_file, write_manifest_digest
from edge_agent.bundle.signing import (
    DEVICE_SEAL,
    ORIGIN,
    SIGNATURE,
    TrustedKey,
    device_public_key,
    device_signing_key,
    generate_keypair,
    load_public_keys,
    load_trust,
    sign_version,
    verify_release,
    verify_version,
)
from edge_agent.bundle.versions import prune, set_current, write_adapted_version, write_bundle
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import read_config
from edge_agent.errors import BundleError, ConfigError
from edge_agent.runtime.scorer import Scorer
from edge_agent.scoring.embedder import Embedder
from model_build.cli import main as build_main

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEMO = load_demo()
MODEL0 = "model_0.tflite"


def keypair(folder: Path, name: str) -> tuple[Path, TrustedKey]:
    """(private key file, trusted public key) of a new pair `name` in `folder`."""
    generate_keypair(folder / f"{name}.pem", folder / f"{name}.pub")
    return folder / f"{name}.pem", load_public_keys([folder / f"{name}.pub"])[0]


def device(folder: Path) -> tuple[Ed25519PrivateKey, TrustedKey]:
    """This (test) device's sealing key, made in state folder `folder`, and its public half
    as `load_trust` gives it (role `device`)."""
    private = device_signing_key(folder)
    public = device_public_key(folder)
    assert public is not None and public.role == "device"
    return private, public


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(DEMO.bundle, dst)
    return dst


def vdir_of(root: Path) -> Path:
    return root / "versions" / str(current_version(root))


def rewrite_consistently(vdir: Path, **changes: object) -> None:
    """Change the manifest and refresh its digest, as someone with write access to the folder
    (but no private key) would: every checksum agrees, only a signature can tell."""
    m = json.loads((vdir / MANIFEST).read_text())
    m.update(changes)
    (vdir / MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    write_manifest_digest(vdir)


def swap_model(vdir: Path) -> None:
    """Replace the model with other bytes and make the manifest agree (a foreign model)."""
    f = vdir / MODEL0
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    m = json.loads((vdir / MANIFEST).read_text())
    rewrite_consistently(vdir, files={**m["files"], MODEL0: sha256_file(f)})


def test_keygen_writes_a_pem_pair_and_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    (key,) = load_public_keys([tmp_path / "k.pub", tmp_path / "k.pub"])  # each key once
    assert len(key.key_id) == 16 and all(c in "0123456789abcdef" for c in key.key_id)
    before = (tmp_path / "k.pem").read_bytes()
    for private, public in (("k.pem", "new.pub"), ("new.pem", "k.pub")):
        with pytest.raises(ConfigError, match="already exists; not overwritten"):
            generate_keypair(tmp_path / private, tmp_path / public)
        assert not (tmp_path / "new.pem").exists() and not (tmp_path / "new.pub").exists()
    assert (tmp_path / "k.pem").read_bytes() == before
    with pytest.raises(ConfigError, match="does not exist"):
        generate_keypair(tmp_path / "no" / "k.pem", tmp_path / "k2.pub")


def test_bad_key_files_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, _ = keypair(tmp_path, "k")
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    ecdsa = tmp_path / "ec.pub"
    ecdsa.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for path, message in (
        (private, "is a private key"),
        (garbage, "not a PEM public key"),
        (ecdsa, "not an Ed25519 public key (a ECPublicKey)"),
        (tmp_path / "missing.pub", "key file not found"),
    ):
        with pytest.raises(ConfigError) as err:
            load_public_keys([path])
        assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"k\.pub: not a PEM private key \(a public key"):
        sign_version(tmp_path, tmp_path / "k.pub")


def test_a_signed_version_verifies_loads_and_scores(tmp_path: Path, demo_copy: Path) -> None:
    private, key = keypair(tmp_path, "k")
    vdir = vdir_of(demo_copy)
    assert sign_version(vdir, private) == vdir / SIGNATURE
    assert verify_version(vdir, [key]) == key.key_id
    b = load_bundle(demo_copy, trusted=[key])
    assert b.signed_by == key.key_id and load_bundle(demo_copy).signed_by is None
    scorer = Scorer.from_bundle(demo_copy, trusted=[key])
    wave = np.zeros(scorer.spec.clip_samples, np.float32)
    assert np.isfinite(scorer.score(wave, DEMO.section).score)
    assert load_bundle(vdir, trusted=[key]).signed_by == key.key_id  # the version dir alone


def test_unsigned_and_untrusted_versions_are_refused(tmp_path: Path, demo_copy: Path) -> None:
    private, key = keypair(tmp_path, "k")
    _, other = keypair(tmp_path, "other")
    vdir = vdir_of(demo_copy)
    with pytest.raises(BundleError) as err:
        load_bundle(demo_copy, trusted=[key])
    assert str(err.value) == (
        f"{vdir}: bundle version is not signed; the agent trusts keys {key.key_id} (sign it "
        "with model-build export --sign-key, or model-build sign)"
    )
    with pytest.raises(BundleError):
        Scorer.from_bundle(demo_copy, trusted=[key])
    assert load_bundle(demo_copy).version == 1  # no keys: as before signing existed
    sign_version(vdir, private)
    with pytest.raises(
        BundleError,
        match=rf"signed by key {key.key_id}, which the agent does "
        rf"not trust \(it trusts keys {other.key_id}\)",
    ):
        verify_version(vdir, [other])
    assert verify_version(vdir, [other, key]) == key.key_id


def test_tampered_files_and_manifests_are_refused(tmp_path: Path, demo_copy: Path) -> None:
    private, key = keypair(tmp_path, "k")
    vdir = vdir_of(demo_copy)
    sign_version(vdir, private)
    pristine = tmp_path / "pristine"
    shutil.copytree(vdir, pristine)

    def restore() -> None:
        shutil.rmtree(vdir)
        shutil.copytree(pristine, vdir)

    model = vdir / MODEL0  # a changed model byte, manifest untouched: the checksum
    data = bytearray(model.read_bytes())
    data[100] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_0\.tflite: checksum mismatch"):
        load_bundle(demo_copy, trusted=[key])
    restore()
    swap_model(vdir)  # a foreign model with a manifest that agrees: only the signature knows
    assert load_bundle(demo_copy).version == 1  # every checksum is consistent
    with pytest.raises(
        BundleError,
        match=rf"signature\.json: bad signature by key "
        rf"{key.key_id}; it was made for manifest\.json sha256 .* \(edited after "
        r"signing\); refused",
    ):
        load_bundle(demo_copy, trusted=[key])
    restore()
    m = json.loads((vdir / MANIFEST).read_text())  # an edited manifest, digest left stale
    (vdir / MANIFEST).write_text(json.dumps({**m, "sections": []}))
    with pytest.raises(BundleError, match=r"checksum mismatch with manifest\.sha256"):
        verify_version(vdir, [key])
    restore()
    doc = json.loads((vdir / SIGNATURE).read_text())  # a forged signature under a trusted id
    doc["signatures"][0]["signature"] = doc["signatures"][0]["signature"][::-1]
    (vdir / SIGNATURE).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"bad signature by key .* \(signature\.json altered"):
        verify_version(vdir, [key])
    (vdir / SIGNATURE).write_text("{")
    with pytest.raises(BundleError, match=r"signature\.json: unreadable"):
        verify_version(vdir, [key])
    restore()
    assert verify_version(vdir, [key]) == key.key_id


def test_local_adaptations_of_a_signed_version_load(tmp_path: Path, demo_copy: Path) -> None:
    """calibrate / enrol / tune keep the signed models: the new versions load with keys, even
    once the signed version itself is pruned, and even as a version directory on its own."""
    private, key = keypair(tmp_path, "k")
    seal, dev = device(tmp_path / "state")
    trust = [key, dev]
    sign_version(vdir_of(demo_copy), private)
    b1 = load_bundle(demo_copy, trusted=trust)
    tuned = {s: replace(bk, threshold=bk.threshold + 1.0) for s, bk in b1.backends.items()}
    v2 = write_adapted_version(b1, tuned, "tuning", {"threshold": 1.0}, seal)
    assert (v2 / ORIGIN).is_file() and (v2 / DEVICE_SEAL).is_file()
    assert not (v2 / SIGNATURE).exists()
    b2 = load_bundle(demo_copy, trusted=trust)
    assert (b2.version, b2.signed_by) == (2, key.key_id)
    assert b2.backend(DEMO.section).threshold == pytest.approx(
        b1.backend(DEMO.section).threshold + 1.0
    )
    v3 = write_adapted_version(b2, b2.backends, "calibration", {"section": DEMO.section}, seal)
    assert load_bundle(demo_copy, trusted=trust).version == 3
    assert prune(demo_copy, keep=1) == [1, 2]  # the signed version 1 is gone
    assert load_bundle(demo_copy, trusted=trust).signed_by == key.key_id
    assert verify_version(v3, trust) == key.key_id
    _, other = keypair(tmp_path, "other")
    with pytest.raises(BundleError, match="which the agent does not trust"):
        load_bundle(demo_copy, trusted=[other, dev])
    with pytest.raises(BundleError, match="no trusted keys to check the signature with"):
        load_bundle(demo_copy, trusted=[dev])  # a device key alone vouches for nothing


def test_an_adaptation_cannot_bring_its_own_model_or_frontend(
    tmp_path: Path, demo_copy: Path
) -> None:
    private, key = keypair(tmp_path, "k")
    seal, dev = device(tmp_path / "state")
    sign_version(vdir_of(demo_copy), private)
    b1 = load_bundle(demo_copy, trusted=[key])
    v2 = write_adapted_version(b1, b1.backends, "tuning", {}, seal)
    assert load_bundle(demo_copy, trusted=[key, dev]).version == 2
    pristine = tmp_path / "v2"
    shutil.copytree(v2, pristine)
    swap_model(v2)
    assert load_bundle(demo_copy).version == 2  # consistent checksums: loads without keys
    with pytest.raises(BundleError) as err:
        load_bundle(demo_copy, trusted=[key, dev])
    assert str(err.value).startswith(f"{v2 / MODEL0}: not the model file signed in version 1")
    assert "a model no trusted key signed never loads" in str(err.value)
    for changes, what in (
        ({"frontend": {**b1.manifest["frontend"], "spectrum_bins": 40_000}}, "frontend spec"),
        ({"components": b1.components[:1]}, "components"),
    ):
        shutil.rmtree(v2)
        shutil.copytree(pristine, v2)
        rewrite_consistently(v2, **changes)
        with pytest.raises(
            BundleError,
            match=f"a local adaptation of signed version 1, but "
            f"its {what} (is|are) not the signed ones?; refused",
        ):
            load_bundle(demo_copy, trusted=[key, dev])
    shutil.rmtree(v2)
    shutil.copytree(pristine, v2)
    origin = json.loads((v2 / ORIGIN).read_text())  # the origin's manifest, edited
    origin["manifest"] = origin["manifest"].replace('"version": 1', '"version": 9')
    (v2 / ORIGIN).write_text(json.dumps(origin))
    with pytest.raises(BundleError, match=rf"{ORIGIN}: bad signature by key"):
        load_bundle(demo_copy, trusted=[key, dev])


def never_alarms(vdir: Path, backends: dict[str, Any]) -> None:
    """Give version `vdir` thresholds no score reaches and make every checksum agree, as
    someone with write access to the folder but no key would (the silenced-fleet attack)."""
    save_backends(
        vdir / "backend.npz", {s: replace(bk, threshold=1e6) for s, bk in backends.items()}
    )
    m = json.loads((vdir / MANIFEST).read_text())
    rewrite_consistently(
        vdir, files={**m["files"], "backend.npz": sha256_file(vdir / "backend.npz")}
    )


def test_an_adapted_versions_thresholds_are_sealed_like_an_exports(
    tmp_path: Path, demo_copy: Path
) -> None:
    """A threshold written into an adapted version by someone with folder write access (every
    checksum refreshed) is refused: the device's seal covers the manifest, which covers
    backend.npz; the same edit to the exported, signed version is refused by its signature."""
    private, key = keypair(tmp_path, "k")
    seal, dev = device(tmp_path / "state")
    v1 = vdir_of(demo_copy)
    sign_version(v1, private)
    b1 = load_bundle(demo_copy, trusted=[key])
    v2 = write_adapted_version(b1, b1.backends, "tuning", {}, seal)
    for vdir in (v2, v1):
        never_alarms(vdir, b1.backends)
    assert load_bundle(demo_copy).backend(DEMO.section).threshold == 1e6  # no keys: loads
    with pytest.raises(BundleError) as err:
        load_bundle(demo_copy, trusted=[key, dev])
    assert str(err.value) == (
        f"{v2 / DEVICE_SEAL}: bad device seal ({MANIFEST} changed after "
        "the device sealed it); refused"
    )
    set_current(demo_copy, 1)
    with pytest.raises(BundleError, match=r"bad signature by key .* \(edited after signing\)"):
        load_bundle(demo_copy, trusted=[key, dev])


def test_a_carried_origin_never_vouches_for_a_version_this_device_did_not_seal(
    tmp_path: Path, demo_copy: Path
) -> None:
    """The hole of the silenced fleet: a version with no signature.json but a carried origin
    and thresholds of its own. Unsealed, sealed by another device, with a seal copied from a
    genuine version, or with a seal whose signature was forged: refused on every load; and as
    a release (verify_release), refused even when it is a genuine sealed version."""
    private, key = keypair(tmp_path, "k")
    seal, dev = device(tmp_path / "state")
    other_seal, _ = device(tmp_path / "other-device")
    sign_version(vdir_of(demo_copy), private)
    b1 = load_bundle(demo_copy, trusted=[key])
    genuine = write_adapted_version(b1, b1.backends, "tuning", {}, seal)
    assert verify_version(genuine, [key, dev]) == key.key_id
    with pytest.raises(BundleError) as err:
        verify_release(genuine, [key, dev])
    assert str(err.value) == (
        f"{genuine}: release is not signed: no {SIGNATURE} (it carries {ORIGIN}, which vouches "
        "only for versions a device adapts itself, never for a release); the agent trusts keys "
        f"{key.key_id} (sign it with model-build export --sign-key, or model-build sign)"
    )

    unsealed = write_adapted_version(b1, b1.backends, "tuning", {})  # no device key given
    never_alarms(unsealed, b1.backends)
    with pytest.raises(
        BundleError,
        match=r"a local adaptation of signed version 1, but no seal "
        rf"of this device covers it \(no {DEVICE_SEAL}\); only a version this "
        "device adapted itself loads",
    ):
        load_bundle(unsealed, trusted=[key, dev])
    with pytest.raises(BundleError, match="no seal of this device covers it"):
        load_bundle(unsealed, trusted=[key])  # a device that never adapted: no device key

    elsewhere = write_adapted_version(b1, b1.backends, "tuning", {}, other_seal)
    with pytest.raises(
        BundleError,
        match=r"sealed by device key [0-9a-f]{16}, not by this "
        rf"device's \({dev.key_id}\)",
    ):
        load_bundle(elsewhere, trusted=[key, dev])

    copied = write_adapted_version(b1, b1.backends, "tuning", {})
    never_alarms(copied, b1.backends)
    shutil.copyfile(genuine / DEVICE_SEAL, copied / DEVICE_SEAL)
    with pytest.raises(
        BundleError,
        match=rf"{DEVICE_SEAL}: bad device seal \({MANIFEST} "
        r"changed after the device sealed it\); refused",
    ):
        load_bundle(copied, trusted=[key, dev])

    forged = json.loads((copied / DEVICE_SEAL).read_text())
    forged["manifest_sha256"] = sha256_file(copied / MANIFEST)
    forged["origin_sha256"] = sha256_file(copied / ORIGIN)
    (copied / DEVICE_SEAL).write_text(json.dumps(forged))
    with pytest.raises(BundleError, match=r"bad device seal \(the seal itself was altered\)"):
        load_bundle(copied, trusted=[key, dev])

    swapped = write_adapted_version(b1, b1.backends, "tuning", {}, seal)
    (swapped / ORIGIN).write_text((swapped / ORIGIN).read_text() + " ")  # same origin, new bytes
    with pytest.raises(BundleError, match=rf"bad device seal \({ORIGIN} changed after"):
        load_bundle(swapped, trusted=[key, dev])


def test_the_device_key_is_made_once_private_and_never_vouches_for_a_release(
    tmp_path: Path, demo_copy: Path
) -> None:
    state = tmp_path / "state"
    first = device_signing_key(state)
    assert stat.S_IMODE((state / "device-signing.key").stat().st_mode) == 0o600
    again = device_signing_key(state)  # the same key, not a new one
    assert first.public_key().public_bytes_raw() == again.public_key().public_bytes_raw()
    private, key = keypair(tmp_path, "k")
    assert load_trust([], state) == []  # no trusted_keys: nothing is checked
    assert [k.role for k in load_trust([tmp_path / "k.pub"], state)] == ["release", "device"]
    # a release signed with the DEVICE key (whoever holds it) is not a release
    device_pem = state / "device-signing.key"
    sign_version(vdir_of(demo_copy), device_pem)
    with pytest.raises(BundleError, match="which the agent does not trust"):
        load_bundle(demo_copy, trusted=load_trust([tmp_path / "k.pub"], state))
    sign_version(vdir_of(demo_copy), private)
    assert (
        load_bundle(demo_copy, trusted=load_trust([tmp_path / "k.pub"], state)).signed_by
        == key.key_id
    )


def test_an_adaptation_of_an_unsigned_version_is_refused(tmp_path: Path, demo_copy: Path) -> None:
    _, key = keypair(tmp_path, "k")
    b1 = load_bundle(demo_copy)
    v2 = write_adapted_version(b1, b1.backends, "calibration", {})
    assert not (v2 / ORIGIN).exists()
    with pytest.raises(
        BundleError,
        match=r"not signed \(adapted from version 1, "
        "which was not signed then\\)",
    ):
        load_bundle(demo_copy, trusted=[key])


def test_the_real_calibrate_command_seals_what_it_makes_with_the_agents_config(
    tmp_path: Path, demo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """calibrate with the agent's config (trusted_keys) seals the new version with the
    device key in the agent's state folder: `config check` and the agent load it. The same
    calibration made without the config (no keys, so no seal) is refused by that agent."""
    private, key = keypair(tmp_path, "k")
    sign_version(vdir_of(demo_copy), private)
    state = tmp_path / "state"
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text(
        f"bundle: {demo_copy}\nsection: {DEMO.section}\ntrusted_keys: [k.pub]\n"
        f"outbox: {{path: {state / 'outbox.sqlite'}}}\n"
    )
    normal = [str(p) for c, p in zip(DEMO.clips, DEMO.paths, strict=True) if c.label == "normal"][
        :3
    ]
    code, out, err = run_cli(
        capsys, "calibrate", "--config", str(cfg_file), "--quiet", "--files", *normal
    )
    assert code == 0, err
    assert "bundle version 1 -> 2" in out
    assert (state / "device-signing.key").is_file()
    trust = load_trust([tmp_path / "k.pub"], state)
    assert load_bundle(demo_copy, trusted=trust).signed_by == key.key_id
    code, _, err = run_cli(capsys, "config", "check", str(cfg_file))
    assert code == 0, err
    code, out, err = run_cli(
        capsys,
        "calibrate",
        "--bundle",
        str(demo_copy),
        "--section",
        DEMO.section,
        "--quiet",
        "--files",
        *normal,
    )
    assert code == 0, err
    assert "bundle version 2 -> 3" in out
    code, _, err = run_cli(capsys, "config", "check", str(cfg_file))
    assert code == 2 and "no seal of this device covers it" in err, err
    code, out, err = run_cli(capsys, "calibrate", "--config", str(cfg_file), "--rollback")
    assert code == 0, err
    assert "current version 3 -> 2" in out


def test_key_rotation_signs_with_both_keys(tmp_path: Path, demo_copy: Path) -> None:
    old_private, old = keypair(tmp_path, "old")
    new_private, new = keypair(tmp_path, "new")
    vdir = vdir_of(demo_copy)
    sign_version(vdir, old_private)
    sign_version(vdir, new_private)
    sign_version(vdir, new_private)  # again: replaces its own entry
    doc = json.loads((vdir / SIGNATURE).read_text())
    assert [e["key_id"] for e in doc["signatures"]] == [old.key_id, new.key_id]
    assert verify_version(vdir, [old]) == old.key_id
    assert verify_version(vdir, [new]) == new.key_id  # the old key can be dropped


def test_a_version_signed_only_by_a_retired_key_no_longer_loads(
    tmp_path: Path, demo_copy: Path
) -> None:
    """The answer to a downgrade (someone with write access to the folder points `current` at
    an old release): once the old key leaves trusted_keys, what only it signed is refused,
    adaptations made from it included; what the new key re-signed still loads."""
    old_private, old = keypair(tmp_path, "old")
    new_private, new = keypair(tmp_path, "new")
    v1 = vdir_of(demo_copy)
    sign_version(v1, old_private)
    b1 = load_bundle(demo_copy, trusted=[old])
    a2 = write_adapted_version(b1, b1.backends, "tuning", {})  # its origin: old key only
    manifest = {k: v for k, v in b1.manifest.items() if k not in ("version", "files", "created")}
    v3 = write_bundle(
        demo_copy,
        {MODEL0: b1.path / MODEL0},
        b1.backends,
        manifest,
        finish=partial(sign_version, private_key_path=new_private),
    )
    assert load_bundle(demo_copy, trusted=[new]).signed_by == new.key_id
    set_current(demo_copy, 1)  # the downgrade: while the old key is trusted, it works
    assert load_bundle(demo_copy, trusted=[old, new]).signed_by == old.key_id
    for version, where in ((1, v1 / SIGNATURE), (2, a2 / ORIGIN)):
        set_current(demo_copy, version)
        with pytest.raises(BundleError) as err:
            Scorer.from_bundle(demo_copy, trusted=[new])
        assert str(err.value) == (
            f"{where}: signed by key {old.key_id}, which the agent does not trust (it trusts "
            f"keys {new.key_id}); add the key to trusted_keys or re-sign"
        )
    sign_version(v1, new_private)  # re-signed with the new key: installable again, on purpose
    set_current(demo_copy, 1)
    assert load_bundle(demo_copy, trusted=[new]).signed_by == new.key_id
    assert verify_version(v3, [new]) == new.key_id


def _scores(scorer: Scorer, n: int = 3) -> list[float]:
    rng = np.random.default_rng(7)
    return [
        scorer.score(
            0.03 * rng.standard_normal(scorer.spec.clip_samples).astype(np.float32), DEMO.section
        ).score
        for _ in range(n)
    ]


def test_the_scorer_runs_the_checked_bytes_not_the_files(tmp_path: Path, demo_copy: Path) -> None:
    """Files swapped after the check (someone watching the folder with inotify) are never
    used: the loaded bundle holds the checked model bytes and backend, and the interpreter is
    built from those bytes, not by reopening the path."""
    private, key = keypair(tmp_path, "k")
    vdir = vdir_of(demo_copy)
    sign_version(vdir, private)
    before = _scores(Scorer.from_bundle(demo_copy, trusted=[key]))
    b = load_bundle(demo_copy, trusted=[key])
    model = (vdir / MODEL0).read_bytes()
    assert b.model_content == {MODEL0: model}
    assert b.manifest_bytes == (vdir / MANIFEST).read_bytes()
    assert b.manifest_sha256 == json.loads((vdir / SIGNATURE).read_text())["manifest_sha256"]
    for name in (MODEL0, "backend.npz", MANIFEST):  # the swap, between load and interpreter
        (vdir / name).write_bytes(b"swapped")
    with pytest.raises(BundleError, match=r"not a TFLite model"):  # a reopen would see it
        Embedder(vdir / MODEL0, b.input_names)
    scorer = Scorer.from_loaded(b)
    assert _scores(scorer) == before
    shutil.rmtree(vdir)  # nothing of the version is on disk any more: it still scores
    assert _scores(scorer) == before
    with pytest.raises(BundleError, match="version 1 missing"):
        load_bundle(demo_copy, trusted=[key])
    unverified = load_bundle(DEMO.bundle, verify=False)  # verify=False stays cheap: no bytes
    assert unverified.model_content == {}
    assert _scores(Scorer.from_loaded(unverified)) == before  # ... and reads the file


class _Opens:
    """The files Python opens while a test records (an audit hook, `_record_opens`)."""

    paths: list[str] | None = None  # None: not recording
    hooked = False  # an audit hook cannot be removed: it is added once per process


def _record_opens(event: str, args: tuple[object, ...]) -> None:
    if _Opens.paths is not None and event == "open" and isinstance(args[0], str | bytes | Path):
        _Opens.paths.append(os.fsdecode(args[0]))


def test_a_verifying_load_reads_each_file_once(tmp_path: Path, demo_copy: Path) -> None:
    """manifest.json is read once: its digest, its signature and the manifest the load
    follows come from the same bytes (with two reads, a manifest swapped in between would
    be checked as one file and loaded as another). Every other file is read once too."""
    private, key = keypair(tmp_path, "k")
    vdir = vdir_of(demo_copy)
    sign_version(vdir, private)
    if not _Opens.hooked:
        sys.addaudithook(_record_opens)  # observes the real opens; replaces nothing
        _Opens.hooked = True
    _Opens.paths = []
    try:
        load_bundle(demo_copy, trusted=[key])
        opened = [Path(p).name for p in _Opens.paths if Path(p).parent == vdir]
    finally:
        _Opens.paths = None
    assert sorted(opened) == sorted(
        [MANIFEST, "manifest.sha256", MODEL0, "backend.npz", "self_test.npz", SIGNATURE]
    )


def test_write_bundle_signs_before_the_version_appears(tmp_path: Path, demo_copy: Path) -> None:
    """What `model-build export --sign-key` does: the version is renamed into place signed."""
    private, key = keypair(tmp_path, "k")
    b = load_bundle(demo_copy)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    seen: list[bool] = []

    def sign_and_look(d: Path) -> None:
        sign_version(d, private)
        seen.append(d.name.startswith(".tmp-") and current_version(demo_copy) == 1)

    vdir = write_bundle(
        demo_copy, {MODEL0: b.path / MODEL0}, b.backends, manifest, finish=sign_and_look
    )
    assert seen == [True] and current_version(demo_copy) == 2
    assert load_bundle(demo_copy, trusted=[key]).signed_by == key.key_id
    signed = partial(sign_version, private_key_path=private)
    assert (
        write_bundle(demo_copy, {MODEL0: b.path / MODEL0}, b.backends, manifest, finish=signed).name
        == "3"
    )
    assert verify_version(vdir_of(demo_copy), [key]) == key.key_id and vdir.name == "2"


def test_model_build_keygen_and_sign(
    tmp_path: Path, demo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def build(*args: str) -> tuple[int, str, str]:
        return run_build(capsys, *args)

    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    code, out, err = build("keygen", "--private", str(private), "--public", str(public))
    assert code == 0, err
    key = load_public_keys([public])[0]
    assert out.strip() == (
        f"wrote {private} (private, mode 0600) and {public} (public, key id {key.key_id})"
    )
    code, _, err = build("keygen", "--private", str(private), "--public", str(tmp_path / "x"))
    assert code == 2 and err.strip() == (
        f"error: {private}: already exists; not overwritten (remove it or pick another name)"
    )
    code, out, err = build("sign", str(demo_copy), "--key", str(private))
    assert code == 0, err
    assert out.strip() == f"signed {vdir_of(demo_copy)} with key {key.key_id} (signature.json)"
    assert load_bundle(demo_copy, trusted=[key]).signed_by == key.key_id
    code, _, err = build("sign", str(demo_copy), "--key", str(public))
    assert code == 2 and err.startswith(f"error: {public}: not a PEM private key")
    code, _, err = build("sign", str(demo_copy), "--version", "5", "--key", str(private))
    assert code == 2 and "version 5 missing" in err
    swap_model(vdir_of(demo_copy))
    (vdir_of(demo_copy) / MODEL0).write_bytes(b"x")  # never signs files that do not match
    code, _, err = build("sign", str(demo_copy), "--key", str(private))
    assert code == 2 and "model_0.tflite: checksum mismatch" in err
    code, _, err = build(
        "export", str(tmp_path / "run"), "--out", str(tmp_path / "b"), "--sign-key", str(public)
    )  # the key is checked before the run
    assert code == 2 and err.startswith(f"error: {public}: not a PEM private key"), err


def test_trusted_keys_in_the_config_and_config_check(
    tmp_path: Path, demo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, key = keypair(tmp_path, "k")
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text(f"bundle: {demo_copy}\nsection: {DEMO.section}\ntrusted_keys: [k.pub]\n")
    cfg = read_config(cfg_file)
    assert cfg.trusted_keys == (str(tmp_path / "k.pub"),)  # resolved against the config's folder
    code, _, err = run_cli(capsys, "config", "check", str(cfg_file))
    assert code == 2
    assert err.strip() == (
        f"error: {vdir_of(demo_copy)}: bundle version is not signed; the "
        f"agent trusts keys {key.key_id} (sign it with model-build export "
        "--sign-key, or model-build sign)"
    )
    sign_version(vdir_of(demo_copy), private)
    code, out, err = run_cli(capsys, "config", "check", "--show", str(cfg_file))
    assert code == 0, err
    assert "trusted_keys:\n- " + str(tmp_path / "k.pub") in out
    for value, message in (
        ("[k.pub, nowhere.pub]", r"trusted_keys\[1\]: file not found"),
        ("['']", r"trusted_keys\[0\]: expected a public key file"),
        ("5", "trusted_keys: expected a list"),
    ):
        cfg_file.write_text(f"bundle: {demo_copy}\nsection: s\ntrusted_keys: {value}\n")
        with pytest.raises(ConfigError, match=message):
            read_config(cfg_file)
    cfg_file.write_text(f"bundle: {demo_copy}\nsection: {DEMO.section}\ntrusted_keys: k.pem\n")
    code, _, err = run_cli(capsys, "config", "check", str(cfg_file))
    assert code == 2 and err.startswith(f"error: {tmp_path / 'k.pem'}: is a private key")


@pytest.mark.slow
def test_model_build_export_sign_key_signs_the_exported_version(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, key = keypair(tmp_path, "k")
    out = tmp_path / "bundle"
    code: object = 0
    try:
        build_main(
            [
                "export",
                str(trained_run),
                "--out",
                str(out),
                "--quantize",
                "float32",
                "--no-classical",
                "--sign-key",
                str(private),
            ]
        )
    except SystemExit as exc:
        code = exc.code
    assert not code, capsys.readouterr().err
    assert "sections, signed)" in capsys.readouterr().out
    assert load_bundle(out, trusted=[key]).signed_by == key.key_id


def test_the_agent_keeps_its_signed_model_when_an_unsigned_version_appears(
    tmp_path: Path,
    demo_copy: Path,
) -> None:
    """The running agent with trusted_keys: an unsigned new version is refused at reload (a
    reload_failed health event saying so) and the signed model keeps scoring; once the version
    is signed, a reload (SIGHUP's request_reload) swaps it in."""
    import threading

    from collect_sink import Collect

    from edge_agent.agent import Agent
    from edge_agent.config.load import load_config

    private, _ = keypair(tmp_path, "k")
    sign_version(vdir_of(demo_copy), private)
    cfg = load_config(
        None,
        {
            "bundle": str(demo_copy),
            "section": DEMO.section,
            "source.kind": "files",
            "source.files": [str(DEMO.paths[0])],
            "source.loop": True,  # as fast as it scores
            "log.stdout": False,
            "reload_poll_seconds": 0.1,
            "trusted_keys": [str(tmp_path / "k.pub")],
        },
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    v1 = agent.running_version()
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()

    try:
        assert wait_until(lambda: bool(c.kind("score")))
        b = load_bundle(demo_copy)
        manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
        v2 = write_bundle(
            demo_copy, {n: b.path / n for n in b.model_files}, b.backends, manifest
        )  # unsigned, and current
        assert wait_until(lambda: any(e["event"] == "reload_failed" for e in c.kind("health")))
        n = len(c.kind("score"))
        assert wait_until(lambda: len(c.kind("score")) >= n + 2)  # still scoring, the old model
        assert agent.counters["reloads"] == 0 and agent.running_version() == v1
        sign_version(v2, private)
        agent.request_reload()
        assert wait_until(lambda: agent.counters["reloads"] == 1)
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()
    (failed,) = [e for e in c.kind("health") if e["event"] == "reload_failed"]
    assert "is not signed" in failed["error"] and "\n" not in failed["error"]
    assert agent.running_version() != v1 and agent.running_version().startswith("v2-")


def test_local_rollback_never_activates_a_version_the_keys_refuse(
    tmp_path: Path,
    demo_copy: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`edge-agent tune --rollback` with trusted_keys: the older, unsigned version would not
    load in the agent, so the rollback is refused and `current` stays."""
    private, _ = keypair(tmp_path, "k")
    b = load_bundle(demo_copy)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    v2 = write_bundle(demo_copy, {n: b.path / n for n in b.model_files}, b.backends, manifest)
    sign_version(v2, private)  # v2 signed and current, v1 not signed
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"bundle: {demo_copy}\ntrusted_keys: [{tmp_path / 'k.pub'}]\n")
    code, _, err = run_cli(capsys, "tune", "-c", str(cfg), "--rollback")
    assert code == 2 and "is not signed" in err and len(err.strip().splitlines()) == 1
    assert current_version(demo_copy) == 2
    code, out, _ = run_cli(capsys, "tune", "--bundle", str(demo_copy), "--rollback")  # no keys
    assert code == 0 and "current version 2 -> 1" in out and current_version(demo_copy) == 1


@dataclass
class Forged:
    """A signed demo bundle (v1, current), this device's sealing key in `state`, and v2: the
    forged version of the silenced fleet (a carried origin, no seal of this device, thresholds
    of 1e6, every checksum right); `cfg_file` is the agent's config (trusted_keys, state)."""

    root: Path
    key: TrustedKey
    dev: TrustedKey
    seal: Ed25519PrivateKey
    state: Path
    cfg_file: Path


REFUSAL = "no seal of this device covers it"


@pytest.fixture
def forged(tmp_path: Path, demo_copy: Path) -> Forged:
    private, key = keypair(tmp_path, "k")
    state = tmp_path / "state"
    seal, dev = device(state)
    sign_version(vdir_of(demo_copy), private)
    b1 = load_bundle(demo_copy, trusted=[key])
    v2 = write_adapted_version(b1, b1.backends, "tuning", {})  # unsealed
    never_alarms(v2, b1.backends)
    set_current(demo_copy, 1)
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text(
        f"bundle: {demo_copy}\nsection: {DEMO.section}\ntrusted_keys: [k.pub]\n"
        f"outbox: {{path: {state / 'outbox.sqlite'}}}\n"
    )
    return Forged(demo_copy, key, dev, seal, state, cfg_file)


def test_start_and_hot_reload_refuse_a_forged_adaptation(
    forged: Forged,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The running agent keeps its trusted version when the forged one is made current (a
    one-line reload_failed); a start on it and `config check` refuse it."""
    import threading

    from collect_sink import Collect

    from edge_agent.agent import Agent
    from edge_agent.config.load import load_config

    cfg = load_config(
        forged.cfg_file,
        {
            "source.kind": "files",
            "source.files": [str(DEMO.paths[0])],
            "source.loop": True,
            "log.stdout": False,
            "reload_poll_seconds": 0.1,
        },
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    v1 = agent.running_version()
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        assert wait_until(lambda: bool(c.kind("score")))
        set_current(forged.root, 2)
        assert wait_until(lambda: any(e["event"] == "reload_failed" for e in c.kind("health")))
        n = len(c.kind("score"))
        assert wait_until(lambda: len(c.kind("score")) >= n + 2)
        assert agent.running_version() == v1
        assert all(e["threshold"] < 100 for e in c.kind("score"))
    finally:
        agent.stop()
        t.join(30)
    (failed,) = [e for e in c.kind("health") if e["event"] == "reload_failed"]
    assert REFUSAL in failed["error"] and "\n" not in failed["error"]
    with pytest.raises(BundleError, match=REFUSAL):
        Agent(load_config(forged.cfg_file))
    code, _, err = run_cli(capsys, "config", "check", str(forged.cfg_file))
    assert code == 2 and REFUSAL in err and len(err.strip().splitlines()) == 1


def test_adapting_and_rolling_back_refuse_a_forged_adaptation(
    forged: Forged,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """calibrate, enrol and tune refuse to adapt the forged version (nothing written); the
    local and the fleet's rollback refuse to make it current and leave `current` alone."""
    from edge_agent.fleet.install import roll_back
    from edge_agent.fleet.state import FleetState

    root, cfg_file = forged.root, str(forged.cfg_file)
    set_current(root, 2)
    normal = [str(p) for c, p in zip(DEMO.clips, DEMO.paths, strict=True) if c.label == "normal"][
        :3
    ]
    for args in (
        ("calibrate", "--config", cfg_file, "--quiet", "--files", *normal),
        (
            "enrol",
            "--config",
            cfg_file,
            "--section",
            "press_section_00",
            "--quiet",
            "--files",
            *normal,
        ),
        ("tune", "--config", cfg_file, "--false-alarms-per-day", "1", "--yes"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and REFUSAL in err, (args, err)
        assert list_versions_of(root) == ["1", "2"]
    # v3 sealed (parent 1), v4 sealed (parent 3) and current; v2 is the forged one
    b1 = load_bundle(root, version=1)
    v3 = write_adapted_version(b1, b1.backends, "tuning", {}, forged.seal)
    write_adapted_version(load_bundle(root, version=3), b1.backends, "tuning", {}, forged.seal)
    assert load_bundle(root, trusted=[forged.key, forged.dev]).version == 4
    code, out, err = run_cli(capsys, "tune", "--config", cfg_file, "--rollback")
    assert code == 0 and "current version 4 -> 3" in out, err  # its sealed parent: fine
    set_current(root, 4)
    shutil.rmtree(v3)  # now the next lower kept version below 4 is the forged 2
    with pytest.raises(BundleError) as err_rb:
        roll_back(root, FleetState(forged.state, 10), [forged.key, forged.dev])
    assert "rollback to version 2 refused, version 4 stays current" in str(err_rb.value)
    assert REFUSAL in str(err_rb.value) and current_version(root) == 4
    code, _, err = run_cli(capsys, "calibrate", "--config", cfg_file, "--rollback")
    assert code == 2 and REFUSAL in err and current_version(root) == 4


def list_versions_of(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "versions").iterdir() if p.name.isdigit())


def test_every_load_says_what_vouches_for_the_version(tmp_path: Path, demo_copy: Path) -> None:
    """`provenance`, the line the agent logs at start and at every reload: an adapted version
    names its last change and threshold move; no keys says nothing is checked."""
    private, key = keypair(tmp_path, "k")
    seal, dev = device(tmp_path / "state")
    sign_version(vdir_of(demo_copy), private)
    b1 = load_bundle(demo_copy, trusted=[key, dev])
    assert provenance(b1, []).endswith(
        "signatures not checked (no trusted_keys): whoever can "
        "write the bundle folder decides what this agent runs"
    )
    assert provenance(b1, [key, dev]).endswith(f": signed by key {key.key_id}")
    moved = {s: replace(bk, threshold=3.25) for s, bk in b1.backends.items()}
    write_adapted_version(
        b1,
        moved,
        "tuning",
        {"section": DEMO.section, "old_threshold": 2.0, "new_threshold": 3.25},
        seal,
    )
    b2 = load_bundle(demo_copy, trusted=[key, dev])
    assert provenance(b2, [key, dev]) == (
        f"bundle {demo_copy} version 2 ({b2.model_version}): adapted on this device (1 "
        f"change(s); last: tuning from version 1, section {DEMO.section} threshold 2 -> 3.25), "
        f"sealed by this device, models signed by key {key.key_id}"
    )
    # the id digests the thresholds too: another threshold, another id; the same content, the
    # same id (the same models and backend written again)
    assert b2.model_version[3:] != b1.model_version[3:]
    v3 = write_adapted_version(b1, b1.backends, "tuning", {}, seal)
    assert load_bundle(v3).model_version == b1.model_version.replace("v1-", "v3-")


def test_an_agent_without_trusted_keys_never_imports_cryptography(tmp_path: Path) -> None:
    """`cryptography` costs ~6 MB resident (BENCHMARKS.md, "One machine's agent as deployed"):
    it is imported only where a key is read or a signature checked, so an agent with no
    `trusted_keys` (a new process: this one has imported it) starts on the demo bundle and
    scores without it."""
    code = f"""
import sys
from edge_agent.agent import Agent
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import load_config
demo = load_demo()
cfg = load_config(None, {{
    "bundle": str(demo.bundle), "section": demo.section,
    "source": {{"kind": "files", "files": [str(demo.paths[0])]}},
    "outbox": {{"path": "{tmp_path}/outbox.sqlite"}}, "log": {{"stdout": False}},
}})
agent = Agent(cfg, sinks=[])
agent.run()
crypto = any(m.split(".")[0] == "cryptography" for m in sys.modules)
print(agent.scorer.bundle.model_version, crypto)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    version, loaded = out.stdout.split()[-2:]
    assert version.startswith("v1-") and loaded == "False", out.stdout + out.stderr
