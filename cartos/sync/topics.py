"""Every MQTT topic of the cart ↔ hub protocol, built and parsed in one place.

No other module formats or splits a topic string. Keeping the layout here
means the broker ACL (which pins a cart to ``cartos/v1/<store>/<cart>/…`` by
its certificate identity), the documentation (``docs/mqtt.md``) and the code
cannot drift apart, and a hostile or malformed segment is refused before it
can widen a subscription (``+``/``#``) or escape a cart's subtree (``/``).

Layout (version ``v1``; a breaking change gets a new version prefix), with
the topic kind each carries and who publishes it:

* ``cartos/v1/<store>/<cart>/available``: ``available``, cart (and its last
  will), retained;
* ``cartos/v1/<store>/<cart>/<stream>``: ``uplink``, cart;
* ``cartos/v1/<store>/<cart>/state``: ``state``, cart, retained;
* ``cartos/v1/<store>/<cart>/ack``: ``ack``, hub;
* ``cartos/v1/<store>/<cart>/cmd/req``: ``cmd_req``, hub;
* ``cartos/v1/<store>/<cart>/cmd/res``: ``cmd_res``, cart;
* ``cartos/v1/<store>/bundles/manifest``: ``bundle_manifest``, hub, retained;
* ``cartos/v1/<store>/bundles/parts/<bundle>/<part>/<chunk>``:
  ``bundle_chunk``, hub, retained. ``<bundle>`` is :func:`bundle_ref`
  (``<type>-<version>``, e.g. ``catalogue-42``): bundle versions count per
  bundle type, so a version number alone would let two releases share topics.

``<stream>`` is one of the basket outbox streams (``events``,
``corrections``, ``review``, ``telemetry``). ``<cart>`` is the cart's
certificate identity (the TLS client certificate CN, which the broker uses as
the MQTT username). ``bundles`` and ``hub`` are reserved for store-wide
topics and can never be cart identities. The one retained manifest topic
carries every bundle type's current signed envelope at once, so a release of
one type never hides another's from a cart that was offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cartos.basket.schema import STREAMS
from cartos.sync.errors import TopicError

PREFIX: Final = "cartos"
VERSION: Final = "v1"
ROOT: Final = f"{PREFIX}/{VERSION}"
"""Every v1 topic starts with this; a v2 layout would live beside it during a migration."""

UPLINK_STREAMS: Final[tuple[str, ...]] = STREAMS
"""The outbox streams a cart publishes, one topic each (the basket defines them)."""

MAX_SEGMENT_LENGTH: Final = 64
"""Longest store, cart, bundle or part segment: ample for ids, short enough for ACL logs."""

MAX_CHUNK_INDEX: Final = 999_999
"""Highest bundle chunk number; a bundle is far smaller than a million chunks."""

RESERVED_CART_IDS: Final[frozenset[str]] = frozenset({"bundles", "hub"})
"""Segments used for store-wide topics; a cart with such an identity would shadow them."""

_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK_RE: Final = re.compile(r"0|[1-9][0-9]{0,5}")
_BUNDLE_TYPE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")

MAX_BUNDLE_VERSION: Final = 2**63 - 1
"""Highest bundle version (SQLite's INTEGER range, as in :mod:`cartos.sync.bundles`)."""

_BUNDLES: Final = "bundles"
_MANIFEST: Final = "manifest"
_PARTS: Final = "parts"
_CMD: Final = "cmd"
_REQ: Final = "req"
_RES: Final = "res"


class Kind(StrEnum):
    """What a topic carries; each kind has exactly one payload schema."""

    AVAILABLE = "available"
    UPLINK = "uplink"
    STATE = "state"
    ACK = "ack"
    CMD_REQ = "cmd_req"
    CMD_RES = "cmd_res"
    BUNDLE_MANIFEST = "bundle_manifest"
    BUNDLE_CHUNK = "bundle_chunk"


class Publisher(StrEnum):
    """Who may publish on a topic (the broker ACL enforces it)."""

    CART = "cart"
    HUB = "hub"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """Delivery properties of one topic kind; ``docs/mqtt.md`` documents the same table."""

    kind: Kind
    publisher: Publisher
    retained: bool
    qos: int
    schema: str
    """File name under ``cartos/sync/schemas/`` that validates the payload."""


SPECS: Final[dict[Kind, TopicSpec]] = {
    spec.kind: spec
    for spec in (
        TopicSpec(Kind.AVAILABLE, Publisher.CART, True, 1, "available.schema.json"),
        TopicSpec(Kind.UPLINK, Publisher.CART, False, 1, "uplink.schema.json"),
        TopicSpec(Kind.STATE, Publisher.CART, True, 1, "state.schema.json"),
        TopicSpec(Kind.ACK, Publisher.HUB, False, 1, "ack.schema.json"),
        TopicSpec(Kind.CMD_REQ, Publisher.HUB, False, 1, "cmd_req.schema.json"),
        TopicSpec(Kind.CMD_RES, Publisher.CART, False, 1, "cmd_res.schema.json"),
        TopicSpec(Kind.BUNDLE_MANIFEST, Publisher.HUB, True, 1, "bundle_manifest.schema.json"),
        TopicSpec(Kind.BUNDLE_CHUNK, Publisher.HUB, True, 1, "bundle_chunk.schema.json"),
    )
}
"""QoS 1 everywhere: duplicates are harmless (every message has an id and the
receiver deduplicates), while QoS 2 would add a round trip and still not make a
message durable at its destination."""


def spec(kind: Kind | str) -> TopicSpec:
    """Delivery properties of ``kind`` (QoS, retained, publisher, schema file)."""
    try:
        return SPECS[Kind(kind)]
    except ValueError:
        raise TopicError(f"unknown topic kind {kind!r}") from None


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its kind and the identities and coordinates it names."""

    kind: Kind
    store: str
    cart: str | None = None
    stream: str | None = None
    bundle: str | None = None
    part: str | None = None
    chunk: int | None = None

    def render(self) -> str:
        """The topic string again (``parse(t).render() == t`` for every valid ``t``)."""
        kind = self.kind
        if kind is Kind.BUNDLE_MANIFEST:
            return bundle_manifest(self.store)
        if kind is Kind.BUNDLE_CHUNK:
            if self.bundle is None or self.part is None or self.chunk is None:
                raise TopicError("a bundle chunk topic needs bundle, part and chunk")
            return bundle_chunk(self.store, self.bundle, self.part, self.chunk)
        if self.cart is None:
            raise TopicError(f"a {kind} topic needs a cart")
        if kind is Kind.UPLINK:
            if self.stream is None:
                raise TopicError("an uplink topic needs a stream")
            return uplink(self.store, self.cart, self.stream)
        return _CART_BUILDERS[kind](self.store, self.cart)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription filter with the QoS to subscribe at."""

    filter: str
    qos: int


# -- validation --------------------------------------------------------------


def validate_segment(value: object, what: str = "segment") -> str:
    """Return ``value`` if it is a safe single topic segment, else raise :class:`TopicError`.

    Allowed: 1–64 ASCII letters, digits, ``.``, ``_`` and ``-``, starting with
    a letter or digit. That excludes the MQTT wildcards ``+``/``#``, the level
    separator ``/``, ``$`` (broker-internal topics), whitespace, NUL and any
    non-ASCII look-alike, and it keeps ``.``/``..`` out of segments a cart may
    later use as a file name (a bundle reference).
    """
    if not isinstance(value, str):
        raise TopicError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise TopicError(f"{what} must not be empty")
    if len(value) > MAX_SEGMENT_LENGTH:
        raise TopicError(f"{what} is {len(value)} characters long (at most {MAX_SEGMENT_LENGTH})")
    if _SEGMENT_RE.fullmatch(value) is None:
        raise TopicError(
            f"{what} {_shorten(value)} may only hold ASCII letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit (no '/', '+', '#', '$' or spaces)"
        )
    return value


def validate_cart(cart: object) -> str:
    """A cart identity: a safe segment that does not collide with a store-wide topic."""
    value = validate_segment(cart, "cart id")
    if value in RESERVED_CART_IDS:
        raise TopicError(f"cart id {value!r} is reserved for store-wide topics")
    return value


def validate_stream(stream: object) -> str:
    """One of the basket outbox streams."""
    if not isinstance(stream, str) or stream not in UPLINK_STREAMS:
        raise TopicError(
            f"unknown uplink stream {_shorten(stream)} (known: {', '.join(UPLINK_STREAMS)})"
        )
    return stream


def validate_chunk(chunk: object) -> int:
    """A bundle chunk number, 0 … :data:`MAX_CHUNK_INDEX` (``bool`` is not a number here)."""
    if not isinstance(chunk, int) or isinstance(chunk, bool):
        raise TopicError(f"chunk must be an int, got {type(chunk).__name__}")
    if not 0 <= chunk <= MAX_CHUNK_INDEX:
        raise TopicError(f"chunk {chunk} outside 0..{MAX_CHUNK_INDEX}")
    return chunk


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- builders ------------------------------------------------------------------


def _cart_base(store: str, cart: str) -> str:
    return f"{ROOT}/{validate_segment(store, 'store id')}/{validate_cart(cart)}"


def uplink(store: str, cart: str, stream: str) -> str:
    """``cartos/v1/<store>/<cart>/<stream>``: one outbox stream of one cart."""
    return f"{_cart_base(store, cart)}/{validate_stream(stream)}"


def available(store: str, cart: str) -> str:
    """``cartos/v1/<store>/<cart>/available``: retained online/offline/stopped (last will)."""
    return f"{_cart_base(store, cart)}/available"


def state(store: str, cart: str) -> str:
    """``cartos/v1/<store>/<cart>/state``: the cart's retained status summary."""
    return f"{_cart_base(store, cart)}/state"


def ack(store: str, cart: str) -> str:
    """``cartos/v1/<store>/<cart>/ack``: hub → cart, sent only after the hub's durable commit."""
    return f"{_cart_base(store, cart)}/ack"


def command_request(store: str, cart: str) -> str:
    """``cartos/v1/<store>/<cart>/cmd/req``: hub → cart command requests."""
    return f"{_cart_base(store, cart)}/{_CMD}/{_REQ}"


def command_response(store: str, cart: str) -> str:
    """``cartos/v1/<store>/<cart>/cmd/res``: cart → hub responses, ``transaction`` echoed."""
    return f"{_cart_base(store, cart)}/{_CMD}/{_RES}"


def bundle_manifest(store: str) -> str:
    """``cartos/v1/<store>/bundles/manifest``: the retained, signed manifest announcement."""
    return f"{ROOT}/{validate_segment(store, 'store id')}/{_BUNDLES}/{_MANIFEST}"


def bundle_chunk(store: str, bundle: str, part: str, chunk: int) -> str:
    """``cartos/v1/<store>/bundles/parts/<bundle>/<part>/<chunk>``: one retained chunk.

    ``bundle`` names one release within the store; build it with :func:`bundle_ref`.
    """
    return (
        f"{ROOT}/{validate_segment(store, 'store id')}/{_BUNDLES}/{_PARTS}/"
        f"{validate_segment(bundle, 'bundle')}/{validate_segment(part, 'bundle part')}/"
        f"{validate_chunk(chunk)}"
    )


def bundle_ref(bundle_type: str, version: int) -> str:
    """The ``<bundle>`` segment of chunk topics: ``<type>-<version>`` (``catalogue-42``).

    Bundle versions count per store and bundle type (see ``docs/bundles.md``),
    so the version alone is not unique. A type is ``[a-z][a-z0-9_]{0,31}``
    (no ``-``), so the reference splits back unambiguously.
    """
    validate_bundle_type(bundle_type)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TopicError(f"bundle version must be an int, got {type(version).__name__}")
    if not 1 <= version <= MAX_BUNDLE_VERSION:
        raise TopicError(f"bundle version {version} outside 1..{MAX_BUNDLE_VERSION}")
    return validate_segment(f"{bundle_type}-{version}", "bundle")


def is_bundle_type(value: object) -> bool:
    """Whether ``value`` is a bundle type: ``[a-z][a-z0-9_]{0,31}``."""
    return isinstance(value, str) and _BUNDLE_TYPE_RE.fullmatch(value) is not None


def validate_bundle_type(value: object) -> str:
    """``value`` if it is a bundle type, else :class:`TopicError`."""
    if not is_bundle_type(value):
        raise TopicError(f"bad bundle type {_shorten(value)}")
    assert isinstance(value, str)
    return value


_CART_BUILDERS = {
    Kind.AVAILABLE: available,
    Kind.STATE: state,
    Kind.ACK: ack,
    Kind.CMD_REQ: command_request,
    Kind.CMD_RES: command_response,
}


# -- subscription filters ------------------------------------------------------


def bundle_parts_filter(store: str, bundle: str | None = None) -> str:
    """Filter for the chunks of one ``bundle`` (or of every retained bundle when None).

    A cart subscribes to one bundle while it downloads it, so it is not sent
    the chunks of every retained release at once.
    """
    base = f"{ROOT}/{validate_segment(store, 'store id')}/{_BUNDLES}/{_PARTS}"
    if bundle is None:
        return f"{base}/#"
    return f"{base}/{validate_segment(bundle, 'bundle')}/#"


def cart_subscriptions(store: str, cart: str) -> tuple[Subscription, ...]:
    """What a cart subscribes to: its acks, its command requests and the bundle manifest."""
    return tuple(
        Subscription(topic, spec(kind).qos)
        for topic, kind in (
            (ack(store, cart), Kind.ACK),
            (command_request(store, cart), Kind.CMD_REQ),
            (bundle_manifest(store), Kind.BUNDLE_MANIFEST),
        )
    )


def hub_subscriptions(store: str) -> tuple[Subscription, ...]:
    """What the hub subscribes to: every cart's availability, streams, state and responses."""
    base = f"{ROOT}/{validate_segment(store, 'store id')}/+"
    leaves = [*UPLINK_STREAMS, "available", "state", f"{_CMD}/{_RES}"]
    return tuple(Subscription(f"{base}/{leaf}", 1) for leaf in leaves)


# -- parsing -------------------------------------------------------------------


def parse(topic: object) -> Topic:
    """Parse a received topic into a :class:`Topic`; anything outside v1 raises TopicError.

    Every segment is validated exactly as the builders validate it, so a
    parsed topic always renders back to the same string and its identities
    are safe to use in logs, metrics labels and file names.
    """
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a string, got {type(topic).__name__}")
    if len(topic) > 16 * MAX_SEGMENT_LENGTH:
        raise TopicError(f"topic is {len(topic)} characters long")
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != PREFIX:
        raise TopicError(f"not a {PREFIX} topic: {_shorten(topic)}")
    if parts[1] != VERSION:
        raise TopicError(f"unsupported topic version {_shorten(parts[1])} (this cart speaks v1)")
    store = validate_segment(parts[2], "store id")
    rest = parts[3:]
    if rest[0] == _BUNDLES:
        if rest[1:] == [_MANIFEST]:
            return Topic(Kind.BUNDLE_MANIFEST, store)
        if len(rest) == 5 and rest[1] == _PARTS:
            bundle = validate_segment(rest[2], "bundle")
            part = validate_segment(rest[3], "bundle part")
            if _CHUNK_RE.fullmatch(rest[4]) is None:
                raise TopicError(f"bad chunk number {_shorten(rest[4])}")
            return Topic(Kind.BUNDLE_CHUNK, store, bundle=bundle, part=part, chunk=int(rest[4]))
        raise TopicError(f"unknown bundle topic {_shorten(topic)}")
    cart = validate_cart(rest[0])
    leaf = rest[1:]
    if len(leaf) == 1:
        name = leaf[0]
        if name in UPLINK_STREAMS:
            return Topic(Kind.UPLINK, store, cart, stream=name)
        if name == "available":
            return Topic(Kind.AVAILABLE, store, cart)
        if name == "state":
            return Topic(Kind.STATE, store, cart)
        if name == "ack":
            return Topic(Kind.ACK, store, cart)
    elif leaf == [_CMD, _REQ]:
        return Topic(Kind.CMD_REQ, store, cart)
    elif leaf == [_CMD, _RES]:
        return Topic(Kind.CMD_RES, store, cart)
    raise TopicError(f"unknown cart topic {_shorten(topic)}")
