"""Chunked, resumable reception of large parts: staged on disk as they come, resumable
after a restart, capped at the signed size while receiving, handed over only when the
assembled part hashes to the signed manifest."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.sync.bundles import (
    BundleRejected,
    Chunk,
    ChunkAssembler,
    Manifest,
    split_part,
)
from cartos.sync.bundles import store as store_mod
from cartos.sync.bundles import verify as verify_mod
from tests.sync.test_bundles import World

MODEL = random.Random(7).randbytes(50_000)
CARD = b'{"name":"lite0-int8","sha256_of_weights":"..."}'
CHUNK = 4096


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def _model_bundle(world: World, version: int = 1) -> tuple[bytes, Manifest]:
    envelope, _parts = world.bundle(
        version, bundle_type="model", parts={"net": ("model", MODEL), "card": ("model_card", CARD)}
    )
    return envelope, world.store.check(envelope).manifest


def _chunks(manifest: Manifest) -> dict[str, list[Chunk]]:
    return {
        "net": split_part(manifest, "net", MODEL, CHUNK),
        "card": split_part(manifest, "card", CARD, CHUNK),
    }


def _reject(world: World, assembler: ChunkAssembler, chunk: Chunk, reason: str) -> None:
    before = world.digest()
    with pytest.raises(BundleRejected) as info:
        assembler.add(chunk)
    assert info.value.reason == reason
    assert world.digest() == before


def test_interrupted_reception_resumes_and_applies(world: World) -> None:
    envelope, manifest = _model_bundle(world)
    chunks = _chunks(manifest)
    assembler = ChunkAssembler(world.staging, manifest)
    assert assembler.missing() == {"net": None, "card": None}
    order = list(chunks["net"])
    random.Random(1).shuffle(order)
    for chunk in order[:5]:
        assert assembler.add(chunk) is False
    assert assembler.add(order[0]) is False  # a resent chunk is harmless

    # Restart: a fresh assembler finds the staged chunks and names exactly what is missing.
    resumed = ChunkAssembler(world.staging, manifest)
    missing = resumed.missing()
    assert sorted(set(range(len(chunks["net"]))) - set(missing["net"] or [])) == sorted(
        c.index for c in order[:5]
    )
    assert missing["card"] is None
    for index in missing["net"] or []:
        resumed.add(chunks["net"][index])
    assert resumed.add(chunks["card"][0]) is True
    assert resumed.complete and resumed.missing() == {}

    outcome = world.store.offer(envelope, resumed.parts())
    assert outcome.status == "applied", outcome
    stored = world.store.parts_of(manifest)
    assert stored == {"net": MODEL, "card": CARD}
    resumed.discard()
    assert list(world.staging.iterdir()) == []


def test_chunk_from_another_bundle_is_mixed(world: World) -> None:
    _envelope, manifest = _model_bundle(world, 1)
    _other_envelope, other = _model_bundle(world, 2)
    assembler = ChunkAssembler(world.staging, manifest)
    assembler.add(_chunks(manifest)["net"][0])
    _reject(world, assembler, _chunks(other)["net"][1], "mixed_parts")
    stray = Chunk(1, "weights", 0, 1, _chunks(manifest)["net"][0].sha256_of_chunk, b"x")
    _reject(world, assembler, stray, "mixed_parts")


def test_oversize_stream_refused_before_hashing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _envelope, manifest = _model_bundle(world)
    assembler = ChunkAssembler(world.staging, manifest)
    chunks = _chunks(manifest)["net"]
    for chunk in chunks[:-1]:
        assembler.add(chunk)

    def boom(*_args: object) -> str:
        raise AssertionError("hashed before the size check")

    monkeypatch.setattr(verify_mod, "hash_part", boom)
    last = chunks[-1]
    padded = Chunk(last.bundle_version, "net", last.index, last.count, "0" * 64, last.data + b"!")
    _reject(world, assembler, padded, "oversize")
    # A single chunk larger than the whole declared part.
    card = Chunk(1, "card", 0, 1, "0" * 64, CARD + b"more")
    _reject(world, assembler, card, "oversize")


def test_corrupt_and_conflicting_chunks(world: World) -> None:
    _envelope, manifest = _model_bundle(world)
    assembler = ChunkAssembler(world.staging, manifest)
    chunks = _chunks(manifest)["net"]
    assembler.add(chunks[0])
    damaged = Chunk(1, "net", 1, chunks[1].count, chunks[1].sha256_of_chunk, b"\0" * CHUNK)
    _reject(world, assembler, damaged, "chunk_corrupt")
    recount = Chunk(1, "net", 1, chunks[1].count + 1, chunks[1].sha256_of_chunk, chunks[1].data)
    _reject(world, assembler, recount, "chunk_conflict")
    other = split_part(manifest, "net", b"\1" * len(MODEL), CHUNK)[0]
    _reject(world, assembler, other, "chunk_conflict")
    beyond = Chunk(1, "net", chunks[0].count, chunks[0].count, chunks[0].sha256_of_chunk, b"x")
    _reject(world, assembler, beyond, "malformed")
    too_many = Chunk(1, "card", 0, len(CARD) + 1, chunks[0].sha256_of_chunk, b"x")
    _reject(world, assembler, too_many, "malformed")


def test_tampered_assembly_is_dropped_for_refetch(world: World) -> None:
    _envelope, manifest = _model_bundle(world)
    assembler = ChunkAssembler(world.staging, manifest)
    # Chunks that are self-consistent (each matches its own sha256) but not the signed part.
    forged = split_part(manifest, "net", bytes(reversed(MODEL)), CHUNK)
    for chunk in forged[:-1]:
        assembler.add(chunk)
    with pytest.raises(BundleRejected) as info:
        assembler.add(forged[-1])
    assert info.value.reason == "tampered_part"
    assert assembler.missing()["net"] is None  # everything of that part must be fetched again
    assert not (assembler.root / "chunks" / "net").exists()
    for chunk in _chunks(manifest)["net"]:
        assembler.add(chunk)
    assert "net" not in assembler.missing()


def test_crash_between_last_chunk_and_assembly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope, manifest = _model_bundle(world)
    chunks = _chunks(manifest)
    assembler = ChunkAssembler(world.staging, manifest)

    def power_cut(self: ChunkAssembler, *_args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(store_mod.ChunkAssembler, "_assemble", power_cut)
        for chunk in chunks["net"][:-1]:
            assembler.add(chunk)
        with pytest.raises(KeyboardInterrupt):
            assembler.add(chunks["net"][-1])
    # A torn temporary file from the interrupted write is ignored on restart.
    (assembler.root / "chunks" / "net" / "00000099.tmp").write_bytes(b"torn")
    resumed = ChunkAssembler(world.staging, manifest)
    assert "net" not in resumed.missing()
    resumed.add(chunks["card"][0])
    assert world.store.offer(envelope, resumed.parts()).accepted


def test_incomplete_parts_cannot_be_offered(world: World) -> None:
    _envelope, manifest = _model_bundle(world)
    assembler = ChunkAssembler(world.staging, manifest)
    with pytest.raises(BundleRejected) as info:
        assembler.parts()
    assert info.value.reason == "missing_part"


def test_chunk_from_mapping_is_strict() -> None:
    good = {
        "bundle_version": 3,
        "part": "net",
        "index": 0,
        "count": 1,
        "sha256_of_chunk": "0" * 64,
        "data": b"x",
    }
    assert Chunk.from_mapping(good).data == b"x"
    for bad in (
        {**good, "index": "0"},
        {**good, "count": True},
        {**good, "data": "eA=="},
        {**good, "extra": 1},
    ):
        with pytest.raises(BundleRejected) as info:
            Chunk.from_mapping(bad)
        assert info.value.reason == "malformed"
    with pytest.raises(BundleRejected) as info:
        Chunk.from_mapping({**good, "bundle_version": 2**64 - 1})
    assert info.value.reason == "version_range"
