"""Payload decoding and encoding: schemas hold, hostile input is refused, counted, survived."""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.sync import bundles, payloads, topics
from cartos.sync.errors import PayloadRejected, SyncError
from cartos.sync.payloads import Limits, RejectionCounter, decode, decode_message, encode
from cartos.sync.topics import Kind

STORE = "store-042"
CART = "cart-0007"
ID = "0123456789abcdef0123456789abcdef"
T = 1_795_000_000.25
ENVELOPE = (
    '{"alg":"Ed25519","manifest":{"expires_at":1800604800,"issued_at":1799999940,'
    '"key_id":"hub-2026a","parts":[],"store":"store-042","type":"catalogue","version":42},'
    '"signature":"' + "ab" * 64 + '"}'
)
"""The shape of a signed bundle envelope (``docs/bundles.md``); not a valid signature."""

VALID: dict[Kind, list[dict[str, Any]]] = {
    Kind.UPLINK: [
        {
            "id": ID,
            "cart": CART,
            "store": STORE,
            "stream": "events",
            "seq": 1,
            "sent_at": T,
            "body": {"type": "item_added", "sku": "milk", "qty": 1, "nested": {"a": [1, 2]}},
        },
        {
            "id": ID,
            "cart": CART,
            "store": STORE,
            "stream": "telemetry",
            "seq": 2**62,
            "sent_at": 0,
            "body": {},
        },
    ],
    Kind.ACK: [
        {"id": ID, "stream": "corrections", "upto_seq": 0, "hub_id": "hub-1"},
        {"id": ID, "stream": "events", "upto_seq": 41, "hub_id": "hub:store-042:a", "sent_at": T},
    ],
    Kind.AVAILABLE: [
        {"id": ID, "cart": CART, "store": STORE, "status": status, "sent_at": T}
        for status in ("online", "offline", "stopped")
    ]
    + [
        {
            "id": ID,
            "cart": CART,
            "store": STORE,
            "status": "online",
            "sent_at": T,
            "software": "cartos 0.9.1",
        }
    ],
    Kind.STATE: [
        {"id": ID, "cart": CART, "store": STORE, "sent_at": T},
        {
            "id": ID,
            "cart": CART,
            "store": STORE,
            "sent_at": T,
            "software": "cartos 0.9.1",
            "status": "shopping",
            "session": None,
            "basket_version": 12,
            "bundles": [
                {"store": STORE, "type": "catalogue", "version": 42},
                {"type": "model", "version": 7},
            ],
            "outbox": {
                "events": {"last_seq": 10, "acked_seq": 8, "pending": 2, "dropped": 0},
                "telemetry": {"last_seq": 900, "acked_seq": 10, "pending": 700, "dropped": 190},
            },
        },
    ],
    Kind.CMD_REQ: [
        {"id": ID, "transaction": "tx-1", "command": "ping", "sent_at": T},
        {
            "id": ID,
            "transaction": "2026-11-22T03:00:00Z:17",
            "command": "bundle.install",
            "args": {"version": "7", "parts": ["model"]},
            "sent_at": T,
            "expires_at": T + 60,
        },
    ],
    Kind.CMD_RES: [
        {"id": ID, "transaction": "tx-1", "status": "ok", "sent_at": T},
        {"id": ID, "transaction": "tx-1", "status": "ok", "sent_at": T, "result": {"pong": 1}},
        {
            "id": ID,
            "transaction": "tx-1",
            "status": "error",
            "sent_at": T,
            "error": {"code": "expired", "message": "request expired \U0001f600 ünïcode"},
        },
    ],
    Kind.BUNDLE_MANIFEST: [
        {"id": ID, "bundles": []},
        {
            "id": ID,
            "sent_at": T,
            "bundles": [ENVELOPE, ENVELOPE.replace("catalogue", "model")],
            "certificates": ['{"alg":"Ed25519","certificate":{},"signature":"00"}'],
            "revocations": '{"alg":"Ed25519","revocation":{},"signature":"00"}',
        },
    ],
    Kind.BUNDLE_CHUNK: [
        {
            "id": ID,
            "type": "model",
            "bundle_version": 7,
            "part": "model",
            "index": 0,
            "count": 1,
            "sha256_of_chunk": "a" * 64,
            "data": "AAEC",
        },
        {
            "id": ID,
            "type": "catalogue",
            "bundle_version": 2**63 - 1,
            "part": "rows.v2",
            "index": 999_999,
            "count": 1_000_000,
            "sha256_of_chunk": "0" * 64,
            "data": "QUJD" * 174_763,
        },
    ],
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()

INVALID: dict[Kind, list[dict[str, Any]]] = {
    Kind.UPLINK: [
        _with(VALID[Kind.UPLINK][0], id=_DROP),
        _with(VALID[Kind.UPLINK][0], body=_DROP),
        _with(VALID[Kind.UPLINK][0], extra=1),
        _with(VALID[Kind.UPLINK][0], stream="secrets"),
        _with(VALID[Kind.UPLINK][0], seq=0),
        _with(VALID[Kind.UPLINK][0], seq=1.5),
        _with(VALID[Kind.UPLINK][0], seq=1.0),  # JSON Schema alone would call this an integer
        _with(VALID[Kind.UPLINK][0], seq="1"),
        _with(VALID[Kind.UPLINK][0], seq=True),
        _with(VALID[Kind.UPLINK][0], seq=2**62 + 1),
        _with(VALID[Kind.UPLINK][0], cart="cart/other"),
        _with(VALID[Kind.UPLINK][0], store="+"),
        _with(VALID[Kind.UPLINK][0], id="short"),
        _with(VALID[Kind.UPLINK][0], id=ID + "!"),
        _with(VALID[Kind.UPLINK][0], sent_at=-1),
        _with(VALID[Kind.UPLINK][0], sent_at="now"),
        _with(VALID[Kind.UPLINK][0], body=[1, 2]),
        _with(VALID[Kind.UPLINK][0], body=None),
    ],
    Kind.ACK: [
        _with(VALID[Kind.ACK][0], hub_id=_DROP),
        _with(VALID[Kind.ACK][0], upto_seq=-1),
        _with(VALID[Kind.ACK][0], upto_seq="5"),
        _with(VALID[Kind.ACK][0], upto_seq=5.0),
        _with(VALID[Kind.ACK][0], stream="all"),
        _with(VALID[Kind.ACK][0], hub_id=""),
        _with(VALID[Kind.ACK][0], hub_id="hub 1"),
        _with(VALID[Kind.ACK][0], cart=CART),
    ],
    Kind.AVAILABLE: [
        _with(VALID[Kind.AVAILABLE][0], status="maybe"),
        _with(VALID[Kind.AVAILABLE][0], status=_DROP),
        _with(VALID[Kind.AVAILABLE][0], status=None),
        _with(VALID[Kind.AVAILABLE][0], cart=_DROP),
        _with(VALID[Kind.AVAILABLE][0], software=""),
        _with(VALID[Kind.AVAILABLE][0], software="x" * 65),
        _with(VALID[Kind.AVAILABLE][0], ip="10.0.0.1"),
    ],
    Kind.STATE: [
        _with(VALID[Kind.STATE][0], sent_at=_DROP),
        _with(VALID[Kind.STATE][0], basket_version=-1),
        _with(VALID[Kind.STATE][0], status="Shopping!"),
        _with(VALID[Kind.STATE][0], bundles={"model": 7}),
        _with(VALID[Kind.STATE][0], bundles=[{"type": "model", "version": "7"}]),
        _with(VALID[Kind.STATE][0], bundles=[{"type": "model"}]),
        _with(VALID[Kind.STATE][0], bundles=[{"type": "model", "version": 7, "x": 1}]),
        _with(VALID[Kind.STATE][0], outbox={"gossip": VALID[Kind.STATE][1]["outbox"]["events"]}),
        _with(VALID[Kind.STATE][0], outbox={"events": {"last_seq": 1}}),
        _with(VALID[Kind.STATE][0], unknown=True),
    ],
    Kind.CMD_REQ: [
        _with(VALID[Kind.CMD_REQ][0], transaction=_DROP),
        _with(VALID[Kind.CMD_REQ][0], transaction=""),
        _with(VALID[Kind.CMD_REQ][0], transaction="tx 1"),
        _with(VALID[Kind.CMD_REQ][0], transaction=12),
        _with(VALID[Kind.CMD_REQ][0], command="Rm -rf"),
        _with(VALID[Kind.CMD_REQ][0], command=""),
        _with(VALID[Kind.CMD_REQ][0], args=["x"]),
        _with(VALID[Kind.CMD_REQ][0], args={f"k{i}": i for i in range(65)}),
        _with(VALID[Kind.CMD_REQ][0], status="ok"),
    ],
    Kind.CMD_RES: [
        _with(VALID[Kind.CMD_RES][0], status="maybe"),
        _with(VALID[Kind.CMD_RES][0], status=_DROP),
        _with(VALID[Kind.CMD_RES][0], transaction=_DROP),
        _with(VALID[Kind.CMD_RES][0], status="error"),  # error without "error"
        _with(VALID[Kind.CMD_RES][2], result={"x": 1}),  # error with a result
        _with(VALID[Kind.CMD_RES][0], error={"code": "x", "message": "y"}),  # ok with error
        _with(VALID[Kind.CMD_RES][2], error={"code": "Bad Code", "message": "y"}),
        _with(VALID[Kind.CMD_RES][2], error={"code": "x", "message": "y" * 1025}),
        _with(VALID[Kind.CMD_RES][2], error={"code": "x"}),
        _with(VALID[Kind.CMD_RES][1], result="fine"),
    ],
    Kind.BUNDLE_MANIFEST: [
        _with(VALID[Kind.BUNDLE_MANIFEST][1], bundles=_DROP),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], id=_DROP),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], bundles=ENVELOPE),
        _with(
            VALID[Kind.BUNDLE_MANIFEST][1],
            bundles=[{"alg": "Ed25519", "manifest": {}, "signature": "00"}],
        ),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], bundles=[""]),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], bundles=["x" * 65_537]),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], bundles=[ENVELOPE] * 17),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], certificates=ENVELOPE),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], revocations=[ENVELOPE]),
        _with(VALID[Kind.BUNDLE_MANIFEST][1], envelope=ENVELOPE),
    ],
    Kind.BUNDLE_CHUNK: [
        _with(VALID[Kind.BUNDLE_CHUNK][0], data=_DROP),
        _with(VALID[Kind.BUNDLE_CHUNK][0], type=_DROP),
        _with(VALID[Kind.BUNDLE_CHUNK][0], data="not base64!"),
        _with(VALID[Kind.BUNDLE_CHUNK][0], data="QUJD" * 174_764),
        _with(
            VALID[Kind.BUNDLE_CHUNK][0], data="QU=D"
        ),  # padding inside: the pattern passes, base64 does not
        _with(VALID[Kind.BUNDLE_CHUNK][0], data="QUJ"),  # truncated: base64 refuses
        _with(VALID[Kind.BUNDLE_CHUNK][0], index=-1),
        _with(VALID[Kind.BUNDLE_CHUNK][0], index=1_000_000),
        _with(VALID[Kind.BUNDLE_CHUNK][0], count=0),
        _with(VALID[Kind.BUNDLE_CHUNK][0], bundle_version=0),
        _with(VALID[Kind.BUNDLE_CHUNK][0], bundle_version="7"),
        _with(VALID[Kind.BUNDLE_CHUNK][0], bundle_version=7.0),
        _with(VALID[Kind.BUNDLE_CHUNK][0], type="Model"),
        _with(VALID[Kind.BUNDLE_CHUNK][0], part="../x"),
        _with(VALID[Kind.BUNDLE_CHUNK][0], sha256_of_chunk="A" * 64),
        _with(VALID[Kind.BUNDLE_CHUNK][0], sha256_of_chunk="a" * 63),
        _with(VALID[Kind.BUNDLE_CHUNK][0], chunk=0),
    ],
}


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode("utf-8")


def rejected(
    kind: Kind | str, data: Any, counter: RejectionCounter, limits: Limits | None = None
) -> PayloadRejected:
    with pytest.raises(PayloadRejected) as info:
        decode(kind, data, counter=counter, limits=limits or payloads.DEFAULT_LIMITS)
    assert info.value.reason in payloads.REASONS
    assert len(info.value.detail) <= payloads.DETAIL_CHARS
    return info.value


@pytest.fixture()
def counter() -> RejectionCounter:
    return RejectionCounter()


# -- schemas ---------------------------------------------------------------------


def test_every_kind_has_valid_and_invalid_examples() -> None:
    assert set(VALID) == set(INVALID) == set(Kind)


def test_schema_files_ship_in_the_package_and_are_draft_2020_12() -> None:
    folder = resources.files("cartos.sync").joinpath("schemas")
    names = {entry.name for entry in folder.iterdir() if entry.name.endswith(".json")}
    assert names == {s.schema for s in topics.SPECS.values()} | {"common.schema.json"}
    for name in names:
        document = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$id"].endswith("/" + name)
        Draft202012Validator.check_schema(document)
        if name != "common.schema.json":
            assert document["type"] == "object"
            assert document["additionalProperties"] is False
            assert "id" in document["required"]


@pytest.mark.parametrize(
    ("kind", "example"),
    [(k, e) for k, examples in VALID.items() for e in examples],
    ids=lambda v: str(v) if isinstance(v, Kind) else "",
)
def test_valid_examples_pass(
    kind: Kind, example: dict[str, Any], counter: RejectionCounter
) -> None:
    assert decode(kind, raw(example), counter=counter) == example
    assert decode(kind.value, bytearray(raw(example)), counter=counter) == example
    assert decode(kind, memoryview(raw(example)), counter=counter) == example
    assert counter.count() == 0


@pytest.mark.parametrize(
    ("kind", "example"),
    [(k, e) for k, examples in INVALID.items() for e in examples],
    ids=lambda v: str(v) if isinstance(v, Kind) else "",
)
def test_invalid_examples_fail_schema(
    kind: Kind, example: dict[str, Any], counter: RejectionCounter
) -> None:
    data = raw(example)
    limits = Limits(max_bytes={k: 2 * len(data) + 1024 for k in Kind})
    exc = rejected(kind, data, counter, limits)
    assert exc.reason == payloads.SCHEMA, exc
    assert counter.snapshot() == {(kind.value, "schema"): 1}


def test_schema_detail_names_the_field(counter: RejectionCounter) -> None:
    exc = rejected(Kind.ACK, raw(_with(VALID[Kind.ACK][0], upto_seq=-1)), counter)
    assert exc.detail.startswith("upto_seq:")
    huge = _with(VALID[Kind.UPLINK][0], cart="c" * 200_000)
    exc = rejected(Kind.UPLINK, raw(huge), counter)
    assert exc.reason == "schema" and len(exc.detail) <= payloads.DETAIL_CHARS


# -- hostile payloads --------------------------------------------------------------

BIG = 10 * 1024 * 1024


def _deep_array(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


HOSTILE: list[tuple[str, bytes, str]] = [
    ("10 MB of zeros", b"\x00" * BIG, "too_large"),
    ("10 MB valid-looking JSON", b'{"id":"' + b"a" * BIG + b'"}', "too_large"),
    ("empty", b"", "empty"),
    ("non-UTF-8 byte", b'{"id": "\xff"}', "not_utf8"),
    ("latin-1 text", '{"note": "caf\u00e9"}'.encode("latin-1"), "not_utf8"),
    ("overlong UTF-8 slash", b'{"id": "\xc0\xaf"}', "not_utf8"),
    ("UTF-8 encoded surrogate", b'{"id": "\xed\xa0\x80"}', "not_utf8"),
    ("UTF-16", '{"id": "x"}'.encode("utf-16"), "not_utf8"),
    ("lone surrogate escape", b'{"id": "\\ud800"}', "not_utf8"),
    ("lone surrogate key", b'{"\\udfff": 1}', "not_utf8"),
    ("100k-deep arrays", _deep_array(100_000), "too_deep"),
    ("100k-deep unclosed arrays", b"[" * 100_000, "too_deep"),
    ("deep objects", _deep_object(20_000), "too_deep"),
    ("33 levels", _deep_array(33), "too_deep"),
    ("NaN", b'{"x": NaN}', "non_finite"),
    ("Infinity", b'{"x": Infinity}', "non_finite"),
    ("-Infinity", b'{"x": [-Infinity]}', "non_finite"),
    ("float overflow", b'{"x": 1e400}', "non_finite"),
    ("duplicate key", b'{"id": "a", "id": "b"}', "duplicate_key"),
    ("nested duplicate key", b'{"body": {"k": 1, "k": 1}}', "duplicate_key"),
    ("truncated", b'{"id": "abc', "not_json"),
    ("trailing garbage", b'{"id": "abc"} x', "not_json"),
    ("two documents", b"{}{}", "not_json"),
    ("byte order mark", b'\xef\xbb\xbf{"id": "x"}', "not_json"),
    ("whitespace", b"   \n\t ", "not_json"),
    ("single quotes", b"{'id': 'x'}", "not_json"),
    ("comment", b'{"id": 1 /* hi */}', "not_json"),
    ("NUL byte", b'{"id": "a\x00b"}', "not_json"),
    ("huge integer", b'{"x": ' + b"9" * 5_000 + b"}", "not_json"),
    ("top-level array", b"[]", "schema"),
    ("top-level string", b'"hello"', "schema"),
    ("top-level number", b"42", "schema"),
    ("top-level null", b"null", "schema"),
    ("empty object", b"{}", "schema"),
    ("wrong types", raw({k: [] for k in VALID[Kind.UPLINK][0]}), "schema"),
]


@pytest.mark.parametrize(("name", "data", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_payloads_are_rejected_and_counted(
    name: str, data: bytes, reason: str, counter: RejectionCounter
) -> None:
    exc = rejected(Kind.UPLINK, data, counter)
    assert exc.reason == reason, (name, exc)
    assert isinstance(exc, SyncError)
    assert counter.count("uplink", reason) == 1
    assert counter.count() == 1
    for shown in (exc.detail, str(exc)):  # bounded, never the payload itself
        assert len(shown) < 400


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_survives_the_hostile_set(kind: Kind, counter: RejectionCounter) -> None:
    """On any kind the reason may differ (a 4 KiB cap says too_large first), never the type."""
    for _name, data, _reason in HOSTILE:
        rejected(kind, data, counter)
    assert counter.count(kind.value) == counter.count() == len(HOSTILE)


@pytest.mark.parametrize("kind", list(Kind))
def test_depth_is_checked_before_parsing_on_every_kind(
    kind: Kind, counter: RejectionCounter
) -> None:
    roomy = Limits(max_bytes={k: 1 << 20 for k in Kind})
    for data in (_deep_array(100_000), _deep_object(100_000)[: 1 << 20]):
        assert rejected(kind, data, counter, roomy).reason == "too_deep"


def test_ten_megabytes_is_refused_by_size_for_every_kind(counter: RejectionCounter) -> None:
    for kind in Kind:
        assert rejected(kind, b"{" * BIG, counter).reason == "too_large"
    assert sum(counter.snapshot().values()) == len(Kind)


def test_depth_limit_is_exact_and_ignores_brackets_in_strings(counter: RejectionCounter) -> None:
    base = VALID[Kind.UPLINK][0]

    def nested(levels: int) -> Any:
        value: Any = 0
        for _ in range(levels):
            value = [value]
        return value

    # top-level object is depth 1, body depth 2, so 30 more lists reach exactly 32
    ok = _with(base, body={"x": nested(30)})
    assert decode(Kind.UPLINK, raw(ok), counter=counter) == ok
    too_deep = _with(base, body={"x": nested(31)})
    assert rejected(Kind.UPLINK, raw(too_deep), counter).reason == "too_deep"
    brackets = _with(base, body={"note": "[{" * 10_000 + '\\"]}' + "\\" * 3})
    assert decode(Kind.UPLINK, raw(brackets), counter=counter) == brackets


def test_depth_scan_is_linear_on_adversarial_strings(counter: RejectionCounter) -> None:
    """Unterminated strings full of quotes and escapes would make a regex scanner quadratic."""
    worst = [
        b'"' + b'\\"' * 120_000,
        b'["' + b"\\\\" * 120_000,
        b'"' * 250_000,
        b"[]" * 120_000,
        b'{"a":"' + b"\\u0000" * 40_000,
    ]
    started = time.perf_counter()
    for data in worst:
        rejected(Kind.UPLINK, data, counter)
    assert time.perf_counter() - started < 2.0


def test_nesting_depth_helper() -> None:
    depth = payloads.nesting_depth
    assert depth("") == 0
    assert depth("{}") == 1
    assert depth('{"a": [[1], {"b": []}]}') == 4
    assert depth('"[[["') == 0
    assert depth('["\\"[[", []]') == 2
    assert depth("[" * 1000, limit=10) == 11
    assert depth("]]]][") == 1


def test_unknown_kind_and_non_bytes_are_rejections_not_crashes(counter: RejectionCounter) -> None:
    assert rejected("gossip", b"{}", counter).reason == "unknown_kind"
    assert rejected(object(), b"{}", counter).reason == "unknown_kind"  # type: ignore[arg-type]
    assert counter.count("unknown", "unknown_kind") == 2
    assert rejected(Kind.ACK, '{"id": 1}', counter).reason == "not_json"
    assert rejected(Kind.ACK, None, counter).reason == "not_json"


def test_internal_errors_are_still_rejections(
    counter: RejectionCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(kind: Kind, obj: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(payloads, "_validate", broken)
    exc = rejected(Kind.ACK, raw(VALID[Kind.ACK][0]), counter)
    assert exc.reason == "internal"
    assert counter.count("ack", "internal") == 1


def test_default_counter_counts_and_counter_none_does_not() -> None:
    before = payloads.REJECTIONS.count("state", "not_json")
    with pytest.raises(PayloadRejected):
        decode(Kind.STATE, b"{")
    assert payloads.REJECTIONS.count("state", "not_json") == before + 1
    with pytest.raises(PayloadRejected):
        decode(Kind.STATE, b"{", counter=None)
    assert payloads.REJECTIONS.count("state", "not_json") == before + 1


def test_rejections_are_logged_sparingly(
    counter: RejectionCounter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cartos.sync.payloads")
    for _ in range(20):
        with pytest.raises(PayloadRejected):
            decode(Kind.ACK, b"\xff", counter=counter, topic="cartos/v1/s/c/ack")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5  # the 1st, 2nd, 4th, 8th and 16th
    assert "not_utf8" in warnings[0].getMessage()
    assert "cartos/v1/s/c/ack" in warnings[0].getMessage()
    assert len(caplog.records) == 20
    assert counter.count("ack", "not_utf8") == 20


def test_counter_is_exact_under_threads() -> None:
    counter = RejectionCounter()

    def work() -> None:
        for _ in range(200):
            with pytest.raises(PayloadRejected):
                decode(Kind.ACK, b"[", counter=counter)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.snapshot() == {("ack", "not_json"): 800}
    counter.reset()
    assert counter.count() == 0


# -- random input --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def _decode_or_reject(kind: Kind, data: bytes) -> None:
    try:
        result = decode(kind, data, counter=RejectionCounter())
    except PayloadRejected:
        return
    assert isinstance(result, dict)


@given(kind=st.sampled_from(list(Kind)), data=st.binary(max_size=4096))
@settings(max_examples=500, deadline=None)
def test_random_bytes_never_raise_anything_else(kind: Kind, data: bytes) -> None:
    _decode_or_reject(kind, data)


@given(kind=st.sampled_from(list(Kind)), value=json_values)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_json_never_raises_anything_else(kind: Kind, value: Any) -> None:
    _decode_or_reject(kind, json.dumps(value).encode("utf-8"))


@given(
    example=st.sampled_from(
        [(k, e) for k, es in VALID.items() for e in es if k != Kind.BUNDLE_CHUNK]
    ),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), max_size=6),
)
@settings(max_examples=400, deadline=None)
def test_mutated_valid_payloads_never_raise_anything_else(
    example: tuple[Kind, dict[str, Any]], edits: list[tuple[int, bytes]]
) -> None:
    kind, obj = example
    data = bytearray(raw(obj))
    for pos, chunk in edits:
        at = pos % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    _decode_or_reject(kind, bytes(data))


# -- topic and payload together -------------------------------------------------------


def test_decode_message_checks_the_payload_against_its_topic(counter: RejectionCounter) -> None:
    msg = VALID[Kind.UPLINK][0]
    topic = topics.uplink(STORE, CART, "events")
    parsed, payload = decode_message(topic, raw(msg), counter=counter)
    assert parsed.kind is Kind.UPLINK and parsed.cart == CART and payload == msg

    for field, value in (("cart", "cart-0008"), ("store", "store-043"), ("stream", "review")):
        with pytest.raises(PayloadRejected) as info:
            decode_message(topic, raw(_with(msg, **{field: value})), counter=counter)
        assert info.value.reason == "mismatch" and field in info.value.detail
    assert counter.count("uplink", "mismatch") == 3

    chunk = VALID[Kind.BUNDLE_CHUNK][0]  # model v7, part "model", index 0
    ok_topic = topics.bundle_chunk(STORE, "model-7", "model", 0)
    assert decode_message(ok_topic, raw(chunk), counter=counter)[1] == chunk
    for wrong in (
        topics.bundle_chunk(STORE, "model-7", "model", 1),
        topics.bundle_chunk(STORE, "model-8", "model", 0),
        topics.bundle_chunk(STORE, "catalogue-7", "model", 0),
        topics.bundle_chunk(STORE, "model-7", "model_card", 0),
    ):
        with pytest.raises(PayloadRejected, match="mismatch"):
            decode_message(wrong, raw(chunk), counter=counter)
    assert counter.count("bundle_chunk", "mismatch") == 4

    with pytest.raises(PayloadRejected) as info:
        decode_message("cartos/v1/store/+/events", raw(msg), counter=counter)
    assert info.value.reason == "bad_topic"
    with pytest.raises(PayloadRejected):
        decode_message("\udcff" * 10_000, b"\xff", counter=counter)
    assert counter.count("unknown", "bad_topic") == 2


# -- encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "example"),
    [(k, e) for k, examples in VALID.items() for e in examples],
    ids=lambda v: str(v) if isinstance(v, Kind) else "",
)
def test_encode_round_trips(kind: Kind, example: dict[str, Any]) -> None:
    without_id = _with(example, id=_DROP)
    before = copy.deepcopy(without_id)
    data = encode(kind, without_id)
    assert without_id == before  # the caller's dict is not touched
    decoded = decode(kind, data, counter=None)
    assert len(decoded["id"]) == 32 and int(decoded["id"], 16) >= 0
    assert _with(decoded, id=_DROP) == without_id
    assert decode(kind, encode(kind, example), counter=None) == example  # a given id is kept


def test_encode_gives_each_message_a_new_id() -> None:
    base = _with(VALID[Kind.ACK][0], id=_DROP)
    ids = {json.loads(encode(Kind.ACK, base))["id"] for _ in range(100)}
    assert len(ids) == 100


def test_encode_refuses_what_decode_would_refuse() -> None:
    before = payloads.REJECTIONS.snapshot()
    ack = VALID[Kind.ACK][0]
    cases: list[tuple[Kind, dict[str, Any], str]] = [
        (Kind.ACK, _with(ack, upto_seq=-1), "schema"),
        (Kind.ACK, _with(ack, extra=1), "schema"),
        (Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": float("nan")}), "non_finite"),
        (Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": float("inf")}), "non_finite"),
        (Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": {1, 2}}), "not_json"),
        (Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": "\ud800"}), "not_utf8"),
        (Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": "a" * 300_000}), "too_large"),
        (Kind.ACK, _with(ack, hub_id="h" * 5_000), "too_large"),
    ]
    deep: Any = 0
    for _ in range(40):
        deep = [deep]
    cases.append((Kind.UPLINK, _with(VALID[Kind.UPLINK][0], body={"x": deep}), "too_deep"))
    very_deep: Any = 0
    for _ in range(100_000):
        very_deep = [very_deep]
    # built by hand: copy.deepcopy would itself recurse 100k levels
    cases.append((Kind.UPLINK, {**VALID[Kind.UPLINK][0], "body": {"x": very_deep}}, "too_deep"))
    for kind, obj, reason in cases:
        with pytest.raises(PayloadRejected) as info:
            encode(kind, obj)
        assert info.value.reason == reason, (reason, info.value)
    with pytest.raises(PayloadRejected, match="unknown_kind"):
        encode("gossip", ack)
    assert payloads.REJECTIONS.snapshot() == before  # our own bugs are not hostile input


def test_outbox_rows_become_envelopes_that_keep_their_id(tmp_path: Path) -> None:
    with BasketStore(tmp_path / "basket.db") as basket:
        basket.apply(SessionOpened("open-s1", "s1"))
        basket.apply(ItemAdded("add-1", "milk", 2))
        basket.record_telemetry({"cpu": 0.5})
        rows = basket.pending("events") + basket.pending("telemetry")
    assert rows
    for row in rows:
        envelope = payloads.uplink_envelope(STORE, CART, row, sent_at=T)
        first = encode(Kind.UPLINK, envelope)
        again = encode(Kind.UPLINK, payloads.uplink_envelope(STORE, CART, row, sent_at=T + 5))
        topic = topics.uplink(STORE, CART, row.stream)
        _, decoded = decode_message(topic, first, counter=None)
        _, decoded_again = decode_message(topic, again, counter=None)
        assert decoded["id"] == decoded_again["id"] == row.msg_id  # a resend is the same message
        assert (decoded["stream"], decoded["seq"]) == (row.stream, row.seq)
        assert {"msg_id", "stream", "seq"}.isdisjoint(decoded["body"])
        assert decoded["body"] == {
            k: v for k, v in row.payload.items() if k not in ("msg_id", "stream", "seq")
        }


def test_real_signed_bundles_travel_unchanged(tmp_path: Path) -> None:
    """Hub to cart through these payloads: the envelope verifies, the chunks reassemble."""
    now = 1_800_000_000
    root = bundles.generate_private_key()
    key = bundles.issue_signing_key(root, "hub-2026a", not_before=now - 60, not_after=now + 3600)
    part = bytes(range(256)) * 40 + "ünïcode".encode()
    manifest = bundles.build_manifest(
        bundle_type="catalogue",
        store=STORE,
        version=42,
        issued_at=now - 5,
        expires_at=now + 600,
        key_id=key.key_id,
        parts={"rows": ("catalogue_rows", part)},
    )
    envelope = key.sign(manifest)

    announcement = {
        "bundles": [envelope.decode("utf-8")],
        "certificates": [key.certificate_envelope.decode("utf-8")],
    }
    data = encode(Kind.BUNDLE_MANIFEST, announcement)
    _, received = decode_message(topics.bundle_manifest(STORE), data, counter=None)
    trust = bundles.TrustStore(bundles.public_key_hex(root))
    for certificate in received["certificates"]:
        trust.add_certificate(certificate.encode("utf-8"))
    verified = bundles.verify_envelope(
        received["bundles"][0].encode("utf-8"), trust, store_id=STORE, now=now
    )
    assert verified.envelope == envelope  # byte for byte what the hub signed

    chunks = bundles.split_part(manifest, "rows", part, chunk_size=1000)
    assert len(chunks) > 1
    reassembled = b""
    for chunk in chunks:
        topic = topics.bundle_chunk(
            STORE, topics.bundle_ref("catalogue", chunk.bundle_version), chunk.part, chunk.index
        )
        wire = encode(Kind.BUNDLE_CHUNK, payloads.chunk_payload("catalogue", chunk))
        _, payload = decode_message(topic, wire, counter=None)
        again = bundles.Chunk.from_mapping(payloads.chunk_fields(payload))
        assert again == chunk
        reassembled += again.data
    assert reassembled == part
