"""Signed update bundles: catalogue, prototype, threshold and model updates from the hub.

A bundle is one Ed25519-signed manifest naming every part by sha256 and size, plus the
parts. The modules each do one job:

* :mod:`~cartos.sync.bundles.manifest`: the format — canonical JSON, envelopes, the strict
  manifest schema, size caps, chunks;
* :mod:`~cartos.sync.bundles.keys`: the key hierarchy — pinned root, root-signed signing-key
  certificates and revocations, and the signing helpers the hub uses;
* :mod:`~cartos.sync.bundles.verify`: the verification pipeline and its order of checks;
* :mod:`~cartos.sync.bundles.store`: the cart's staging of chunked parts and its store of
  accepted bundles (offer, rollback, reconciliation).

Format, key rotation and the threat → reason-code table: ``docs/bundles.md``.
"""

from __future__ import annotations

from cartos.sync.bundles.keys import (
    CERTIFICATE_DOMAIN,
    REVOCATION_DOMAIN,
    KeyCertificate,
    RevocationList,
    SigningKey,
    TrustStore,
    generate_private_key,
    issue_certificate,
    issue_signing_key,
    load_signing_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_hex,
    public_key_hex,
    sign_manifest,
    sign_revocations,
)
from cartos.sync.bundles.manifest import (
    ALGORITHM,
    BUNDLE_DOMAIN,
    DEFAULT_CAPS,
    MAX_VERSION,
    PART_KINDS,
    Caps,
    Chunk,
    Manifest,
    PartSpec,
    build_manifest,
    canonical_json,
    parse_manifest,
    part_ref,
    split_part,
)
from cartos.sync.bundles.store import (
    ApplyHook,
    BundleStore,
    ChunkAssembler,
    HealthCheck,
    Holding,
    Outcome,
    RestoreHook,
)
from cartos.sync.bundles.verify import (
    DEFAULT_SKEW_S,
    PartSource,
    VerifiedBundle,
    verify_bundle,
    verify_envelope,
)
from cartos.sync.errors import (
    BUNDLE_REJECT_REASONS,
    BundleError,
    BundleRejected,
    BundleStoreError,
)

__all__ = [
    "ALGORITHM",
    "BUNDLE_DOMAIN",
    "BUNDLE_REJECT_REASONS",
    "CERTIFICATE_DOMAIN",
    "DEFAULT_CAPS",
    "DEFAULT_SKEW_S",
    "MAX_VERSION",
    "PART_KINDS",
    "REVOCATION_DOMAIN",
    "ApplyHook",
    "BundleError",
    "BundleRejected",
    "BundleStore",
    "BundleStoreError",
    "Caps",
    "Chunk",
    "ChunkAssembler",
    "HealthCheck",
    "Holding",
    "KeyCertificate",
    "Manifest",
    "Outcome",
    "PartSource",
    "PartSpec",
    "RestoreHook",
    "RevocationList",
    "SigningKey",
    "TrustStore",
    "VerifiedBundle",
    "build_manifest",
    "canonical_json",
    "generate_private_key",
    "issue_certificate",
    "issue_signing_key",
    "load_signing_key",
    "parse_manifest",
    "part_ref",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_from_hex",
    "public_key_hex",
    "sign_manifest",
    "sign_revocations",
    "split_part",
    "verify_bundle",
    "verify_envelope",
]
