"""Decode and encode MQTT payloads: hostile input in, schema-valid JSON out.

Anything that can publish on a topic the cart or hub subscribes to can send
anything: a 10 MB blob, invalid UTF-8, ``[[[[…`` a hundred thousand levels
deep, ``NaN``, an object with the same key twice. :func:`decode` turns every
such payload into a :class:`~cartos.sync.errors.PayloadRejected` with a
stable reason code, counts it in a :class:`RejectionCounter` and logs it, and
never lets another exception (``RecursionError``, ``MemoryError`` from a
runaway parse, ``UnicodeDecodeError``) reach the MQTT callback that would
otherwise kill the network loop. The checks run cheapest first, and each one
protects the next:

1. ``empty`` / ``too_large``: the byte length, against a per-kind cap, before
   anything else looks at the bytes;
2. ``not_utf8``: strict UTF-8 (and, after parsing, no lone surrogate escapes
   such as ``"\\ud800"`` that would break every later re-encode);
3. ``too_deep``: bracket depth scanned on the text without recursion, so
   :func:`json.loads` (which recurses per level) only ever sees shallow input;
4. ``not_json`` / ``non_finite`` / ``duplicate_key``: a strict parse that
   refuses ``NaN``/``Infinity``/overflowing floats and repeated keys (two
   parsers picking different duplicates is a classic way to smuggle data past
   a validator);
5. ``schema``: JSON Schema draft 2020-12 (``cartos/sync/schemas/``);
6. ``mismatch`` (only :func:`decode_message`): the identities in the payload
   must agree with the topic, which the broker ACL ties to the sender's
   certificate.

:func:`encode` applies the same rules to outgoing payloads, so a cart never
publishes something its hub would reject, and adds a unique ``id`` when the
caller has not set one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import re
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final, NoReturn, Protocol

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from cartos.basket.outbox import OutboxMessage
from cartos.sync import topics
from cartos.sync.errors import PayloadRejected, TopicError
from cartos.sync.topics import Kind, Topic

log = logging.getLogger(__name__)

# -- reason codes --------------------------------------------------------------

EMPTY: Final = "empty"
"""Zero-length payload. On a retained topic this is the broker clearing it, not an attack."""
TOO_LARGE: Final = "too_large"
NOT_UTF8: Final = "not_utf8"
TOO_DEEP: Final = "too_deep"
NOT_JSON: Final = "not_json"
NON_FINITE: Final = "non_finite"
DUPLICATE_KEY: Final = "duplicate_key"
SCHEMA: Final = "schema"
MISMATCH: Final = "mismatch"
BAD_TOPIC: Final = "bad_topic"
UNKNOWN_KIND: Final = "unknown_kind"
INTERNAL: Final = "internal"
"""A check itself failed unexpectedly; the payload is still refused, and the count flags a bug."""

REASONS: Final[tuple[str, ...]] = (
    EMPTY,
    TOO_LARGE,
    NOT_UTF8,
    TOO_DEEP,
    NOT_JSON,
    NON_FINITE,
    DUPLICATE_KEY,
    SCHEMA,
    MISMATCH,
    BAD_TOPIC,
    UNKNOWN_KIND,
    INTERNAL,
)
"""Every reason a payload can be rejected for (metrics label values)."""

UNKNOWN_TOPIC_KIND: Final = "unknown"
"""Counter label used when the topic itself did not parse, so there is no kind."""

# -- limits --------------------------------------------------------------------

KIB: Final = 1024

DEFAULT_MAX_BYTES: Final[Mapping[Kind, int]] = {
    Kind.AVAILABLE: 4 * KIB,
    Kind.UPLINK: 256 * KIB,
    Kind.STATE: 64 * KIB,
    Kind.ACK: 4 * KIB,
    Kind.CMD_REQ: 64 * KIB,
    Kind.CMD_RES: 256 * KIB,
    Kind.BUNDLE_MANIFEST: 1024 * KIB,
    Kind.BUNDLE_CHUNK: 1024 * KIB,
}
"""Largest accepted payload per kind. A bundle chunk carries up to 512 KiB of
data (~683 KiB as base64); the manifest announcement carries every bundle
type's signed envelope (each at most 64 KiB) with the key certificates;
everything else is small JSON."""

DEFAULT_MAX_DEPTH: Final = 32
"""Deepest accepted nesting of arrays and objects (the top-level object is depth 1)."""

DETAIL_CHARS: Final = 200
"""Longest rejection detail: logs and metrics must not echo a hostile payload."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and nesting caps; the defaults are the protocol's, tests may shrink them."""

    max_bytes: Mapping[Kind, int] = field(default_factory=lambda: dict(DEFAULT_MAX_BYTES))
    max_depth: int = DEFAULT_MAX_DEPTH

    def cap(self, kind: Kind) -> int:
        return self.max_bytes.get(kind, 256 * KIB)


DEFAULT_LIMITS: Final = Limits()

# -- counting ------------------------------------------------------------------


class RejectionCounter:
    """Rejected payloads per (topic kind, reason), safe to share between threads.

    MQTT callbacks run on the client's network thread while metrics are read
    elsewhere, hence the lock. Each rejection is logged with a bounded detail;
    the log line is a WARNING the 1st, 2nd, 4th, 8th, … time a (kind, reason)
    pair occurs and DEBUG otherwise, so a flood of junk cannot flood the log
    while the counts stay exact.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, kind: str, exc: PayloadRejected, topic: str | None = None) -> int:
        """Count and log one rejection; returns the new count for (kind, reason)."""
        key = (str(kind), exc.reason)
        with self._lock:
            self._counts[key] += 1
            n = self._counts[key]
        level = logging.WARNING if n & (n - 1) == 0 else logging.DEBUG
        where = f" on {_shorten(topic)}" if topic is not None else ""
        log.log(
            level, "rejected %s payload%s (%s, #%d): %s", kind, where, exc.reason, n, exc.detail
        )
        return n

    def count(self, kind: str | None = None, reason: str | None = None) -> int:
        """Rejections matching ``kind`` and ``reason`` (None matches any)."""
        with self._lock:
            return sum(
                n
                for (k, r), n in self._counts.items()
                if (kind is None or k == kind) and (reason is None or r == reason)
            )

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of every (kind, reason) count, for a metrics collector."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


REJECTIONS: Final = RejectionCounter()
"""The process-wide counter :func:`decode` uses unless given another."""

# -- schemas -------------------------------------------------------------------


@cache
def _registry() -> Registry[Any]:
    """Every shipped schema, registered by its ``$id``, so ``$ref`` never leaves the package."""
    folder = resources.files("cartos.sync").joinpath("schemas")
    resources_: list[tuple[str, Resource[Any]]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".schema.json"):
            contents = json.loads(entry.read_text(encoding="utf-8"))
            resources_.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources_)


def schema_document(kind: Kind | str) -> dict[str, Any]:
    """The JSON Schema document that validates payloads of ``kind``."""
    name = topics.spec(kind).schema
    text = resources.files("cartos.sync").joinpath("schemas", name).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _is_integer(checker: Any, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator: Any = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)
"""Draft 2020-12, except that ``7.0`` is not an integer: JSON Schema would accept it
where a seq or version belongs, and a float that slips through there is the kind of
type confusion :mod:`cartos.sync.bundles` refuses too."""


def _inline_refs(node: Any, base: str, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``$ref`` replaced by the schema it names.

    Why: resolving references is most of what validating a small message costs (URL joins and
    registry lookups on every check). The schemas are fixed at build time, so they are
    resolved once here; a reference that loops back on itself is left for the resolver.
    """
    if isinstance(node, list):
        return [_inline_refs(item, base, seen) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline_refs(v, base, seen) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out
    resolved = _registry().resolver(base_uri=base).lookup(ref)
    target = f"{resolved.resolver._base_uri}|{ref}"  # the base of the target
    if target in seen:
        return node
    inner = _inline_refs(resolved.contents, resolved.resolver._base_uri,
                         (*seen, target))
    if not out:
        return inner
    return {**out, "allOf": [*out.get("allOf", []), inner]}


@cache
def _validator(kind: Kind) -> Any:
    document = schema_document(kind)
    Draft202012Validator.check_schema(document)
    inlined = _inline_refs(document, str(document["$id"]))
    return _StrictValidator(inlined, registry=_registry())


def _kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except (ValueError, TypeError):
        raise PayloadRejected(UNKNOWN_KIND, f"unknown topic kind {_shorten(kind)}") from None


# -- decoding ------------------------------------------------------------------


def decode(
    kind: Kind | str,
    raw: bytes | bytearray | memoryview,
    *,
    counter: RejectionCounter | None = REJECTIONS,
    limits: Limits = DEFAULT_LIMITS,
    topic: str | None = None,
) -> dict[str, Any]:
    """The payload as a schema-valid dict, or :class:`PayloadRejected` (counted and logged).

    ``counter=None`` raises without counting (for callers that count
    themselves); ``topic`` only enriches the log line.
    """
    try:
        return _decode(_kind(kind), raw, limits)
    except PayloadRejected as exc:
        if counter is not None:
            counter.record(_label(kind), exc, topic)
        raise
    except Exception as exc:  # a bug here must not kill the MQTT network loop
        rejected = PayloadRejected(INTERNAL, f"unexpected {type(exc).__name__} while decoding")
        if counter is not None:
            counter.record(_label(kind), rejected, topic)
        raise rejected from exc


def decode_message(
    topic: str,
    raw: bytes | bytearray | memoryview,
    *,
    counter: RejectionCounter | None = REJECTIONS,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Topic, dict[str, Any]]:
    """Parse ``topic``, decode ``raw`` for its kind and check the two agree.

    This is what an ``on_message`` callback should call: a topic outside the
    v1 layout is a ``bad_topic`` rejection (counted under kind ``unknown``),
    and a payload whose ``cart``, ``store``, ``stream``, ``version``, ``part``
    or ``chunk`` differs from its topic is a ``mismatch``: the topic is what
    the broker ACL checked against the sender's certificate, the payload is
    only what the sender claims.
    """
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        rejected = PayloadRejected(BAD_TOPIC, str(exc)[:DETAIL_CHARS])
        if counter is not None:
            counter.record(UNKNOWN_TOPIC_KIND, rejected, None)
        raise rejected from None
    payload = decode(parsed.kind, raw, counter=counter, limits=limits, topic=topic)
    for name, claimed, expected in _identities(parsed, payload):
        if claimed != expected:
            rejected = PayloadRejected(
                MISMATCH, f"payload {name} {_shorten(claimed)} but topic says {expected!r}"
            )
            if counter is not None:
                counter.record(str(parsed.kind), rejected, topic)
            raise rejected
    return parsed, payload


def _identities(parsed: Topic, payload: Mapping[str, Any]) -> list[tuple[str, object, object]]:
    """(field, payload's value, topic's value) for every identity both of them state."""
    if parsed.kind is Kind.BUNDLE_CHUNK:
        return [
            ("bundle", _chunk_ref(payload), parsed.bundle),
            ("part", payload["part"], parsed.part),
            ("index", payload["index"], parsed.chunk),
        ]
    pairs: list[tuple[str, object, object]] = []
    for name in ("store", "cart", "stream"):
        expected = getattr(parsed, name)
        if expected is not None and name in payload:
            pairs.append((name, payload[name], expected))
    return pairs


def _chunk_ref(payload: Mapping[str, Any]) -> str:
    try:
        return topics.bundle_ref(payload["type"], payload["bundle_version"])
    except TopicError as exc:  # the schema admits only valid values; kept for safety
        raise PayloadRejected(SCHEMA, str(exc)[:DETAIL_CHARS]) from None


def _decode(kind: Kind, raw: bytes | bytearray | memoryview, limits: Limits) -> dict[str, Any]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        _reject(NOT_JSON, f"payload must be bytes, got {type(raw).__name__}")
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    if size == 0:
        _reject(EMPTY, "zero-length payload")
    cap = limits.cap(kind)
    if size > cap:
        _reject(TOO_LARGE, f"{size} bytes, limit for {kind} is {cap}")
    try:
        text = bytes(raw).decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        _reject(NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    depth = nesting_depth(text, limit=limits.max_depth)
    if depth > limits.max_depth:
        _reject(TOO_DEEP, f"nesting deeper than {limits.max_depth}")
    obj = _strict_loads(text)
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(obj):
        _reject(NOT_UTF8, "string with a lone UTF-16 surrogate escape")
    _validate(kind, obj)
    if not isinstance(obj, dict):  # the schemas all say "type": "object"
        _reject(SCHEMA, "top level is not an object")
    if kind is Kind.BUNDLE_CHUNK:
        _chunk_data(obj)  # the pattern admits misplaced padding that base64 does not
    return obj


def _chunk_data(payload: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(payload["data"], validate=True)
    except (binascii.Error, ValueError):
        _reject(SCHEMA, "data: not valid base64")


def _reject(reason: str, detail: str) -> NoReturn:
    raise PayloadRejected(reason, detail[:DETAIL_CHARS])


_STRUCTURE = re.compile(r'[\[\]{}"]')
_IN_STRING = re.compile(r'["\\]')


def nesting_depth(text: str, limit: int | None = None) -> int:
    """Deepest array/object nesting in ``text``, without parsing or recursing.

    A linear scan: outside strings it jumps from one bracket or quote to the
    next, inside a string from one quote or backslash to the next (skipping
    the escaped character), so brackets inside strings do not count and no
    input makes it quadratic. With ``limit`` it stops as soon as the depth
    exceeds it and returns ``limit + 1``. Unbalanced text is for the JSON
    parser to refuse; this only bounds the depth it will be asked to handle.
    """
    depth = deepest = 0
    pos = 0
    end = len(text)
    structure = _STRUCTURE.search
    in_string = _IN_STRING.search
    while pos < end:
        m = structure(text, pos)
        if m is None:
            break
        ch = m.group()
        pos = m.end()
        if ch == '"':
            while True:
                s = in_string(text, pos)
                if s is None:
                    return deepest  # unterminated string: the parser will say not_json
                if s.group() == "\\":
                    pos = s.end() + 1
                    continue
                pos = s.end()
                break
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if limit is not None and deepest > limit:
                    return limit + 1
        elif depth > 0:
            depth -= 1
    return deepest


class _DuplicateKeyError(Exception):
    pass


class _NonFiniteError(Exception):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteError(text)
    return value


def _no_constant(text: str) -> NoReturn:
    raise _NonFiniteError(text)


def _strict_loads(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs_without_duplicates,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except _DuplicateKeyError as exc:
        _reject(DUPLICATE_KEY, f"key {_shorten(exc.args[0])} appears twice in one object")
    except _NonFiniteError as exc:
        _reject(NON_FINITE, f"{_shorten(exc.args[0])} is not a finite number")
    except RecursionError:  # unreachable after nesting_depth, kept as a second line
        _reject(TOO_DEEP, "nesting too deep for the parser")
    except json.JSONDecodeError as exc:
        _reject(NOT_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:  # e.g. an integer with more digits than int() accepts
        _reject(NOT_JSON, str(exc))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether any key or string holds a surrogate code point (iterative: depth is bounded,
    but this stays safe even without that guarantee)."""
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _validate(kind: Kind, obj: Any) -> None:
    error = best_match(_validator(kind).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        _reject(SCHEMA, f"{where}: {_shorten(error.message, DETAIL_CHARS - 40)}")


# -- encoding ------------------------------------------------------------------


def new_id() -> str:
    """A fresh message id (uuid4 hex), the form the outbox also uses for ``msg_id``."""
    return uuid.uuid4().hex


def encode(kind: Kind | str, obj: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Validate ``obj`` as a ``kind`` payload and serialise it; adds ``id`` when missing.

    Outgoing payloads pass the same checks as incoming ones (size, depth,
    finite numbers, valid Unicode, schema), so a peer never has to reject what
    this side sent. Failures raise :class:`PayloadRejected` without being
    counted: they are bugs on this side, not hostile input. ``obj`` is not
    modified; a resend must reuse the id of the first attempt (pass it in).
    """
    k = _kind(kind)
    message = dict(obj)
    message.setdefault("id", new_id())
    try:
        text = json.dumps(
            message, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
        )
    except RecursionError:
        _reject(TOO_DEEP, "object nested too deep to serialise")
    except ValueError as exc:
        reason = NON_FINITE if "float" in str(exc) else NOT_JSON
        _reject(reason, str(exc))
    except TypeError as exc:
        _reject(NOT_JSON, str(exc))
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        _reject(NOT_UTF8, "string with a lone UTF-16 surrogate")
    cap = limits.cap(k)
    if len(raw) > cap:
        _reject(TOO_LARGE, f"{len(raw)} bytes, limit for {k} is {cap}")
    if nesting_depth(text, limit=limits.max_depth) > limits.max_depth:
        _reject(TOO_DEEP, f"nesting deeper than {limits.max_depth}")
    _validate(k, json.loads(text))
    return raw


def uplink_envelope(
    store: str, cart: str, message: OutboxMessage, *, sent_at: float
) -> dict[str, Any]:
    """The uplink envelope for one outbox row, ready for :func:`encode` (kind ``uplink``).

    The envelope's ``id`` is the row's ``msg_id`` and its ``seq`` the row's
    seq, so every resend of the row is the same message to the hub. The
    ``msg_id``/``stream``/``seq`` copies inside the stored payload are left
    out of ``body``; they live in the envelope.
    """
    body = {k: v for k, v in message.payload.items() if k not in ("msg_id", "stream", "seq")}
    return {
        "id": message.msg_id,
        "cart": cart,
        "store": store,
        "stream": message.stream,
        "seq": message.seq,
        "sent_at": sent_at,
        "body": body,
    }


class ChunkLike(Protocol):
    """The fields of :class:`cartos.sync.bundles.Chunk` that travel in a chunk payload."""

    @property
    def bundle_version(self) -> int: ...
    @property
    def part(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def sha256_of_chunk(self) -> str: ...
    @property
    def data(self) -> bytes: ...


CHUNK_FIELDS: Final = ("bundle_version", "part", "index", "count", "sha256_of_chunk", "data")
"""The chunk fields :meth:`cartos.sync.bundles.Chunk.from_mapping` takes (``data`` as bytes)."""


def chunk_payload(bundle_type: str, chunk: ChunkLike) -> dict[str, Any]:
    """Hub side: the ``bundle_chunk`` payload for one chunk, ready for :func:`encode`.

    Publish it on ``topics.bundle_chunk(store, topics.bundle_ref(bundle_type,
    chunk.bundle_version), chunk.part, chunk.index)``, retained.
    """
    return {
        "type": bundle_type,
        "bundle_version": chunk.bundle_version,
        "part": chunk.part,
        "index": chunk.index,
        "count": chunk.count,
        "sha256_of_chunk": chunk.sha256_of_chunk,
        "data": base64.b64encode(chunk.data).decode("ascii"),
    }


def chunk_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Cart side: a decoded ``bundle_chunk`` payload as ``Chunk.from_mapping`` takes it.

    ``id`` and ``type`` stay behind (the type is in the topic's bundle
    reference, which :func:`decode_message` already matched); ``data`` is
    decoded from base64.
    """
    fields = {name: payload[name] for name in CHUNK_FIELDS}
    fields["data"] = _chunk_data(payload)
    return fields


# -- helpers -------------------------------------------------------------------


def _label(kind: object) -> str:
    """A metrics-safe label for a kind argument that may itself be junk."""
    if isinstance(kind, str):
        with contextlib.suppress(ValueError):
            return str(Kind(kind))
    return UNKNOWN_TOPIC_KIND


def _shorten(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
