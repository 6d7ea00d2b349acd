"""The v1 topic layout: every builder parses back, every hostile segment is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.basket.schema import STREAMS
from cartos.sync import topics
from cartos.sync.errors import SyncError, TopicError
from cartos.sync.topics import Kind, Publisher, Topic

STORE = "store-042"
CART = "cart-0007"

segments = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
cart_ids = segments.filter(lambda s: s not in topics.RESERVED_CART_IDS)

HOSTILE_SEGMENTS: list[object] = [
    "",
    "a/b",
    "/",
    "+",
    "#",
    "a+b",
    "a#",
    "x" * 65,
    "café",
    "саrt",  # Cyrillic look-alikes
    "$SYS",
    "$share",
    " cart",
    "cart 1",
    "cart\x00",
    "cart\n",
    ".",
    "..",
    "-cart",
    "_cart",
    None,
    7,
    b"cart",
]


def all_topics() -> list[tuple[str, Topic]]:
    """One topic of every kind with what parsing it must give."""
    cases = [
        (topics.uplink(STORE, CART, s), Topic(Kind.UPLINK, STORE, CART, stream=s)) for s in STREAMS
    ]
    cases += [
        (topics.available(STORE, CART), Topic(Kind.AVAILABLE, STORE, CART)),
        (topics.state(STORE, CART), Topic(Kind.STATE, STORE, CART)),
        (topics.ack(STORE, CART), Topic(Kind.ACK, STORE, CART)),
        (topics.command_request(STORE, CART), Topic(Kind.CMD_REQ, STORE, CART)),
        (topics.command_response(STORE, CART), Topic(Kind.CMD_RES, STORE, CART)),
        (topics.bundle_manifest(STORE), Topic(Kind.BUNDLE_MANIFEST, STORE)),
        (
            topics.bundle_chunk(STORE, "catalogue-42", "rows", 12),
            Topic(Kind.BUNDLE_CHUNK, STORE, bundle="catalogue-42", part="rows", chunk=12),
        ),
    ]
    return cases


def test_layout_is_the_documented_one() -> None:
    last_of_each_kind = {parsed.kind: topic for topic, parsed in all_topics()}
    assert last_of_each_kind == {
        Kind.UPLINK: f"cartos/v1/{STORE}/{CART}/telemetry",
        Kind.AVAILABLE: f"cartos/v1/{STORE}/{CART}/available",
        Kind.STATE: f"cartos/v1/{STORE}/{CART}/state",
        Kind.ACK: f"cartos/v1/{STORE}/{CART}/ack",
        Kind.CMD_REQ: f"cartos/v1/{STORE}/{CART}/cmd/req",
        Kind.CMD_RES: f"cartos/v1/{STORE}/{CART}/cmd/res",
        Kind.BUNDLE_MANIFEST: f"cartos/v1/{STORE}/bundles/manifest",
        Kind.BUNDLE_CHUNK: f"cartos/v1/{STORE}/bundles/parts/catalogue-42/rows/12",
    }
    assert topics.uplink(STORE, CART, "events") == f"cartos/v1/{STORE}/{CART}/events"


@pytest.mark.parametrize(("topic", "expected"), all_topics(), ids=[t for t, _ in all_topics()])
def test_build_parse_round_trip(topic: str, expected: Topic) -> None:
    parsed = topics.parse(topic)
    assert parsed == expected
    assert parsed.render() == topic


def test_uplink_streams_are_the_basket_outbox_streams() -> None:
    assert topics.UPLINK_STREAMS == STREAMS == ("events", "corrections", "review", "telemetry")


def test_every_kind_has_a_spec_and_a_schema_file() -> None:
    assert set(topics.SPECS) == set(Kind)
    for kind, spec in topics.SPECS.items():
        assert spec.kind is kind
        assert spec.qos == 1
        assert spec.schema == f"{kind.value}.schema.json"
    retained = {k for k, s in topics.SPECS.items() if s.retained}
    assert retained == {Kind.AVAILABLE, Kind.STATE, Kind.BUNDLE_MANIFEST, Kind.BUNDLE_CHUNK}
    hub = {k for k, s in topics.SPECS.items() if s.publisher is Publisher.HUB}
    assert hub == {Kind.ACK, Kind.CMD_REQ, Kind.BUNDLE_MANIFEST, Kind.BUNDLE_CHUNK}
    with pytest.raises(TopicError):
        topics.spec("nope")


@given(store=segments, cart=cart_ids, stream=st.sampled_from(STREAMS))
@settings(max_examples=200, deadline=None)
def test_any_valid_ids_round_trip(store: str, cart: str, stream: str) -> None:
    for topic in (
        topics.uplink(store, cart, stream),
        topics.available(store, cart),
        topics.state(store, cart),
        topics.ack(store, cart),
        topics.command_request(store, cart),
        topics.command_response(store, cart),
    ):
        parsed = topics.parse(topic)
        assert (parsed.store, parsed.cart) == (store, cart)
        assert parsed.render() == topic


@given(store=segments, bundle=segments, part=segments, chunk=st.integers(0, 999_999))
@settings(max_examples=200, deadline=None)
def test_any_valid_bundle_chunk_round_trips(store: str, bundle: str, part: str, chunk: int) -> None:
    topic = topics.bundle_chunk(store, bundle, part, chunk)
    parsed = topics.parse(topic)
    assert (parsed.bundle, parsed.part, parsed.chunk) == (bundle, part, chunk)
    assert parsed.render() == topic


BUILDERS: list[Callable[[object], str]] = [
    lambda v: topics.uplink(v, CART, "events"),  # type: ignore[arg-type]
    lambda v: topics.uplink(STORE, v, "events"),  # type: ignore[arg-type]
    lambda v: topics.available(STORE, v),  # type: ignore[arg-type]
    lambda v: topics.state(v, CART),  # type: ignore[arg-type]
    lambda v: topics.ack(STORE, v),  # type: ignore[arg-type]
    lambda v: topics.command_request(STORE, v),  # type: ignore[arg-type]
    lambda v: topics.command_response(v, CART),  # type: ignore[arg-type]
    lambda v: topics.bundle_manifest(v),  # type: ignore[arg-type]
    lambda v: topics.bundle_chunk(STORE, v, "catalog", 0),  # type: ignore[arg-type]
    lambda v: topics.bundle_chunk(STORE, "1", v, 0),  # type: ignore[arg-type]
    # None is legitimate here (every bundle), so this one is tried with "" instead
    lambda v: topics.bundle_parts_filter(STORE, "" if v is None else v),  # type: ignore[arg-type]
    lambda v: topics.cart_subscriptions(STORE, v)[0].filter,  # type: ignore[arg-type]
    lambda v: topics.hub_subscriptions(v)[0].filter,  # type: ignore[arg-type]
]


@pytest.mark.parametrize("segment", HOSTILE_SEGMENTS, ids=repr)
@pytest.mark.parametrize("builder", range(len(BUILDERS)))
def test_hostile_segments_are_refused(segment: object, builder: int) -> None:
    with pytest.raises(TopicError) as info:
        BUILDERS[builder](segment)
    assert isinstance(info.value, SyncError)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


@pytest.mark.parametrize("reserved", sorted(topics.RESERVED_CART_IDS))
def test_reserved_names_cannot_be_cart_ids(reserved: str) -> None:
    with pytest.raises(TopicError, match="reserved"):
        topics.available(STORE, reserved)
    assert topics.state(reserved, CART)  # fine as a store id


def test_error_message_says_what_is_wrong() -> None:
    with pytest.raises(TopicError, match=r"cart id .*'\+'"):
        topics.ack(STORE, "cart+1")
    with pytest.raises(TopicError, match="at most 64"):
        topics.ack("s" * 65, CART)
    with pytest.raises(TopicError, match="unknown uplink stream"):
        topics.uplink(STORE, CART, "secrets")
    with pytest.raises(TopicError, match="chunk"):
        topics.bundle_chunk(STORE, "1", "model", -1)
    with pytest.raises(TopicError, match="chunk"):
        topics.bundle_chunk(STORE, "1", "model", 1_000_000)
    with pytest.raises(TopicError, match="chunk must be an int"):
        topics.bundle_chunk(STORE, "1", "model", True)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "cartos",
        "cartos/v1",
        "cartos/v1/store",
        "cartos/v2/store/cart/events",
        "carts/v1/store/cart/events",
        "/cartos/v1/store/cart/events",
        "cartos/v1/store/cart/events/",
        "cartos/v1/store/cart/events/extra",
        "cartos/v1/store/cart/unknown",
        "cartos/v1/store/cart/cmd",
        "cartos/v1/store/cart/cmd/other",
        "cartos/v1/store/cart/cmd/req/x",
        "cartos/v1/store/+/events",
        "cartos/v1/store/#",
        "cartos/v1/+/cart/events",
        "cartos/v1/store/bundles/events",
        "cartos/v1/store/hub/available",
        "cartos/v1/store/bundles",
        "cartos/v1/store/bundles/manifest/x",
        "cartos/v1/store/bundles/parts/1/model",
        "cartos/v1/store/bundles/parts/1/model/01",
        "cartos/v1/store/bundles/parts/1/model/-1",
        "cartos/v1/store/bundles/parts/1/model/x",
        "cartos/v1/store/bundles/parts/1/model/1000000",
        "cartos/v1/store/bundles/parts/1/model/1/2",
        "cartos/v1/store/bundles/parts/../model/1",
        "cartos/v1/st\u00f6re/cart/events",
        "cartos/v1/store/cart\x00/events",
        "cartos/v1/" + "a/" * 10_000 + "events",
    ],
)
def test_parse_refuses_topics_outside_v1(topic: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(topic)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(TopicError):
        topics.parse(b"cartos/v1/store/cart/events")


def test_render_refuses_incomplete_topics() -> None:
    with pytest.raises(TopicError):
        Topic(Kind.UPLINK, STORE, CART).render()
    with pytest.raises(TopicError):
        Topic(Kind.ACK, STORE).render()
    with pytest.raises(TopicError):
        Topic(Kind.BUNDLE_CHUNK, STORE, bundle="model-1").render()


def test_cart_subscriptions_cover_exactly_what_a_cart_receives() -> None:
    filters = [s.filter for s in topics.cart_subscriptions(STORE, CART)]
    assert all(s.qos == 1 for s in topics.cart_subscriptions(STORE, CART))

    def received(topic: str) -> bool:
        return any(mqtt.topic_matches_sub(f, topic) for f in filters)

    assert received(topics.ack(STORE, CART))
    assert received(topics.command_request(STORE, CART))
    assert received(topics.bundle_manifest(STORE))
    # not another cart's traffic, not its own uplink, not another store's bundles
    assert not received(topics.ack(STORE, "cart-0008"))
    assert not received(topics.command_request(STORE, "cart-0008"))
    assert not received(topics.uplink(STORE, CART, "events"))
    assert not received(topics.command_response(STORE, CART))
    assert not received(topics.bundle_manifest("store-043"))
    # chunks only through the per-bundle filter, while downloading
    chunk = topics.bundle_chunk(STORE, topics.bundle_ref("model", 7), "model", 3)
    assert not received(chunk)
    assert mqtt.topic_matches_sub(topics.bundle_parts_filter(STORE, "model-7"), chunk)
    assert not mqtt.topic_matches_sub(topics.bundle_parts_filter(STORE, "model-8"), chunk)
    assert not mqtt.topic_matches_sub(topics.bundle_parts_filter(STORE, "catalogue-7"), chunk)
    assert mqtt.topic_matches_sub(topics.bundle_parts_filter(STORE), chunk)


def test_hub_subscriptions_cover_every_cart_published_topic() -> None:
    filters = [s.filter for s in topics.hub_subscriptions(STORE)]

    def received(topic: str) -> bool:
        return any(mqtt.topic_matches_sub(f, topic) for f in filters)

    for topic, parsed in all_topics():
        from_cart = topics.spec(parsed.kind).publisher is Publisher.CART
        assert received(topic) == from_cart, topic
        # every hub filter is a valid subscription that only spans one store
        assert not received(topic.replace(STORE, "store-999", 1))
    for f in filters:
        assert f.startswith(f"cartos/v1/{STORE}/+/")
        assert "#" not in f


def test_bundle_ref_names_one_release_of_one_type() -> None:
    assert topics.bundle_ref("catalogue", 42) == "catalogue-42"
    assert topics.bundle_ref("model", 2**63 - 1) == f"model-{2**63 - 1}"
    assert topics.bundle_ref("catalogue", 7) != topics.bundle_ref("model", 7)
    for bad_type in ("", "Catalogue", "cat-alogue", "1model", "x" * 33, "mödel", None):
        with pytest.raises(TopicError):
            topics.bundle_ref(bad_type, 1)  # type: ignore[arg-type]
    for bad_version in (0, -1, 2**63, True, "7", 7.0):
        with pytest.raises(TopicError):
            topics.bundle_ref("model", bad_version)  # type: ignore[arg-type]


def test_docs_list_every_topic_and_schema() -> None:
    """docs/mqtt.md is the published contract; it must not fall behind the code."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    for spec in topics.SPECS.values():
        assert f"`{spec.schema}`" in text, spec.schema
    for leaf in (*STREAMS, "available", "state", "ack", "cmd/req", "cmd/res"):
        assert f"`cartos/v1/<store>/<cart>/{leaf}`" in text, leaf
    assert "`cartos/v1/<store>/bundles/manifest`" in text
    assert "`cartos/v1/<store>/bundles/parts/<bundle>/<part>/<chunk>`" in text
