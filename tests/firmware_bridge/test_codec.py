"""The wire codec: CRC pinned to its catalogue value, framing, resync, message encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec

payloads = st.binary(min_size=0, max_size=codec.MAX_PAYLOAD)
seqs = st.integers(min_value=0, max_value=15)


def test_crc16_is_ibm_3740_by_its_check_value() -> None:
    assert codec.crc16(b"123456789") == 0x29B1
    assert codec.crc16(b"") == 0xFFFF


def test_frame_layout_matches_protocol_doc() -> None:
    frame = codec.encode_frame(3, b"\x01\x02", codec.FLAG_NAK)
    assert frame[0] == len(frame) == 7
    assert frame[1] == 0x10 | 0x20 | 3
    assert frame[2:4] == b"\x01\x02"
    crc = codec.crc16(frame[:4])
    assert frame[4:6] == bytes([crc >> 8, crc & 0xFF])
    assert frame[6] == codec.SYNC


def test_oversize_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        codec.encode_frame(0, bytes(codec.MAX_PAYLOAD + 1))


@given(st.lists(st.tuples(seqs, payloads), max_size=20), st.integers(1, 70))
def test_round_trip_in_any_chunking(frames: list[tuple[int, bytes]], chunk: int) -> None:
    stream = b"".join(codec.encode_frame(s, p) for s, p in frames)
    dec = codec.FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got.extend(dec.feed(stream[i : i + chunk]))
    assert [(sb & codec.SEQ_MASK, p) for sb, p in got] == frames
    assert dec.bytes_invalid == 0 and dec.pending() == 0


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_any_byte_stream_never_raises_and_buffer_stays_bounded(chunks: list[bytes]) -> None:
    dec = codec.FrameDecoder()
    for chunk in chunks:
        dec.feed(chunk)
        assert dec.pending() < codec.MAX_FRAME


@settings(max_examples=300)
@given(
    st.binary(min_size=1, max_size=300), st.lists(st.tuples(seqs, payloads), min_size=1, max_size=5)
)
def test_every_frame_after_garbage_is_recovered(
    garbage: bytes, frames: list[tuple[int, bytes]]
) -> None:
    stream = garbage + b"".join(codec.encode_frame(s, p) for s, p in frames)
    dec = codec.FrameDecoder()
    got = dec.feed(stream)
    # Garbage may by chance contain frames of its own; the real ones come last, intact.
    tail = [(sb & codec.SEQ_MASK, p) for sb, p in got[-len(frames) :]]
    assert tail == frames


@settings(max_examples=60)
@given(seqs, payloads)
def test_every_single_bit_flip_is_rejected(seq: int, payload: bytes) -> None:
    frame = codec.encode_frame(seq, payload)
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        dec = codec.FrameDecoder()
        assert dec.feed(bytes(damaged)) == [], f"bit {bit} flip accepted"
        # and the decoder recovers for the next good frame
        assert dec.feed(frame)[-1] == (frame[1], payload)


@given(st.integers(0, 0xFFFFFFFF), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=40))
def test_message_round_trip(u: int, i: int, b: bytes) -> None:
    fmt = codec.MessageFormat(9, "m a=u b=i c=b")
    out = bytearray()
    fmt.encode(out, {"a": u, "b": i, "c": b})
    values, pos = fmt.decode(bytes(out), 1)
    assert values == {"a": u, "b": i, "c": b} and pos == len(out)


def test_dictionary_encodes_several_messages_per_payload() -> None:
    d = codec.default_dictionary()
    payload = d.encode_response("clock", {"clock": 7}) + d.encode_response(
        "scan", {"eid": 3, "clock": 9, "code": b"4006381333931"}
    )
    assert d.decode_responses(payload) == [
        ("clock", {"clock": 7}),
        ("scan", {"eid": 3, "clock": 9, "code": b"4006381333931"}),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"\x63", "unknown message id"), (b"\x02", "truncated"), (b"\x05\x01\x02\x09ab", "truncated")],
)
def test_bad_payloads_raise_value_error_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        codec.default_dictionary().decode_responses(payload)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError):
        codec.put_uint(bytearray(), -1)
    with pytest.raises(ValueError):
        codec.put_int(bytearray(), 2**31)


def test_protocol_doc_worked_bytes_match_the_codec() -> None:
    """PROTOCOL.md's example frames are what the codec produces (the doc cannot drift)."""
    from pathlib import Path

    doc = (Path(codec.__file__).parent / "PROTOCOL.md").read_text()
    d = codec.default_dictionary()
    examples = [
        codec.encode_frame(0, b"", codec.FLAG_SYN),
        codec.encode_frame(1, b""),
        codec.encode_frame(1, d.encode_command("identify", {"offset": 0, "count": 40})),
        codec.encode_frame(
            2,
            d.encode_response(
                "settled", {"eid": 5, "clock": 1607000, "weight_mg": 350230, "delta_mg": -350258}
            ),
        ),
        codec.encode_frame(2, d.encode_command("ack_events", {"upto": 5})),
    ]
    for frame in examples:
        assert f"`{frame.hex(' ').upper()}`" in doc
    for spec in list(codec.COMMANDS) + list(codec.RESPONSES):
        assert f"`{spec}`" in doc, spec
