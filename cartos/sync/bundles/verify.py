"""Verification of a bundle: envelope → trusted manifest → freshness → parts.

The order of the checks is part of the contract, because it decides both *what work an
attacker can make the cart do* and *which reason code a rejection gets*:

1. envelope size, canonical JSON, signature present, ``alg`` (``oversize``, ``malformed``,
   ``unsigned``, ``algorithm``);
2. manifest schema, version range, declared sizes against the caps (``malformed``,
   ``version_range``, ``oversize``) — nothing is hashed yet;
3. the signing key: revoked, certified at all, for this store, at the issue time
   (``revoked_key``, ``unknown_key``, ``key_scope``, ``key_not_valid``), then the
   signature (``bad_signature``);
4. scope and time: ``wrong_store``, ``not_yet_valid`` (issued beyond the clock skew),
   ``expired`` — which callers treat as "no update", never as a failure;
5. version against the highest accepted (``replay``, ``older_version``);
6. parts: every delivered label belongs to this manifest (``mixed_parts``), nothing missing
   (``missing_part``), every size exact *before any hashing* (``oversize`` /
   ``tampered_part``), then every sha256 (``tampered_part``).

Every function raises :class:`~cartos.sync.errors.BundleRejected` and nothing else for bad
input, so the caller needs one ``except`` to stay up whatever arrives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cartos.sync.bundles.keys import TrustStore, signature_valid
from cartos.sync.bundles.manifest import (
    BUNDLE_DOMAIN,
    DEFAULT_CAPS,
    Caps,
    Manifest,
    canonical_json,
    parse_manifest,
    parse_signed,
    reject,
)

DEFAULT_SKEW_S: Final = 300
"""How far in the future ``issued_at`` may lie: cart clocks drift, but a bundle "issued"
next week is a pre-signed attack or a broken hub clock."""

PartSource = bytes | bytearray | memoryview | Path
"""A delivered part: its bytes, or the file the chunk assembler produced."""

_READ_BLOCK = 1 << 20


def hash_part(data: bytes) -> str:
    """SHA-256 of a part or chunk held in memory. Module-level so every hash of delivered
    bytes goes through one place (the tests replace it to prove caps come first)."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path) -> str:
    """SHA-256 of a staged file, read in blocks (the file was size-checked beforehand)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class VerifiedBundle:
    """A manifest whose signature, key, store and freshness all checked out."""

    manifest: Manifest
    envelope: bytes


def verify_envelope(
    envelope: bytes,
    trust: TrustStore,
    *,
    store_id: str,
    now: int,
    caps: Caps = DEFAULT_CAPS,
    skew_s: int = DEFAULT_SKEW_S,
) -> VerifiedBundle:
    """Steps 1–4: the manifest is authentic, meant for ``store_id`` and current at ``now``.

    ``expired`` is raised like the other verdicts (check ``exc.no_update``); the store turns
    it into an "no update" outcome.
    """
    body, signature = parse_signed(envelope, "manifest", max_bytes=caps.manifest_bytes)
    manifest = parse_manifest(body, caps)
    key = trust.signing_key(manifest.key_id, store=manifest.store, at=manifest.issued_at)
    if not signature_valid(key, BUNDLE_DOMAIN, canonical_json(body), signature):
        reject("bad_signature", f"signature does not verify under key {manifest.key_id!r}")
    if manifest.store != store_id:
        reject("wrong_store", f"bundle is for store {manifest.store!r}, this cart is {store_id!r}")
    if manifest.issued_at > now + skew_s:
        reject("not_yet_valid", f"issued_at {manifest.issued_at} is in the future (now {now})")
    if now >= manifest.expires_at:
        reject("expired", f"expired at {manifest.expires_at} (now {now})")
    return VerifiedBundle(manifest=manifest, envelope=bytes(envelope))


def check_version(manifest: Manifest, high_water: int) -> None:
    """Step 5: only a version above every version ever accepted for this store and type.

    ``high_water`` is 0 when nothing was accepted yet. Comparing against the highest
    *accepted* version (not the one currently applied) keeps a bundle that was rolled back
    for failing its health checks from being installed again.
    """
    if manifest.version == high_water:
        reject("replay", f"version {manifest.version} was already accepted")
    if manifest.version < high_water:
        reject("older_version", f"version {manifest.version} is older than {high_water}")


def load_parts(manifest: Manifest, parts: Mapping[str, PartSource]) -> dict[str, bytes]:
    """Step 6: the delivered parts, checked against this manifest only; keyed by part name.

    ``parts`` is keyed by :meth:`Manifest.part_ref` labels. All labels and all sizes are
    checked before the first byte is hashed, and a file is never read past its declared
    size, so an oversize part costs neither hashing time nor memory.
    """
    expected = {manifest.part_ref(spec.name): spec for spec in manifest.parts}
    for ref in parts:
        if ref not in expected:
            shown = ref[:120] if isinstance(ref, str) else type(ref).__name__
            reject("mixed_parts", f"delivered part {shown!r} is not in this manifest")
    for ref in expected:
        if ref not in parts:
            reject("missing_part", f"part {ref!r} was not delivered")
    loaded: dict[str, bytes] = {}
    for ref, spec in expected.items():
        loaded[spec.name] = _read_exact(parts[ref], spec.size, ref)
    for ref, spec in expected.items():
        if hash_part(loaded[spec.name]) != spec.sha256:
            reject("tampered_part", f"part {ref!r} does not hash to the signed sha256")
    return loaded


def _read_exact(source: PartSource, size: int, ref: str) -> bytes:
    """The part's bytes if it is exactly ``size`` long; never reads more than ``size + 1``."""
    if isinstance(source, Path):
        try:
            on_disk = source.stat().st_size
            if on_disk > size:
                reject("oversize", f"part {ref!r} is {on_disk} bytes, declared {size}")
            with source.open("rb") as fh:
                data = fh.read(size + 1)
        except OSError as exc:
            reject("missing_part", f"part {ref!r} unreadable: {exc.strerror}")
    elif isinstance(source, bytes | bytearray | memoryview):
        if len(source) > size:
            reject("oversize", f"part {ref!r} is {len(source)} bytes, declared {size}")
        data = bytes(source)
    else:
        reject("malformed", f"part {ref!r} is neither bytes nor a file path")
    if len(data) > size:
        reject("oversize", f"part {ref!r} grew past its declared {size} bytes")
    if len(data) < size:
        reject("tampered_part", f"part {ref!r} is {len(data)} bytes, declared {size}")
    return data


def verify_bundle(
    envelope: bytes,
    parts: Mapping[str, PartSource],
    trust: TrustStore,
    *,
    store_id: str,
    now: int,
    high_water: int = 0,
    caps: Caps = DEFAULT_CAPS,
    skew_s: int = DEFAULT_SKEW_S,
) -> tuple[VerifiedBundle, dict[str, bytes]]:
    """All six steps (the hub runs this on what it is about to publish)."""
    verified = verify_envelope(
        envelope, trust, store_id=store_id, now=now, caps=caps, skew_s=skew_s
    )
    check_version(verified.manifest, high_water)
    return verified, load_parts(verified.manifest, parts)
