"""The bundle format: canonical JSON, signed envelopes, the manifest schema and chunks.

Everything here is about *bytes and shapes*, nothing about trust: whether a signature is
good is decided in :mod:`cartos.sync.bundles.verify` against the keys of
:mod:`cartos.sync.bundles.keys`.

Why so strict:

* **One byte form.** A signature covers ``DOMAIN + canonical_json(manifest)``; the envelope
  that carries it must itself *be* its canonical encoding (sorted keys, no whitespace,
  UTF-8, no escapes that canonical JSON would not write). A message therefore has exactly
  one accepted spelling, so no flipped whitespace, re-ordered key, ``1.0`` for ``1``,
  upper-case hex digit or alternative escape can slip through as "the same" bundle.
* **No type confusion.** Integers are JSON integers (never floats, never booleans, never
  strings), unknown and duplicate fields are refused, and every string field has a
  pattern. A field that could mean two things is a field an attacker can exploit.
* **Ranges that fit the store.** ``version`` is 1 ≤ v ≤ 2^63-1, the range of an SQLite
  INTEGER, so no value that verifies can overflow when it is recorded.
* **Caps before work.** Sizes are checked against :class:`Caps` from the declared values,
  before anything is hashed or buffered.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from cartos.sync.errors import BundleRejected

ALGORITHM: Final = "Ed25519"
"""The only signature algorithm an envelope may name (exact spelling)."""

BUNDLE_DOMAIN: Final = b"cartos-bundle-v1\0"
"""Prefix of the bytes a bundle signature covers: a signature made for a key certificate or
a revocation list (other prefixes) can never verify as a bundle signature."""

MAX_VERSION: Final = 2**63 - 1
"""Largest version (and timestamp) accepted: SQLite's INTEGER range."""

MAX_TIME: Final = 2**63 - 1

PART_KINDS: Final = frozenset(
    {"catalogue_rows", "prototypes", "prototype_deltas", "thresholds", "model", "model_card"}
)
"""What a part may contain; the applier dispatches on it."""

MIB: Final = 1024 * 1024

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_BUNDLE_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_STORE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")
_MAX_INT_DIGITS = 40
"""Longer integer literals are refused while parsing (int parsing is quadratic); 40 digits
still lets 2^64-1 through to be refused with its proper code, ``version_range``."""

MANIFEST_FIELDS: Final = frozenset(
    {"type", "store", "version", "issued_at", "expires_at", "key_id", "parts"}
)
PART_FIELDS: Final = frozenset({"name", "kind", "sha256", "size"})
CHUNK_FIELDS: Final = frozenset(
    {"bundle_version", "part", "index", "count", "sha256_of_chunk", "data"}
)


def _default_part_caps() -> dict[str, int]:
    return {kind: (64 if kind == "model" else 16) * MIB for kind in PART_KINDS}


@dataclass(frozen=True)
class Caps:
    """Size limits, checked against declared sizes before any hashing or buffering.

    A signing key could be stolen, so even a correctly signed manifest may not make the
    cart download, buffer or hash more than these allow.
    """

    manifest_bytes: int = 64 * 1024
    """Whole signed envelope (manifest plus signature)."""
    part_bytes: Mapping[str, int] = field(default_factory=_default_part_caps)
    """Per part kind; a kind missing here may not be shipped at all."""
    total_bytes: int = 96 * MIB
    """Sum of all parts of one bundle."""
    max_parts: int = 32
    max_chunks: int = 1 << 16
    """Chunks per part: bounds the staging directory's file count."""

    def part_cap(self, kind: str) -> int:
        return self.part_bytes.get(kind, 0)


DEFAULT_CAPS: Final = Caps()


def reject(reason: str, detail: str = "") -> NoReturn:
    """Raise :class:`BundleRejected` (a helper so validators read as one line per rule)."""
    raise BundleRejected(reason, detail)


# -- canonical JSON ------------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """The one byte form that is signed and sent: sorted keys, no whitespace, UTF-8.

    Raises :class:`BundleRejected` ``malformed`` for values canonical JSON cannot hold
    (floats, NaN, lone surrogates), so a signer cannot produce an ambiguous form either.
    """
    _refuse_floats(obj)
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeError, RecursionError) as exc:
        reject("malformed", f"not representable as canonical JSON: {exc}")


def _refuse_floats(obj: Any, depth: int = 0) -> None:
    if depth > 32:
        reject("malformed", "nested too deeply")
    if isinstance(obj, float):
        reject("malformed", "floating-point number")
    if isinstance(obj, dict):
        for value in obj.values():
            _refuse_floats(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _refuse_floats(value, depth + 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            reject("malformed", f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _no_float(text: str) -> NoReturn:
    reject("malformed", "floating-point number")


def _no_constant(text: str) -> NoReturn:
    reject("malformed", f"non-JSON constant {text}")


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        reject("malformed", "integer literal too long")
    return int(text)


def strict_loads(data: bytes) -> Any:
    """Parse JSON refusing floats, NaN/Infinity, duplicate keys and non-UTF-8 bytes.

    Every failure is :class:`BundleRejected` ``malformed``; nothing else escapes, so a
    hostile payload cannot crash the caller.
    """
    try:
        text = data.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
        )
    except BundleRejected:
        raise
    except (ValueError, UnicodeError, RecursionError) as exc:
        reject("malformed", f"not JSON: {type(exc).__name__}")


def parse_signed(data: bytes, body_field: str, *, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Split a canonical envelope ``{"alg", body_field, "signature"}`` into body and signature.

    Shared by bundles (``manifest``), key certificates (``certificate``) and revocation lists
    (``revocation``). The order of checks fixes the reason codes: size (``oversize``), JSON
    (``malformed``), signature present (``unsigned``), algorithm (``algorithm``), exact
    fields and canonical form (``malformed``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        reject("malformed", "envelope is not bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        reject("oversize", f"envelope is {len(data)} bytes, cap {max_bytes}")
    obj = strict_loads(data)
    if not isinstance(obj, dict):
        reject("malformed", "envelope is not a JSON object")
    signature = obj.get("signature")
    if signature is None or signature == "":
        reject("unsigned", "envelope carries no signature")
    alg = obj.get("alg")
    if alg != ALGORITHM:
        shown = alg[:20] if isinstance(alg, str) else type(alg).__name__
        reject("algorithm", f"alg must be exactly {ALGORITHM!r}, got {shown!r}")
    expected = {"alg", body_field, "signature"}
    if set(obj) != expected:
        extra = sorted(set(obj) - expected)[:5]
        missing = sorted(expected - set(obj))
        reject("malformed", f"envelope fields: unexpected {extra}, missing {missing}")
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        reject("malformed", "signature must be 128 lower-case hex digits")
    body = obj[body_field]
    if not isinstance(body, dict):
        reject("malformed", f"{body_field} is not a JSON object")
    if canonical_json(obj) != data:
        reject("malformed", "envelope is not in canonical form")
    return body, bytes.fromhex(signature)


def encode_signed(body_field: str, body: Mapping[str, Any], signature: bytes) -> bytes:
    """The canonical envelope carrying ``body`` and its 64-byte signature."""
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return canonical_json({"alg": ALGORITHM, body_field: dict(body), "signature": signature.hex()})


# -- field validators ----------------------------------------------------------------------


def exact_fields(obj: Any, fields: frozenset[str], what: str) -> dict[str, Any]:
    """``obj`` as a dict with exactly ``fields``: unknown fields are an attack surface."""
    if not isinstance(obj, dict):
        reject("malformed", f"{what} is not a JSON object")
    if set(obj) != fields:
        extra = sorted(set(obj) - fields)[:5]
        missing = sorted(fields - set(obj))
        reject("malformed", f"{what} fields: unexpected {extra}, missing {missing}")
    return obj


def int_field(
    obj: Mapping[str, Any], name: str, lo: int, hi: int, *, code: str = "malformed"
) -> int:
    """An exact JSON integer (``bool`` is not an integer here) within ``lo..hi``."""
    value = obj[name]
    if type(value) is not int:
        reject("malformed", f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        reject(code, f"{name} outside {lo}..{hi}")
    return value


def str_field(obj: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = obj[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        reject("malformed", f"{name} must match {pattern.pattern}")
    return value


def is_store_id(value: str) -> bool:
    return bool(_STORE.fullmatch(value))


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.fullmatch(value))


STORE_PATTERN: Final = _STORE
KEY_ID_PATTERN: Final = _KEY_ID
PUBLIC_KEY_PATTERN: Final = re.compile(r"[0-9a-f]{64}")


# -- manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartSpec:
    """One part as the manifest declares it: the signed sha256 and size bind its bytes."""

    name: str
    kind: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    """A parsed, schema-valid manifest. Validity of its *signature* is not implied."""

    type: str
    store: str
    version: int
    issued_at: int
    expires_at: int
    key_id: str
    parts: tuple[PartSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "store": self.store,
            "version": self.version,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "key_id": self.key_id,
            "parts": [p.to_dict() for p in self.parts],
        }

    def canonical(self) -> bytes:
        """The canonical manifest bytes (what the signature covers, after the domain)."""
        return canonical_json(self.to_dict())

    def digest(self) -> str:
        """SHA-256 of :meth:`canonical`: tells apart two manifests claiming one version."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def part(self, name: str) -> PartSpec | None:
        for spec in self.parts:
            if spec.name == name:
                return spec
        return None

    def part_ref(self, name: str) -> str:
        """The label a part travels under: binds it to this store, type and version."""
        return part_ref(self.store, self.type, self.version, name)

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.parts)


def part_ref(store: str, bundle_type: str, version: int, name: str) -> str:
    """``store/type/v<version>/name``: parts are delivered keyed by this, so a part of one
    bundle offered with another bundle's manifest is caught by its label (``mixed_parts``)
    before its bytes are even looked at."""
    return f"{store}/{bundle_type}/v{version}/{name}"


def parse_manifest(obj: Any, caps: Caps = DEFAULT_CAPS) -> Manifest:
    """Validate a manifest object strictly; raises :class:`BundleRejected`.

    Codes: ``malformed`` (shape, types, patterns), ``version_range``, ``oversize``
    (declared sizes above :class:`Caps`).
    """
    m = exact_fields(obj, MANIFEST_FIELDS, "manifest")
    bundle_type = str_field(m, "type", _BUNDLE_TYPE)
    store = str_field(m, "store", _STORE)
    version = int_field(m, "version", 1, MAX_VERSION, code="version_range")
    issued_at = int_field(m, "issued_at", 0, MAX_TIME)
    expires_at = int_field(m, "expires_at", 0, MAX_TIME)
    if expires_at <= issued_at:
        reject("malformed", "expires_at must be after issued_at")
    key_id = str_field(m, "key_id", _KEY_ID)
    raw_parts = m["parts"]
    if not isinstance(raw_parts, list) or not raw_parts:
        reject("malformed", "parts must be a non-empty list")
    if len(raw_parts) > caps.max_parts:
        reject("oversize", f"{len(raw_parts)} parts, cap {caps.max_parts}")
    parts: list[PartSpec] = []
    names: set[str] = set()
    for raw in raw_parts:
        p = exact_fields(raw, PART_FIELDS, "part")
        name = str_field(p, "name", _NAME)
        if name in names:
            reject("malformed", f"part name {name!r} listed twice")
        names.add(name)
        kind = p["kind"]
        if not isinstance(kind, str) or kind not in PART_KINDS:
            reject("malformed", f"part {name!r}: unknown kind")
        sha = str_field(p, "sha256", _SHA256)
        size = int_field(p, "size", 0, MAX_VERSION)
        cap = caps.part_cap(kind)
        if size > cap:
            reject("oversize", f"part {name!r} ({kind}) declares {size} bytes, cap {cap}")
        parts.append(PartSpec(name=name, kind=kind, sha256=sha, size=size))
    total = sum(p.size for p in parts)
    if total > caps.total_bytes:
        reject("oversize", f"parts total {total} bytes, cap {caps.total_bytes}")
    kinds = [p.kind for p in parts]
    for single in ("model", "model_card"):
        if kinds.count(single) > 1:
            reject("malformed", f"more than one {single} part")
    if ("model" in kinds) != ("model_card" in kinds):
        reject("malformed", "a model part and its model_card part come together")
    return Manifest(
        type=bundle_type,
        store=store,
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        key_id=key_id,
        parts=tuple(parts),
    )


def build_manifest(
    *,
    bundle_type: str,
    store: str,
    version: int,
    issued_at: int,
    expires_at: int,
    key_id: str,
    parts: Mapping[str, tuple[str, bytes]],
    caps: Caps = DEFAULT_CAPS,
) -> Manifest:
    """Hub side: the manifest for ``parts`` (``name -> (kind, bytes)``), validated exactly
    as the cart will validate it, so the hub cannot publish what carts must refuse."""
    obj = {
        "type": bundle_type,
        "store": store,
        "version": version,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "key_id": key_id,
        "parts": [
            {
                "name": name,
                "kind": kind,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for name, (kind, data) in parts.items()
        ],
    }
    return parse_manifest(obj, caps)


# -- chunks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One piece of a large part. ``sha256_of_chunk`` only catches transport damage early
    (so a resumed download refetches one chunk, not the part); authenticity comes from the
    assembled part hashing to the signed manifest."""

    bundle_version: int
    part: str
    index: int
    count: int
    sha256_of_chunk: str
    data: bytes

    @classmethod
    def from_mapping(cls, obj: Any) -> Chunk:
        """Strictly typed chunk from a decoded payload (``data`` already bytes)."""
        c = exact_fields(obj, CHUNK_FIELDS, "chunk")
        version = int_field(c, "bundle_version", 1, MAX_VERSION, code="version_range")
        part = str_field(c, "part", _NAME)
        count = int_field(c, "count", 1, MAX_VERSION)
        index = int_field(c, "index", 0, MAX_VERSION)
        sha = str_field(c, "sha256_of_chunk", _SHA256)
        data = c["data"]
        if not isinstance(data, bytes):
            reject("malformed", "chunk data must be bytes")
        return cls(version, part, index, count, sha, data)


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks a part of ``size`` bytes is published as (an empty part is one)."""
    return max(1, math.ceil(size / chunk_size))


def split_part(manifest: Manifest, name: str, data: bytes, chunk_size: int) -> list[Chunk]:
    """Hub side: cut one part of ``manifest`` into chunks of at most ``chunk_size`` bytes."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if manifest.part(name) is None:
        raise ValueError(f"manifest has no part {name!r}")
    count = chunk_count(len(data), chunk_size)
    pieces = [data[i * chunk_size : (i + 1) * chunk_size] for i in range(count)]
    return [
        Chunk(
            bundle_version=manifest.version,
            part=name,
            index=i,
            count=count,
            sha256_of_chunk=hashlib.sha256(piece).hexdigest(),
            data=piece,
        )
        for i, piece in enumerate(pieces)
    ]
