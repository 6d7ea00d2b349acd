"""Errors of the sync layer. Each module adds its own subclasses here (append only)."""

from __future__ import annotations

from cartos.errors import CartosError


class SyncError(CartosError):
    """Base of every sync error."""


class TopicError(SyncError, ValueError):
    """A topic or topic segment that the v1 topic layout does not allow.

    Raised both for segments a caller tries to build a topic from (a store or
    cart id with ``/``, ``+``, ``#`` or non-ASCII characters would let one cart
    publish into another's tree or subscribe to more than its own) and for
    topics received from the broker that do not parse.
    """


class PayloadRejected(SyncError):  # noqa: N818 (reads as a verdict: "payload rejected")
    """A payload refused before it reached the sync logic (incoming) or the wire (outgoing).

    ``reason`` is a short, stable code (``too_large``, ``not_utf8``,
    ``too_deep``, ``not_json``, ``schema``, …; see :mod:`cartos.sync.payloads`)
    suitable as a metrics label; ``detail`` is a bounded human-readable
    explanation that never echoes more than a few bytes of the payload itself.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"payload rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


# -- signed update bundles (cartos.sync.bundles) --------------------------------------------

BUNDLE_REJECT_REASONS: frozenset[str] = frozenset(
    {
        # envelope and manifest format
        "unsigned",  # no signature at all (bare manifest, missing/empty signature)
        "algorithm",  # envelope names an algorithm other than exactly "Ed25519"
        "malformed",  # not canonical JSON, wrong type, unknown/missing/duplicate field, float
        "version_range",  # version outside 1 ≤ v ≤ 2^63-1
        "oversize",  # envelope, declared part, delivered part or chunk stream above its cap
        # keys and signatures
        "unknown_key",  # no root-signed certificate for the manifest's key_id
        "revoked_key",  # the key_id is on a root-signed revocation
        "key_scope",  # the key's certificate does not cover the manifest's store
        "key_not_valid",  # the manifest's issued_at lies outside the certificate's window
        "bad_signature",  # signature does not verify under the certified key
        "bad_certificate",  # a key certificate or revocation list not signed by the root
        # freshness and scope
        "wrong_store",  # signed for another store
        "not_yet_valid",  # issued_at further in the future than the allowed clock skew
        "expired",  # expires_at has passed: "no update", never a failure of the cart
        "older_version",  # below the highest version accepted for this store and type
        "replay",  # equal to the highest version accepted for this store and type
        # parts
        "missing_part",  # a part the manifest lists was not delivered
        "mixed_parts",  # a part or chunk labelled with another bundle, or not in the manifest
        "tampered_part",  # part bytes shorter than declared or not hashing to the manifest
        "chunk_corrupt",  # a chunk's bytes do not hash to its own sha256_of_chunk
        "chunk_conflict",  # a chunk disagrees with one already staged (index, count)
    }
)
"""Stable, machine-readable rejection codes. Telemetry, the hub's dashboards and the tests
match on these strings, so a code is never renamed once shipped; new threats get new codes."""


class BundleError(SyncError):
    """Base of the errors of signed update bundles."""


class BundleRejected(BundleError):  # noqa: N818 - a verdict on input, not a program fault
    """A bundle, key certificate, revocation list or chunk failed verification.

    ``reason`` is one of :data:`BUNDLE_REJECT_REASONS` so callers branch on a code rather
    than on message text; ``detail`` is for people (logs, the hub's dashboard).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in BUNDLE_REJECT_REASONS:
            raise ValueError(f"unknown bundle rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def no_update(self) -> bool:
        """True when the verdict means "nothing to do" (expired), not "attack or fault"."""
        return self.reason == "expired"


class BundleStoreError(BundleError):
    """The cart's bundle store cannot do what was asked: storage failure, a hook that broke
    the transaction, or a rollback with nothing to roll back to."""


class PkiError(SyncError):
    """Store PKI provisioning failed: bad parameters, unreadable or mismatched key material."""


class IdentityError(PkiError, ValueError):
    """A store id or certificate identity the broker ACL could not enforce.

    Identities become the MQTT username (``%u``) and a topic level; one with
    ``/``, ``+``, ``#`` or a reserved name would either escape its own topic
    subtree or be denied everything by Mosquitto, so it is never issued.
    """


class CertificateRevocationError(PkiError):
    """A CRL that is unreadable or not signed by this store's CA, or a certificate of another CA.

    Refusing here matters: re-signing a foreign or corrupt CRL would silently
    un-revoke every certificate it used to list.
    """


class PartFormatError(BundleError):
    """A verified bundle part whose content does not parse as its kind says.

    The signature proved who sent it, not that it is right: the applier refuses it (the
    whole bundle is then not applied) instead of installing half of something malformed.
    """


class UpdateError(BundleError):
    """A verified, well-formed update that cannot be applied to this cart: another catalogue
    baseline, a model that does not load or fails its sanity check, nothing to undo."""
