"""The key hierarchy: a pinned root key certifies signing keys, signing keys sign bundles.

Why two levels: the root private key stays offline (it is only needed to certify or revoke
a signing key), while the hub holds a signing key that may one day leak. Carts pin only the
root *public* key in their configuration, so a signing key can be rotated — new key
certified, old key revoked — by sending two small root-signed documents over MQTT, with no
reflashing of any cart.

Documents (all canonical envelopes, see :mod:`cartos.sync.bundles.manifest`):

* key certificate ``{"alg", "certificate": {key_id, public_key, not_before, not_after,
  stores, revoked?}, "signature"}``, signed by the root over
  ``b"cartos-signing-key-v1\\0" + canonical(certificate)``;
* revocation list ``{"alg", "revocation": {issued_at, key_ids}, "signature"}``, signed by the
  root over ``b"cartos-key-revocations-v1\\0" + canonical(revocation)``.

Each document type has its own domain prefix, so a signature made for one kind of document
can never be presented as a signature of another kind, even if a key were (wrongly) used in
two roles. Revocation is sticky: once a key id is seen revoked it stays revoked, so
replaying an older revocation list (or an old certificate) cannot bring a key back.

Private keys are serialised as PKCS#8 PEM (optionally password-encrypted) with
``cryptography``; public keys travel as 64 lower-case hex digits of the raw 32 bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cartos.sync.bundles.manifest import (
    BUNDLE_DOMAIN,
    KEY_ID_PATTERN,
    MAX_TIME,
    PUBLIC_KEY_PATTERN,
    STORE_PATTERN,
    Manifest,
    canonical_json,
    encode_signed,
    exact_fields,
    int_field,
    parse_signed,
    reject,
    str_field,
)

CERTIFICATE_DOMAIN: Final = b"cartos-signing-key-v1\0"
REVOCATION_DOMAIN: Final = b"cartos-key-revocations-v1\0"
MAX_DOCUMENT_BYTES: Final = 16 * 1024
"""Cap on a key certificate or revocation envelope, checked before parsing."""
MAX_REVOKED_PER_LIST: Final = 1024

_CERT_REQUIRED = frozenset({"key_id", "public_key", "not_before", "not_after", "stores"})
_CERT_OPTIONAL = frozenset({"revoked"})
_REVOCATION_FIELDS = frozenset({"issued_at", "key_ids"})

AnyStores = Literal["*"]


# -- raw keys ------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key (root or signing key)."""
    return Ed25519PrivateKey.generate()


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The 64-hex-digit form used in certificates and the cart's pinned-root setting."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """Parse a pinned or certified public key; only the exact canonical form is accepted."""
    if not isinstance(text, str) or not PUBLIC_KEY_PATTERN.fullmatch(text):
        raise ValueError("an Ed25519 public key is 64 lower-case hex digits")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def private_key_to_pem(key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when one is given (keep the root's so)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM private key, refusing any key type other than Ed25519."""
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def sign(key: Ed25519PrivateKey, domain: bytes, payload: bytes) -> bytes:
    """Sign ``domain + payload``: every signature in the hierarchy goes through here."""
    return key.sign(domain + payload)


def signature_valid(key: Ed25519PublicKey, domain: bytes, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` covers ``domain + payload`` under ``key``."""
    try:
        key.verify(signature, domain + payload)
    except InvalidSignature:
        return False
    return True


# -- documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCertificate:
    """The root's statement "key ``key_id`` may sign bundles for ``stores`` in this window"."""

    key_id: str
    public_key: str
    not_before: int
    not_after: int
    stores: AnyStores | tuple[str, ...] = "*"
    revoked: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "stores": "*" if self.stores == "*" else list(self.stores),
        }
        if self.revoked:
            out["revoked"] = True
        return out

    def covers_store(self, store: str) -> bool:
        return self.stores == "*" or store in self.stores

    def covers_time(self, at: int) -> bool:
        return self.not_before <= at <= self.not_after

    @classmethod
    def from_dict(cls, obj: Any) -> KeyCertificate:
        """Strict parse (``malformed`` on any deviation): a certificate grants authority, so
        nothing about it may be open to interpretation."""
        if not isinstance(obj, dict):
            reject("malformed", "certificate is not a JSON object")
        fields = set(obj)
        if not fields >= _CERT_REQUIRED or fields - _CERT_REQUIRED - _CERT_OPTIONAL:
            reject("malformed", "certificate fields")
        key_id = str_field(obj, "key_id", KEY_ID_PATTERN)
        public_key = str_field(obj, "public_key", PUBLIC_KEY_PATTERN)
        not_before = int_field(obj, "not_before", 0, MAX_TIME)
        not_after = int_field(obj, "not_after", 0, MAX_TIME)
        if not_after <= not_before:
            reject("malformed", "not_after must be after not_before")
        raw_stores = obj["stores"]
        stores: AnyStores | tuple[str, ...]
        if raw_stores == "*":
            stores = "*"
        elif isinstance(raw_stores, list) and raw_stores:
            if not all(isinstance(s, str) and STORE_PATTERN.fullmatch(s) for s in raw_stores):
                reject("malformed", "stores must be '*' or a list of store ids")
            if len(set(raw_stores)) != len(raw_stores):
                reject("malformed", "store listed twice")
            stores = tuple(raw_stores)
        else:
            reject("malformed", "stores must be '*' or a non-empty list of store ids")
        revoked = obj.get("revoked", False)
        if revoked is not True and "revoked" in obj:
            # Only ``true`` may be written: an explicit ``false`` would be a second spelling.
            reject("malformed", "revoked may only be present as true")
        try:
            public_key_from_hex(public_key)
        except ValueError:
            reject("malformed", "public_key is not an Ed25519 key")
        return cls(key_id, public_key, not_before, not_after, stores, bool(revoked))


@dataclass(frozen=True)
class RevocationList:
    """The root's statement "these signing keys are no longer trusted"."""

    issued_at: int
    key_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"issued_at": self.issued_at, "key_ids": list(self.key_ids)}

    @classmethod
    def from_dict(cls, obj: Any) -> RevocationList:
        r = exact_fields(obj, _REVOCATION_FIELDS, "revocation")
        issued_at = int_field(r, "issued_at", 0, MAX_TIME)
        ids = r["key_ids"]
        if not isinstance(ids, list) or len(ids) > MAX_REVOKED_PER_LIST:
            reject("malformed", "key_ids must be a list of at most 1024 key ids")
        if not all(isinstance(k, str) and KEY_ID_PATTERN.fullmatch(k) for k in ids):
            reject("malformed", "key_ids must hold key ids")
        return cls(issued_at, tuple(ids))


# -- hub / offline side --------------------------------------------------------------------


def issue_certificate(root: Ed25519PrivateKey, certificate: KeyCertificate) -> bytes:
    """Root-sign ``certificate``; returns the envelope carts install."""
    body = KeyCertificate.from_dict(certificate.to_dict()).to_dict()  # validate as carts will
    return encode_signed("certificate", body, sign(root, CERTIFICATE_DOMAIN, canonical_json(body)))


def sign_revocations(root: Ed25519PrivateKey, key_ids: Sequence[str], issued_at: int) -> bytes:
    """Root-sign a revocation list for ``key_ids``; returns the envelope carts install."""
    body = RevocationList.from_dict({"issued_at": issued_at, "key_ids": list(key_ids)}).to_dict()
    return encode_signed("revocation", body, sign(root, REVOCATION_DOMAIN, canonical_json(body)))


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> bytes:
    """Sign a manifest with a signing key; returns the bundle envelope.

    The signature covers ``BUNDLE_DOMAIN + manifest.canonical()``.
    """
    return encode_signed(
        "manifest", manifest.to_dict(), sign(key, BUNDLE_DOMAIN, manifest.canonical())
    )


@dataclass(frozen=True)
class SigningKey:
    """A hub signing key together with its root-signed certificate."""

    key_id: str
    private_key: Ed25519PrivateKey
    certificate: KeyCertificate
    certificate_envelope: bytes

    def sign(self, manifest: Manifest) -> bytes:
        """The bundle envelope for ``manifest`` (which must name this key)."""
        if manifest.key_id != self.key_id:
            raise ValueError(f"manifest names key {manifest.key_id!r}, this is {self.key_id!r}")
        return sign_manifest(manifest, self.private_key)

    def private_pem(self, password: bytes | None = None) -> bytes:
        return private_key_to_pem(self.private_key, password)


def issue_signing_key(
    root: Ed25519PrivateKey,
    key_id: str,
    *,
    not_before: int | None = None,
    not_after: int | None = None,
    stores: AnyStores | Iterable[str] = "*",
    private_key: Ed25519PrivateKey | None = None,
) -> SigningKey:
    """Generate (or adopt) a signing key and certify it with the root.

    Defaults: valid from now for 365 days, for every store.
    """
    now = int(time.time())
    key = private_key or generate_private_key()
    cert = KeyCertificate(
        key_id=key_id,
        public_key=public_key_hex(key),
        not_before=now if not_before is None else not_before,
        not_after=(now + 365 * 86400) if not_after is None else not_after,
        stores="*" if stores == "*" else tuple(stores),
    )
    return SigningKey(key_id, key, cert, issue_certificate(root, cert))


def load_signing_key(private_pem: bytes, certificate_envelope: bytes,
                     password: bytes | None = None) -> SigningKey:
    """A hub's signing key from its PEM file and the root-signed certificate it was issued.

    The certificate's signature is not checked here (the hub does not hold the root; the
    carts check it), but it must name this private key, so a hub configured with a
    mismatched pair fails at start instead of publishing bundles every cart refuses.
    """
    key = private_key_from_pem(private_pem, password)
    body, _signature = parse_signed(certificate_envelope, "certificate",
                                    max_bytes=MAX_DOCUMENT_BYTES)
    cert = KeyCertificate.from_dict(body)
    if cert.public_key != public_key_hex(key):
        raise ValueError(f"certificate {cert.key_id!r} certifies another key than this PEM")
    return SigningKey(cert.key_id, key, cert, certificate_envelope)


# -- cart side -----------------------------------------------------------------------------


class TrustStore:
    """What a cart trusts: the pinned root, the certificates it signed, and revocations.

    In memory only; :class:`cartos.sync.bundles.store.BundleStore` persists the envelopes
    and replays them into a fresh ``TrustStore`` when it opens.
    """

    def __init__(self, root_public_key: str | Ed25519PublicKey) -> None:
        self._root = (
            public_key_from_hex(root_public_key)
            if isinstance(root_public_key, str)
            else root_public_key
        )
        self._certificates: dict[str, list[KeyCertificate]] = {}
        self._revoked: set[str] = set()

    @property
    def root_public_key(self) -> str:
        return public_key_hex(self._root)

    @property
    def revoked(self) -> frozenset[str]:
        return frozenset(self._revoked)

    def certificates(self, key_id: str) -> tuple[KeyCertificate, ...]:
        return tuple(self._certificates.get(key_id, ()))

    def check_certificate(self, envelope: bytes) -> KeyCertificate:
        """Verify a certificate envelope without installing it; raises BundleRejected."""
        body, signature = parse_signed(envelope, "certificate", max_bytes=MAX_DOCUMENT_BYTES)
        cert = KeyCertificate.from_dict(body)
        if not signature_valid(self._root, CERTIFICATE_DOMAIN, canonical_json(body), signature):
            reject("bad_certificate", f"certificate for {cert.key_id!r} not signed by the root")
        held = self._certificates.get(cert.key_id, [])
        if any(c.public_key != cert.public_key for c in held):
            # A key id names one key forever; two keys under one id would make revocation
            # and audit ambiguous.
            reject("bad_certificate", f"key id {cert.key_id!r} already names another key")
        return cert

    def add_certificate(self, envelope: bytes) -> KeyCertificate:
        """Install a root-signed certificate (idempotent). A certificate marked ``revoked``
        revokes its key id for good."""
        cert = self.check_certificate(envelope)
        self.install(cert)
        return cert

    def install(self, cert: KeyCertificate) -> None:
        """Add an already verified certificate (used when replaying persisted envelopes)."""
        if cert.revoked:
            self._revoked.add(cert.key_id)
            return
        held = self._certificates.setdefault(cert.key_id, [])
        if cert not in held:
            held.append(cert)

    def check_revocations(self, envelope: bytes) -> RevocationList:
        """Verify a revocation envelope without applying it; raises BundleRejected."""
        body, signature = parse_signed(envelope, "revocation", max_bytes=MAX_DOCUMENT_BYTES)
        revocation = RevocationList.from_dict(body)
        if not signature_valid(self._root, REVOCATION_DOMAIN, canonical_json(body), signature):
            reject("bad_certificate", "revocation list not signed by the root")
        return revocation

    def add_revocations(self, envelope: bytes) -> RevocationList:
        """Apply a root-signed revocation list. Revocations accumulate and never lapse."""
        revocation = self.check_revocations(envelope)
        self.revoke(revocation.key_ids)
        return revocation

    def revoke(self, key_ids: Iterable[str]) -> None:
        self._revoked.update(key_ids)

    def signing_key(self, key_id: str, *, store: str, at: int) -> Ed25519PublicKey:
        """The public key allowed to sign a bundle for ``store`` issued at ``at``.

        Raises :class:`BundleRejected` with ``revoked_key``, ``unknown_key``, ``key_scope``
        (no certificate covers the store) or ``key_not_valid`` (none covers the time).
        """
        if key_id in self._revoked:
            reject("revoked_key", f"signing key {key_id!r} is revoked")
        certs = self._certificates.get(key_id)
        if not certs:
            reject("unknown_key", f"no root-signed certificate for key {key_id!r}")
        in_scope = [c for c in certs if c.covers_store(store)]
        if not in_scope:
            reject("key_scope", f"key {key_id!r} is not certified for store {store!r}")
        valid = [c for c in in_scope if c.covers_time(at)]
        if not valid:
            reject("key_not_valid", f"key {key_id!r} was not valid at issue time {at}")
        return public_key_from_hex(valid[0].public_key)


__all__ = [
    "CERTIFICATE_DOMAIN",
    "REVOCATION_DOMAIN",
    "KeyCertificate",
    "RevocationList",
    "SigningKey",
    "TrustStore",
    "generate_private_key",
    "issue_certificate",
    "issue_signing_key",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_from_hex",
    "public_key_hex",
    "sign",
    "sign_manifest",
    "sign_revocations",
    "signature_valid",
]
