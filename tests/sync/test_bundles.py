"""Signed update bundles: one test per update threat, each proving the exact rejection code
and that the cart's state (bundle store file + staging directory) is byte-identical after
the rejected offer. Plus the happy path, rollback, and a byte-flip property test."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.sync.bundles import (
    BUNDLE_DOMAIN,
    CERTIFICATE_DOMAIN,
    MAX_VERSION,
    BundleRejected,
    BundleStore,
    BundleStoreError,
    Caps,
    KeyCertificate,
    Manifest,
    Outcome,
    PartSpec,
    SigningKey,
    build_manifest,
    canonical_json,
    generate_private_key,
    issue_certificate,
    issue_signing_key,
    private_key_from_pem,
    public_key_hex,
    sign_manifest,
    sign_revocations,
)
from cartos.sync.bundles import keys as keys_mod
from cartos.sync.bundles import verify as verify_mod
from cartos.sync.bundles.manifest import MIB
from cartos.sync.errors import BUNDLE_REJECT_REASONS

NOW = 1_800_000_000
DAY = 86_400
STORE = "s042"


class World:
    """A cart's bundle store and staging directory, a hub root key and one signing key."""

    def __init__(self, tmp: Path, *, health: Callable[[Manifest], bool] | None = None) -> None:
        self.tmp = tmp
        self.now = NOW
        self.root = generate_private_key()
        self.key = issue_signing_key(
            self.root, "hub-2026a", not_before=NOW - 30 * DAY, not_after=NOW + 365 * DAY
        )
        self.db = tmp / "bundles.db"
        self.staging = tmp / "staging"
        self.staging.mkdir(exist_ok=True)
        self.applied: list[tuple[str, int]] = []
        self.restored: list[tuple[int | None, dict[str, bytes]]] = []
        self.fail_apply = False
        self.health = health
        self.store = self.open()

    def open(self) -> BundleStore:
        return BundleStore(
            self.db,
            root_key=public_key_hex(self.root),
            store_id=STORE,
            apply=self._apply,
            restore=self._restore,
            health_check=self.health,
            certificates=[self.key.certificate_envelope],
            clock=lambda: self.now,
        )

    def _apply(
        self, manifest: Manifest, parts: Mapping[str, bytes], conn: sqlite3.Connection
    ) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cart_rows (type TEXT, name TEXT, version INT, data BLOB)"
        )
        conn.execute("DELETE FROM cart_rows WHERE type = ?", (manifest.type,))
        for name, data in parts.items():
            conn.execute(
                "INSERT INTO cart_rows VALUES (?, ?, ?, ?)",
                (manifest.type, name, manifest.version, data),
            )
        if self.fail_apply:
            raise ValueError("catalogue rows do not parse")
        self.applied.append((manifest.type, manifest.version))

    def _restore(
        self, _current: Manifest, manifest: Manifest | None, parts: Mapping[str, bytes],
        conn: sqlite3.Connection,
    ) -> None:
        conn.execute("DELETE FROM cart_rows")
        if manifest is not None:
            for name, data in parts.items():
                conn.execute(
                    "INSERT INTO cart_rows VALUES (?, ?, ?, ?)",
                    (manifest.type, name, manifest.version, data),
                )
        self.restored.append((manifest.version if manifest else None, dict(parts)))

    def manifest(
        self,
        version: int = 1,
        *,
        key: SigningKey | None = None,
        bundle_type: str = "catalogue",
        store: str = STORE,
        issued_at: int | None = None,
        expires_at: int | None = None,
        parts: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> tuple[Manifest, dict[str, bytes]]:
        parts = parts if parts is not None else default_parts(version)
        manifest = build_manifest(
            bundle_type=bundle_type,
            store=store,
            version=version,
            issued_at=NOW - 60 if issued_at is None else issued_at,
            expires_at=NOW + 7 * DAY if expires_at is None else expires_at,
            key_id=(key or self.key).key_id,
            parts=parts,
        )
        return manifest, {manifest.part_ref(n): data for n, (_, data) in parts.items()}

    def bundle(self, version: int = 1, **kw: Any) -> tuple[bytes, dict[str, bytes]]:
        key: SigningKey = kw.get("key") or self.key
        manifest, parts = self.manifest(version, **kw)
        return key.sign(manifest), parts

    def digest(self) -> str:
        """SHA-256 of the whole cart-side state: bundle store file and staging tree."""
        self.store.checkpoint()
        h = hashlib.sha256()
        h.update(self.db.read_bytes())
        wal = self.db.with_name(self.db.name + "-wal")
        h.update(str(wal.stat().st_size if wal.exists() else 0).encode())
        for path in sorted(self.staging.rglob("*")):
            h.update(str(path.relative_to(self.staging)).encode() + b"\0")
            if path.is_file():
                h.update(path.read_bytes())
        return h.hexdigest()

    def rejects(
        self, envelope: bytes, parts: Mapping[str, Any], reason: str, status: str = "rejected"
    ) -> Outcome:
        """Offer, expecting ``reason``; the state must not change by a single byte."""
        assert reason in BUNDLE_REJECT_REASONS
        before = self.digest()
        holding = self.store.holding()
        outcome = self.store.offer(envelope, parts)
        assert (outcome.status, outcome.reason) == (status, reason), outcome
        assert not outcome.accepted
        assert self.store.holding() == holding
        assert self.digest() == before
        return outcome


def default_parts(version: int) -> dict[str, tuple[str, bytes]]:
    return {
        "rows": ("catalogue_rows", b'{"sku":"A1","v":%d}\n' % version * 40),
        "thresholds": ("thresholds", b'{"tau":0.42,"v":%d}' % version),
    }


def sign_raw(key: SigningKey, manifest_text: bytes, *, alg: bytes = b'"Ed25519"') -> bytes:
    """An envelope around arbitrary manifest text, validly signed over exactly that text:
    what a holder of a real signing key could send, so schema checks must catch it."""
    sig = keys_mod.sign(key.private_key, BUNDLE_DOMAIN, manifest_text)
    return (
        b'{"alg":'
        + alg
        + b',"manifest":'
        + manifest_text
        + b',"signature":"'
        + sig.hex().encode()
        + b'"}'
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def _accept(world: World, version: int, **kw: Any) -> tuple[bytes, dict[str, bytes]]:
    envelope, parts = world.bundle(version, **kw)
    outcome = world.store.offer(envelope, parts)
    assert outcome.status == "applied", outcome
    return envelope, parts


# -- happy path ------------------------------------------------------------------------------


def test_happy_path_applies_records_and_survives_reopen(world: World) -> None:
    assert world.store.holding() == []
    _accept(world, 41)
    _envelope, parts = _accept(world, 42)
    assert world.applied == [("catalogue", 41), ("catalogue", 42)]
    assert world.store.holding() == [{"store": STORE, "type": "catalogue", "version": 42}]
    current, previous = world.store.current("catalogue"), world.store.previous("catalogue")
    assert current is not None and previous is not None
    assert (current.version, previous.version) == (42, 41)
    stored = world.store.parts_of(current)
    assert {current.part_ref(n): d for n, d in stored.items()} == parts
    world.store.close()
    world.store = world.open()
    assert world.store.holding() == [{"store": STORE, "type": "catalogue", "version": 42}]
    assert world.store.high_water("catalogue") == 42
    # The certificate was persisted: a bundle verifies after reopening.
    _accept(world, 43)


def test_types_are_versioned_independently(world: World) -> None:
    _accept(world, 7)
    _accept(
        world,
        1,
        bundle_type="model",
        parts={
            "net": ("model", b"\x00tflite" * 100),
            "card": ("model_card", b'{"name":"lite0"}'),
        },
    )
    assert world.store.holding() == [
        {"store": STORE, "type": "catalogue", "version": 7},
        {"store": STORE, "type": "model", "version": 1},
    ]


def test_signing_key_pem_round_trip(world: World) -> None:
    loaded = private_key_from_pem(world.key.private_pem(b"pw"), b"pw")
    assert public_key_hex(loaded) == world.key.certificate.public_key


# -- one test per threat -----------------------------------------------------------------------


def test_tampered_part(world: World) -> None:
    envelope, parts = world.bundle(1)
    ref = next(iter(parts))
    flipped = bytearray(parts[ref])
    flipped[3] ^= 0x01
    world.rejects(envelope, {**parts, ref: bytes(flipped)}, "tampered_part")
    world.rejects(envelope, {**parts, ref: parts[ref][:-1]}, "tampered_part")
    del parts[ref]
    world.rejects(envelope, parts, "missing_part")


def test_wrong_key(world: World, tmp_path: Path) -> None:
    manifest, parts = world.manifest(1)
    # A key the root never certified, claiming the real key's id.
    forged = sign_manifest(manifest, generate_private_key())
    world.rejects(forged, parts, "bad_signature")
    # A key the root never certified, under its own id.
    rogue_root = generate_private_key()
    rogue = issue_signing_key(rogue_root, "rogue", not_before=NOW - DAY, not_after=NOW + DAY)
    world.rejects(*world.bundle(1, key=rogue), "unknown_key")
    # Its certificate, signed by another root, does not install (and changes nothing).
    before = world.digest()
    with pytest.raises(BundleRejected) as info:
        world.store.install_certificate(rogue.certificate_envelope)
    assert info.value.reason == "bad_certificate"
    assert world.digest() == before
    world.rejects(*world.bundle(1, key=rogue), "unknown_key")


def test_unsigned(world: World) -> None:
    manifest, parts = world.manifest(1)
    world.rejects(manifest.canonical(), parts, "unsigned")
    world.rejects(
        canonical_json({"alg": "Ed25519", "manifest": manifest.to_dict()}), parts, "unsigned"
    )
    world.rejects(
        canonical_json({"alg": "Ed25519", "manifest": manifest.to_dict(), "signature": ""}),
        parts,
        "unsigned",
    )
    world.rejects(
        canonical_json({"alg": "Ed25519", "manifest": manifest.to_dict(), "signature": None}),
        parts,
        "unsigned",
    )


@pytest.mark.parametrize(
    "alg",
    [
        b'"ed25519"',
        b'"EdDSA"',
        b'"HS256"',
        b'"none"',
        b'""',
        b"null",
        b'["Ed25519"]',
        b'"Ed25519 "',
        b'"Ed448"',
    ],
)
def test_algorithm_confusion(world: World, alg: bytes) -> None:
    manifest, parts = world.manifest(1)
    world.rejects(sign_raw(world.key, manifest.canonical(), alg=alg), parts, "algorithm")


def test_algorithm_missing(world: World) -> None:
    manifest, parts = world.manifest(1)
    envelope = json.loads(world.key.sign(manifest))
    del envelope["alg"]
    world.rejects(canonical_json(envelope), parts, "algorithm")


def _text(manifest: Manifest) -> str:
    return manifest.canonical().decode()


def _upper_first_sha(text: str) -> str:
    found = re.search(r'"sha256":"([0-9a-f]{64})"', text)
    assert found is not None
    return text[: found.start(1)] + found.group(1).upper() + text[found.end(1) :]


FIELD_CONFUSIONS: dict[str, Callable[[str], str]] = {
    "version as string": lambda t: t.replace('"version":3', '"version":"3"'),
    "version as float": lambda t: t.replace('"version":3', '"version":3.0'),
    "version in exponent form": lambda t: t.replace('"version":3', '"version":3e0'),
    "version as boolean": lambda t: t.replace('"version":3', '"version":true'),
    "version as NaN": lambda t: t.replace('"version":3', '"version":NaN'),
    "version as list": lambda t: t.replace('"version":3', '"version":[3]'),
    "version with leading zero": lambda t: t.replace('"version":3', '"version":03'),
    "negative zero issued_at": lambda t: t.replace(f'"issued_at":{NOW - 60}', '"issued_at":-0'),
    "size as string": lambda t: t.replace('"size":20', '"size":"20"', 1),
    "size negative": lambda t: t.replace('"size":20', '"size":-20', 1),
    "expires_at as float": lambda t: t.replace(
        f'"expires_at":{NOW + 7 * DAY}', '"expires_at":1.8e9'
    ),
    "extra manifest field": lambda t: t.replace('"key_id"', '"debug":true,"key_id"'),
    "extra part field": lambda t: t.replace('"kind"', '"compressed":false,"kind"', 1),
    "duplicate version key": lambda t: t.replace('"version":3', '"version":3,"version":4'),
    "duplicate part name key": lambda t: t.replace('"name"', '"name":"x","name"', 1),
    "missing store": lambda t: t.replace('"store":"s042",', ""),
    "unknown part kind": lambda t: t.replace('"kind":"thresholds"', '"kind":"shell_script"'),
    "upper-case sha256": _upper_first_sha,
    "store with slash": lambda t: t.replace('"store":"s042"', '"store":"s042/../s043"'),
    "whitespace (not canonical)": lambda t: t.replace('"version":3', '"version": 3'),
    "escaped key (not canonical)": lambda t: t.replace('"version"', '"\\u0076ersion"'),
    "manifest as string": lambda t: json.dumps(t),
    "parts empty": lambda t: t[: t.index('"parts":') + 8] + "[]" + t[t.index(',"store"') :],
}


@pytest.mark.parametrize("mutation", list(FIELD_CONFUSIONS))
def test_field_and_type_confusion(world: World, mutation: str) -> None:
    manifest, parts = world.manifest(
        3,
        parts={
            "rows": ("catalogue_rows", b"x" * 20),
            "thresholds": ("thresholds", b"t" * 20),
        },
    )
    text = _text(manifest)
    mutated = FIELD_CONFUSIONS[mutation](text)
    assert mutated != text, "mutation did not apply"
    # Validly signed by a certified key: only the strict schema stands in the way.
    world.rejects(sign_raw(world.key, mutated.encode()), parts, "malformed")


def test_extra_envelope_field_and_nested_certificate(world: World) -> None:
    manifest, parts = world.manifest(1)
    envelope = json.loads(world.key.sign(manifest))
    world.rejects(canonical_json({**envelope, "key_id": "hub-2026a"}), parts, "malformed")
    # A certificate presented where a manifest belongs.
    cert_body = json.loads(world.key.certificate_envelope)["certificate"]
    world.rejects(sign_raw(world.key, canonical_json(cert_body)), parts, "malformed")
    # Upper-case hex signature: same bytes, other spelling.
    world.rejects(
        canonical_json({**envelope, "signature": envelope["signature"].upper()}), parts, "malformed"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
        b'{"alg":"Ed25519","manifest":{"store":"\\ud800"},"signature":"' + b"a" * 128 + b'"}',
        b"9" * 5000,
        b"",
    ],
    ids=["deep-list", "deep-object", "not-utf8", "bom", "lone-surrogate", "huge-int", "empty"],
)
def test_hostile_json_is_malformed_not_a_crash(world: World, payload: bytes) -> None:
    world.rejects(payload, {}, "malformed")


def test_older_version(world: World) -> None:
    _accept(world, 5)
    world.rejects(*world.bundle(4), "older_version")
    world.rejects(*world.bundle(1), "older_version")


def test_replay(world: World) -> None:
    envelope, parts = _accept(world, 5)
    world.rejects(envelope, parts, "replay")
    # Same version, different content (equivocation) is a replay too.
    world.rejects(*world.bundle(5, parts={"rows": ("catalogue_rows", b"other")}), "replay")


def test_expired_is_no_update_never_an_exception(world: World) -> None:
    _accept(world, 1)
    envelope, parts = world.bundle(2, issued_at=NOW - 10 * DAY, expires_at=NOW - DAY)
    outcome = world.rejects(envelope, parts, "expired", status="no_update")
    assert outcome.status == "no_update"
    # Expiry is exact: at expires_at it is already expired.
    world.rejects(*world.bundle(2, issued_at=NOW - DAY, expires_at=NOW), "expired", "no_update")
    with pytest.raises(BundleRejected) as info:
        world.store.check(envelope)
    assert info.value.no_update
    assert world.store.holding() == [{"store": STORE, "type": "catalogue", "version": 1}]


def test_issued_in_the_future(world: World) -> None:
    world.rejects(*world.bundle(1, issued_at=NOW + 3600, expires_at=NOW + DAY), "not_yet_valid")
    # Within the clock skew it is fine.
    _accept(world, 1, issued_at=NOW + 60, expires_at=NOW + DAY)


def test_wrong_store(world: World) -> None:
    world.rejects(*world.bundle(1, store="s043"), "wrong_store")


def test_parts_from_two_bundles_mixed(world: World) -> None:
    env_a, parts_a = world.bundle(7)
    _env_b, parts_b = world.bundle(8)
    ref_a = next(iter(parts_a))
    ref_b = next(iter(parts_b))
    # A part labelled with the other bundle: caught by its label, bytes never looked at.
    mixed = {ref_b: parts_b[ref_b], **{r: d for r, d in parts_a.items() if r != ref_a}}
    world.rejects(env_a, mixed, "mixed_parts")
    world.rejects(env_a, {**parts_a, ref_b: parts_b[ref_b]}, "mixed_parts")
    # The other bundle's bytes relabelled as this bundle's part: caught by the signed sha256.
    assert parts_a[ref_a] != parts_b[ref_b]
    world.rejects(env_a, {**parts_a, ref_a: parts_b[ref_b]}, "tampered_part")
    _accept(world, 7)


def _no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> str:
        raise AssertionError("hashed before the size check")

    monkeypatch.setattr(verify_mod, "hash_part", boom)
    monkeypatch.setattr(verify_mod, "hash_file", boom)


def test_oversize_rejected_before_hashing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    envelope, parts = world.bundle(1)
    ref = next(iter(parts))
    _no_hashing(monkeypatch)
    # Delivered part longer than its signed size.
    world.rejects(envelope, {**parts, ref: parts[ref] + b"!"}, "oversize")
    # The same as a file on disk: refused from its size alone.
    big = world.tmp / "big.part"
    big.write_bytes(parts[ref] + b"x" * 4096)
    world.rejects(envelope, {**parts, ref: big}, "oversize")
    # A signed manifest declaring a part above the kind's cap (16 MiB for catalogue rows).
    huge = Manifest(
        type="catalogue",
        store=STORE,
        version=1,
        issued_at=NOW - 60,
        expires_at=NOW + DAY,
        key_id=world.key.key_id,
        parts=(PartSpec("rows", "catalogue_rows", "0" * 64, 16 * MIB + 1),),
    )
    world.rejects(world.key.sign(huge), {huge.part_ref("rows"): b""}, "oversize")
    # Parts each under their cap, but together above the total cap.
    many = Manifest(
        type="catalogue",
        store=STORE,
        version=1,
        issued_at=NOW - 60,
        expires_at=NOW + DAY,
        key_id=world.key.key_id,
        parts=tuple(PartSpec(f"rows{i}", "catalogue_rows", "0" * 64, 16 * MIB) for i in range(7)),
    )
    world.rejects(world.key.sign(many), {}, "oversize")
    # An envelope above the manifest cap, refused before it is parsed.
    world.rejects(b"{" + b" " * (64 * 1024) + b"}", parts, "oversize")


def test_oversize_caps_are_configurable(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.store.close()
    world.store = BundleStore(
        world.db,
        root_key=public_key_hex(world.root),
        store_id=STORE,
        apply=world._apply,
        restore=world._restore,
        certificates=[world.key.certificate_envelope],
        caps=Caps(part_bytes={"catalogue_rows": 100, "thresholds": 100}),
        clock=lambda: world.now,
    )
    world.rejects(*world.bundle(1, parts={"rows": ("catalogue_rows", b"r" * 101)}), "oversize")
    # A kind with no cap configured may not be shipped at all.
    world.rejects(*world.bundle(1, parts={"p": ("prototypes", b"p")}), "oversize")
    _accept(world, 1, parts={"rows": ("catalogue_rows", b"r" * 100)})
    world.store.close()


@pytest.mark.parametrize("version", [2**64 - 1, 2**63, 2**64, 0, -1, 10**30])
def test_version_out_of_range(world: World, version: int) -> None:
    manifest, parts = world.manifest(1)
    forged = Manifest(**{**manifest.__dict__, "version": version})
    parts = {forged.part_ref(p.name): parts[manifest.part_ref(p.name)] for p in manifest.parts}
    world.rejects(world.key.sign(forged), parts, "version_range")


def test_largest_version_is_stored_exactly(world: World) -> None:
    envelope, parts = _accept(world, MAX_VERSION)
    assert world.store.holding()[0]["version"] == MAX_VERSION == 2**63 - 1
    world.rejects(envelope, parts, "replay")


def test_key_rotation(world: World) -> None:
    _accept(world, 1)
    old = world.key
    # Rotation without reflashing: the root certifies a new key, sent like any message.
    new = issue_signing_key(
        world.root, "hub-2026b", not_before=NOW - DAY, not_after=NOW + 400 * DAY
    )
    world.store.install_certificate(new.certificate_envelope)
    _accept(world, 2, key=new)
    # The old key is revoked by a root-signed revocation list.
    world.store.install_revocations(sign_revocations(world.root, [old.key_id], issued_at=NOW))
    world.rejects(*world.bundle(3, key=old), "revoked_key")
    # Revocation survives a restart (and re-sending the old certificate does not undo it).
    world.store.close()
    world.store = world.open()
    world.rejects(*world.bundle(3, key=old), "revoked_key")
    # An older revocation list without the key cannot un-revoke it either.
    world.store.install_revocations(sign_revocations(world.root, [], issued_at=NOW - 10 * DAY))
    world.rejects(*world.bundle(3, key=old), "revoked_key")
    _accept(world, 3, key=new)


def test_revocation_list_must_be_root_signed(world: World) -> None:
    before = world.digest()
    with pytest.raises(BundleRejected) as info:
        world.store.install_revocations(
            sign_revocations(generate_private_key(), [world.key.key_id], issued_at=NOW)
        )
    assert info.value.reason == "bad_certificate"
    assert world.digest() == before
    _accept(world, 1)


def test_certificate_marked_revoked_revokes(world: World) -> None:
    cert = KeyCertificate(**{**world.key.certificate.__dict__, "revoked": True})
    world.store.install_certificate(issue_certificate(world.root, cert))
    world.rejects(*world.bundle(1), "revoked_key")


def test_certificate_must_cover_store_and_issue_time(world: World) -> None:
    elsewhere = issue_signing_key(
        world.root, "hub-s043", stores=["s043", "s044"], not_before=NOW - DAY, not_after=NOW + DAY
    )
    world.store.install_certificate(elsewhere.certificate_envelope)
    world.rejects(*world.bundle(1, key=elsewhere), "key_scope")
    lapsed = issue_signing_key(
        world.root, "hub-2025", not_before=NOW - 400 * DAY, not_after=NOW - 35 * DAY
    )
    world.store.install_certificate(lapsed.certificate_envelope)
    world.rejects(*world.bundle(1, key=lapsed), "key_not_valid")
    # A key id names one key forever.
    impostor = KeyCertificate(
        **{**world.key.certificate.__dict__, "public_key": public_key_hex(generate_private_key())}
    )
    with pytest.raises(BundleRejected) as info:
        world.store.install_certificate(issue_certificate(world.root, impostor))
    assert info.value.reason == "bad_certificate"


def test_domain_separation(world: World) -> None:
    """A signature made for one document type never verifies as another, even if the same
    private key were (wrongly) used as root and as signing key."""
    manifest, parts = world.manifest(1)
    # Bundle envelope bytes offered as a key certificate.
    with pytest.raises(BundleRejected):
        world.store.install_certificate(world.key.sign(manifest))
    # The root's certificate-domain signature replayed as a bundle signature: certify the
    # root key itself as a signing key, then present a certificate-domain signature.
    root_as_signer = KeyCertificate(
        key_id="root-misuse",
        public_key=public_key_hex(world.root),
        not_before=NOW - DAY,
        not_after=NOW + DAY,
    )
    world.store.install_certificate(issue_certificate(world.root, root_as_signer))
    manifest, parts = world.manifest(
        1, key=SigningKey("root-misuse", world.root, root_as_signer, b"")
    )
    cert_domain_sig = keys_mod.sign(world.root, CERTIFICATE_DOMAIN, manifest.canonical())
    envelope = canonical_json(
        {"alg": "Ed25519", "manifest": manifest.to_dict(), "signature": cert_domain_sig.hex()}
    )
    before = world.digest()
    world.rejects(envelope, parts, "bad_signature")
    # ... and a bundle-domain signature over certificate bytes is not a certificate.
    body = KeyCertificate(
        key_id="sneaky",
        public_key=public_key_hex(generate_private_key()),
        not_before=NOW - DAY,
        not_after=NOW + DAY,
    ).to_dict()
    bundle_domain_sig = keys_mod.sign(world.root, BUNDLE_DOMAIN, canonical_json(body))
    forged_cert = canonical_json(
        {"alg": "Ed25519", "certificate": body, "signature": bundle_domain_sig.hex()}
    )
    with pytest.raises(BundleRejected) as info:
        world.store.install_certificate(forged_cert)
    assert info.value.reason == "bad_certificate"
    assert world.digest() == before
    # The same bytes signed in the right domain do verify (the test is not vacuous).
    assert keys_mod.signature_valid(
        world.root.public_key(), BUNDLE_DOMAIN, canonical_json(body), bundle_domain_sig
    )
    assert not keys_mod.signature_valid(
        world.root.public_key(), CERTIFICATE_DOMAIN, canonical_json(body), bundle_domain_sig
    )


# -- transaction, health check, rollback ------------------------------------------------------


def test_failing_apply_leaves_nothing(world: World) -> None:
    _accept(world, 1)
    envelope, parts = world.bundle(2)
    before = world.digest()
    world.fail_apply = True
    outcome = world.store.offer(envelope, parts)
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed")
    assert world.digest() == before
    world.fail_apply = False
    assert world.store.offer(envelope, parts).status == "applied"


def test_health_check_failure_rolls_back(tmp_path: Path) -> None:
    healthy = {"ok": True}
    world = World(tmp_path, health=lambda m: healthy["ok"])
    _envelope, parts1 = _accept(world, 41)
    healthy["ok"] = False
    envelope, parts = world.bundle(42)
    outcome = world.store.offer(envelope, parts)
    assert (outcome.status, outcome.reason, outcome.version) == ("rolled_back", "health_check", 42)
    assert world.store.holding() == [{"store": STORE, "type": "catalogue", "version": 41}]
    restored_version, restored_parts = world.restored[-1]
    assert restored_version == 41
    m41 = world.store.current("catalogue")
    assert m41 is not None
    assert {m41.part_ref(n): d for n, d in restored_parts.items()} == parts1
    # The rolled-back version is burnt: the hub must publish a newer one.
    healthy["ok"] = True
    world.rejects(envelope, parts, "replay")
    _accept(world, 43)
    world.store.close()


def test_manual_rollback_to_previous_then_baseline(world: World) -> None:
    _accept(world, 1)
    _accept(world, 2)
    outcome = world.store.rollback("catalogue")
    assert (outcome.status, outcome.version) == ("rolled_back", 1)
    assert world.store.holding() == [{"store": STORE, "type": "catalogue", "version": 1}]
    outcome = world.store.rollback("catalogue")
    assert (outcome.status, outcome.version) == ("rolled_back", None)
    assert world.restored[-1] == (None, {})
    assert world.store.holding() == []
    with pytest.raises(BundleStoreError):
        world.store.rollback("catalogue")
    world.rejects(*world.bundle(2), "replay")
    _accept(world, 3)


def test_failing_restore_changes_nothing(world: World) -> None:
    _accept(world, 1)
    _accept(world, 2)
    before = world.digest()

    def broken(*_args: object) -> None:
        raise OSError("disk gone")

    world.store._restore = broken
    with pytest.raises(BundleStoreError):
        world.store.rollback("catalogue")
    assert world.digest() == before


# -- property: no single-byte flip is ever accepted -----------------------------------------------


def test_single_byte_flips_never_accepted(world: World) -> None:
    envelope, parts = world.bundle(1)
    before = world.digest()
    reasons: set[str | None] = set()

    def offer_flipped(position: int, xor: int) -> None:
        mutated = bytearray(envelope)
        mutated[position] ^= xor
        outcome = world.store.offer(bytes(mutated), parts)
        assert not outcome.accepted, (position, xor)
        assert outcome.status in {"rejected", "no_update"}
        reasons.add(outcome.reason)

    for position in range(len(envelope)):  # every position, low and high bit
        offer_flipped(position, 0x01)
        offer_flipped(position, 0x80)

    @settings(max_examples=400, deadline=None)
    @given(st.integers(0, len(envelope) - 1), st.integers(1, 255))
    def any_flip(position: int, xor: int) -> None:
        offer_flipped(position, xor)

    any_flip()
    assert world.digest() == before
    assert reasons <= BUNDLE_REJECT_REASONS
    assert world.store.offer(envelope, parts).accepted  # the original was fine all along
