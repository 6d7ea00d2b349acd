"""The hub's review queue: crops in once, hostile bodies skipped, labels teach the fleet,
crops expire, and the attendants' API maps it all onto HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cartos.basket.events import ReviewQueued, SessionOpened
from cartos.basket.store import BasketStore
from cartos.bench import fleet
from cartos.catalog.store import CatalogStore
from cartos.fusion.catalogue_view import CatalogueItem, CatalogueView
from cartos.fusion.policy import FusionPolicy
from cartos.hub.api import create_review_app
from cartos.hub.catalogue import FLEET_ROWS_META, HubCatalogue, provision
from cartos.hub.config import load_hub_config
from cartos.hub.review import DAY_S, ReviewStore, jpeg_size
from cartos.hub.service import Hub, HubSettings
from cartos.hub.store import HubStore, Received
from cartos.inference.corrections import CORRECTION_KIND
from cartos.runtime.decider import (
    REVIEW_CROP_MAX_BYTES,
    EventDecider,
    embedding_f16,
    review_crop_jpeg,
    review_exemplar,
)
from cartos.runtime.item_events import ItemEvent
from cartos.sensors.bridge.events import Settled
from cartos.sensors.camera import EventFrames, Frame, FrameRing
from cartos.service.errors import ConfigError
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sensors.camera.scenes import basket_background, place, product_image
from tests.sync.conftest import require_mosquitto

STORE = "s001"
CART = "cart-s001-0003"
OTHER = "cart-s001-0007"
SESSION = "5e55104a9d2c4f0f8a1b3c4d5e6f7a8b"
T0 = 1_800_000_000.0


def _f16(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f2").tobytes()).decode()


def _jpeg(width: int = 96, height: int = 72, seed: int = 0, quality: int = 90) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(data.tobytes())


def _msg_id(cart: str, seq: int) -> str:
    return hashlib.sha256(f"{cart}:{seq}".encode()).hexdigest()[:32]


def _body(command: dict[str, Any], kind: str = "ReviewQueued") -> dict[str, Any]:
    return {"type": kind, "key": "boot7:12:review", "session": SESSION, "version": 3,
            "at": T0, "command": command}


def _review(seq: int, cart: str = CART, *, vector: np.ndarray | None = None,
            crop: bytes | None = None, **command: Any) -> Received:
    exemplar: dict[str, Any] = {}
    if vector is not None:
        exemplar["embedding_f16"] = _f16(vector)
    if crop is not None:
        exemplar["crop_jpeg"] = base64.b64encode(crop).decode()
    fields = {"key": f"boot7:{seq}:review", "crop_path": f"/var/cartos/review/{seq}.jpg",
              "reason": "low margin", "candidates": [["sku-001", 0.41], ["sku-000", 0.39]],
              "weight_g": 412.5, "exemplar": exemplar or None} | command
    return Received(_msg_id(cart, seq), cart, STORE, "review", seq, _body(fields))


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=1280).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def master(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.db"
    fleet.build_catalogue(path, np.random.default_rng(0))
    provision(path, "b-test")
    return path


@pytest.fixture()
def messages(tmp_path: Path) -> Iterator[HubStore]:
    with HubStore(tmp_path / "hub.db") as store:
        yield store


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def review(tmp_path: Path, clock: Clock) -> Iterator[ReviewStore]:
    with ReviewStore(tmp_path / "review.db", clock=clock) as store:
        yield store


class Releases:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture()
def client(review: ReviewStore, master: Path) -> Iterator[tuple[TestClient, Releases]]:
    releases = Releases()
    app = create_review_app(review, HubCatalogue(master), on_change=releases)
    with TestClient(app) as http:
        yield http, releases


def _everything_in(path: Path) -> bytes:
    """Every byte of a SQLite file and its write-ahead log."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# -- ingestion -------------------------------------------------------------------------------


def test_review_messages_are_ingested_once_across_redelivery_and_restart(
    messages: HubStore, tmp_path: Path, clock: Clock
) -> None:
    batch = [_review(1, vector=_unit(1), crop=_jpeg(seed=1)),
             _review(2, vector=_unit(2), crop=_jpeg(seed=2)),
             _review(1, OTHER, vector=_unit(3))]
    messages.commit(batch)
    messages.commit([Received(_msg_id(CART, 99), CART, STORE, "events", 1,
                              _body({"key": "k", "sku": "sku-000"}, "ItemAdded"))])
    path = tmp_path / "review.db"
    with ReviewStore(path, clock=clock) as review:
        assert review.consume(messages, {(CART, "review"), (OTHER, "review"),
                                         (CART, "events")}) is False
        assert sorted(i.id for i in review.items()) == sorted(m.id for m in batch)
        # The cart resends (the hub stores repeats once), the hub reads again.
        messages.commit(batch)
        review.consume(messages, {(CART, "review"), (OTHER, "review")})
        assert len(review.items()) == 3
        assert (review.cursor(CART), review.cursor(OTHER)) == (2, 1)
        # A lost cursor (the two are one transaction; this is the message-id guarantee).
        sqlite3.connect(path).execute("DELETE FROM cursors").connection.commit()
        assert review.ingest(messages, CART) == 0
    with ReviewStore(path, clock=clock) as again:  # a restart: the hub touches every cart
        again.consume(messages, {(CART, "*"), (OTHER, "*")})
        items = again.items()
        assert len(items) == 3 and again.skipped() == {}
        first = again.get(batch[0].id)
        assert (first.cart, first.store, first.reason, first.weight_g, first.dim) == (
            CART, STORE, "low margin", 412.5, 1280)
        assert first.candidates == (("sku-001", 0.41), ("sku-000", 0.39))
        assert first.received_at == T0 and first.status == "open" and first.has_crop
        assert again.crop(batch[0].id) == _jpeg(seed=1)
        assert not again.get(batch[2].id).has_crop and again.crop(batch[2].id) is None
    # The crop and embedding live in the review store only: the hub's own copy of each
    # message lost them once ingested, so the review store's retention covers every copy.
    for m in messages.messages("review", CART) + messages.messages("review", OTHER):
        assert "crop_jpeg" not in json.dumps(m.body) and "embedding_f16" not in json.dumps(m.body)
    assert _jpeg(seed=1) not in _everything_in(messages.path)
    # What the hub keeps names no shopper: the session id is nowhere in the file.
    assert SESSION.encode() not in _everything_in(path)
    dump = "\n".join(sqlite3.connect(path).iterdump())
    assert SESSION not in dump and "boot7" not in dump


def _oversize_header() -> bytes:
    """A small JPEG whose frame header claims 60000x60000 pixels."""
    data = bytearray(_jpeg())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)


def test_hostile_review_bodies_are_skipped_and_counted_without_stopping_ingestion(
    messages: HubStore, review: ReviewStore
) -> None:
    png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
    flat = np.full((1100, 900, 3), 200, np.uint8)  # compresses far below 64 KiB
    big_flat = cv2.imencode(".jpg", flat)[1].tobytes()
    assert len(big_flat) < 64 * 1024 and jpeg_size(big_flat) == (900, 1100)
    noisy = _jpeg(400, 400, quality=100)
    assert len(noisy) > 64 * 1024
    good = _unit(5)
    bodies = [
        _review(1, vector=good, crop=_jpeg()),
        _review(2, vector=good, reason=None),                                  # no reason
        Received(_msg_id(CART, 3), CART, STORE, "review", 3, {"type": "ReviewQueued"}),
        _review(4, exemplar={"embedding_f16": "%%%not base64"}),
        _review(5, exemplar={"embedding_f16": _f16(good), "crop_jpeg": "@@@@"}),
        _review(6, vector=good, crop=png),                                     # not a JPEG
        _review(7, vector=good, crop=big_flat),                                # too big a view
        _review(8, vector=good, crop=_oversize_header()),                      # claims 60000²
        _review(9, vector=good, crop=noisy),                                   # > 64 KiB
        _review(10, vector=good, crop=b"\xff\xd8\xff\xe0 truncated"),          # not decodable
        Received(_msg_id(CART, 11), CART, STORE, "review", 11,
                 _body({"sku": "sku-000"}, "ItemAdded")),                      # wrong type
        _review(12),                                                           # no exemplar
        _review(13, vector=np.full(1280, np.nan, np.float32)),                 # not finite
        _review(14, vector=good, candidates=[["sku-000"]]),                    # bad candidate
        _review(15, vector=good, weight_g="heavy"),
        _review(16, vector=good, crop=_jpeg(seed=16)),
    ]
    messages.commit(bodies)
    review.consume(messages, {(CART, "review")})

    assert [i.id for i in review.items()] == [bodies[0].id, bodies[-1].id]
    assert review.skipped() == {"bad_crop": 1, "bad_embedding": 2, "malformed": 4,
                                "no_embedding": 1, "not_a_crop": 3, "not_jpeg": 2,
                                "not_review": 1}
    assert review.cursor(CART) == 16
    messages.commit([_review(17, vector=good)])  # ingestion goes on after all that
    review.consume(messages, {(CART, "review")})
    assert len(review.items()) == 3 and sum(review.skipped().values()) == 14


# -- labelling and registering ---------------------------------------------------------------


def test_a_label_teaches_the_master_catalogue_and_asks_for_a_release(
    messages: HubStore, review: ReviewStore, master: Path,
    client: tuple[TestClient, Releases]
) -> None:
    http, releases = client
    query = fleet.confusing_query(master, "sku-000", "sku-001")
    assert fleet.answer(master, query) == "sku-001"  # the fleet gets it wrong today
    messages.commit([_review(1, vector=query, crop=_jpeg()), _review(2, vector=_unit(2))])
    review.consume(messages, {(CART, "review")})
    item_id, other = _msg_id(CART, 1), _msg_id(CART, 2)
    version = HubCatalogue(master).version()

    response = http.post(f"/api/v1/review/{item_id}/label", json={"sku": "sku-000"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "labelled" and response.json()["label"] == "sku-000"
    assert releases.calls == 1
    with CatalogStore(master) as store:
        learned = store.exemplars(skus=["sku-000"], kind=CORRECTION_KIND)
    assert learned.sources == [f"correction:{CART}:review:{item_id}"]
    sent = query.astype("<f2").astype(np.float32)
    assert float(learned.vectors[0] @ sent / np.linalg.norm(sent)) > 0.99999
    assert fleet.answer(master, query) == "sku-000"  # what the next release teaches
    assert HubCatalogue(master).version() > version

    again = http.post(f"/api/v1/review/{item_id}/label", json={"sku": "sku-000"})
    assert again.status_code == 409
    assert http.post("/api/v1/review/nosuchitem0000000/label",
                     json={"sku": "sku-000"}).status_code == 404
    version = HubCatalogue(master).version()
    unknown = http.post(f"/api/v1/review/{other}/label", json={"sku": "no-such-sku"})
    assert unknown.status_code == 422 and "not in the master catalogue" in unknown.text
    assert review.get(other).status == "open" and releases.calls == 1
    assert HubCatalogue(master).version() == version
    assert http.post(f"/api/v1/review/{other}/label", json={"sku": ""}).status_code == 422
    assert http.post(f"/api/v1/review/{other}/label",
                     json={"sku": "sku-000", "x": 1}).status_code == 422


def test_a_label_repeated_after_a_crash_learns_nothing_twice(
    messages: HubStore, review: ReviewStore, master: Path
) -> None:
    vector = _unit(7)
    messages.commit([_review(1, vector=vector), _review(2, vector=_unit(8))])
    review.consume(messages, {(CART, "review")})
    catalogue = HubCatalogue(master)
    item_id = _msg_id(CART, 1)
    # The catalogue learned it, then the hub died before the review file said so.
    as_sent = vector.astype("<f2").astype(np.float32)
    assert catalogue.learn("sku-003", as_sent, CART, f"review:{item_id}")

    assert review.label(item_id, "sku-003", catalogue).status == "labelled"
    with CatalogStore(master) as store:
        assert len(store.exemplars(skus=["sku-003"], kind=CORRECTION_KIND)) == 1
    # Learned as one SKU, labelled as another after the crash: refused, nothing learned.
    other = _msg_id(CART, 2)
    assert catalogue.learn("sku-004", _unit(8).astype("<f2").astype(np.float32), CART,
                           f"review:{other}")
    with pytest.raises(Exception, match="already learned as 'sku-004'"):
        review.label(other, "sku-005", catalogue)
    assert review.get(other).status == "open"


def test_registering_a_new_sku_gives_the_fleet_the_crops_embeddings(
    messages: HubStore, review: ReviewStore, master: Path,
    client: tuple[TestClient, Releases]
) -> None:
    http, releases = client
    centre = _unit(11)
    views = [centre + 0.05 * _unit(20 + i) for i in range(3)]
    messages.commit([_review(i + 1, vector=v, crop=_jpeg(seed=i)) for i, v in enumerate(views)])
    review.consume(messages, {(CART, "review")})
    ids = [_msg_id(CART, i + 1) for i in range(3)]
    assert fleet.answer(master, centre) != "sku-new"

    response = http.post("/api/v1/skus", json={
        "sku": "sku-new", "name": "Oat drink 1 l", "brand": "brand-9", "barcode": "04012345678901",
        "weight_g": 1030.0, "weight_tol_g": 15.0, "review_ids": ids[:2]})

    assert response.status_code == 201, response.text
    assert [i["status"] for i in response.json()["items"]] == ["registered", "registered"]
    assert releases.calls == 1
    with CatalogStore(master) as store:
        record = store.get_sku("sku-new")
        exemplars = store.exemplars(skus=["sku-new"])
        assert "sku-new" in json.loads(store.meta_get(FLEET_ROWS_META) or "[]")
    assert record is not None and (record.name, record.barcode, record.weight_g) == (
        "Oat drink 1 l", "04012345678901", 1030.0)
    assert exemplars.sources == [f"review:{i}" for i in ids[:2]]
    assert set(exemplars.kinds) == {"reviewed"}
    for got, sent in zip(exemplars.vectors, views[:2], strict=True):
        as_sent = sent.astype("<f2").astype(np.float32)
        assert float(got @ as_sent / np.linalg.norm(as_sent)) > 0.99999
    assert fleet.answer(master, centre) == "sku-new"
    assert "rows.json" in HubCatalogue(master).fleet_parts()

    taken = http.post("/api/v1/skus", json={"sku": "sku-new", "name": "again",
                                            "review_ids": [ids[2]]})
    assert taken.status_code == 409 and review.get(ids[2]).status == "open"
    closed = http.post("/api/v1/skus", json={"sku": "sku-other", "name": "x",
                                             "review_ids": [ids[0]]})
    assert closed.status_code == 409
    missing = http.post("/api/v1/skus", json={"sku": "sku-other", "name": "x",
                                              "review_ids": ["nosuchitem0000000"]})
    assert missing.status_code == 404
    assert http.post("/api/v1/skus", json={"sku": "sku-other", "name": "x",
                                           "review_ids": []}).status_code == 422
    with CatalogStore(master) as store:
        assert store.get_sku("sku-other") is None
    assert releases.calls == 1


# -- retention -------------------------------------------------------------------------------


def test_crops_expire_after_closing_or_after_arrival_while_open(
    messages: HubStore, review: ReviewStore, master: Path, clock: Clock
) -> None:
    messages.commit([_review(i, vector=_unit(i), crop=_jpeg(seed=i)) for i in (1, 2, 3)])
    review.consume(messages, {(CART, "review")})
    still_open, labelled, dismissed = (_msg_id(CART, i) for i in (1, 2, 3))
    clock.now = T0 + 1 * DAY_S
    review.label(labelled, "sku-002", HubCatalogue(master))
    clock.now = T0 + 10 * DAY_S
    review.dismiss(dismissed)

    def crops() -> set[str]:
        return {i.id for i in review.items() if i.has_crop}

    assert review.sweep(T0 + 31 * DAY_S - 1) == 0 and len(crops()) == 3
    assert review.sweep(T0 + 31 * DAY_S) == 1  # 30 days after it was labelled
    assert crops() == {still_open, dismissed}
    assert review.sweep(T0 + 40 * DAY_S - 1) == 0
    assert review.sweep(T0 + 40 * DAY_S) == 1
    assert review.sweep(T0 + 90 * DAY_S - 1) == 0 and crops() == {still_open}
    assert review.sweep(T0 + 90 * DAY_S) == 1  # 90 days after arrival, never looked at
    assert crops() == set() and review.crop(still_open) is None
    item = review.get(still_open)
    assert item.status == "open" and item.dim == 1280  # it can still be labelled
    assert review.sweep(T0 + 999 * DAY_S) == 0


def test_retention_days_are_configurable(messages: HubStore, tmp_path: Path) -> None:
    messages.commit([_review(1, vector=_unit(1), crop=_jpeg())])
    with ReviewStore(tmp_path / "r.db", crop_retention_days=1, open_retention_days=2,
                     clock=Clock()) as review:
        review.consume(messages, {(CART, "review")})
        assert review.sweep(T0 + 2 * DAY_S - 1) == 0
        assert review.sweep(T0 + 2 * DAY_S) == 1


def test_purge_drops_every_crop_at_once_and_leaves_no_copy_in_the_file(
    messages: HubStore, review: ReviewStore, tmp_path: Path,
    client: tuple[TestClient, Releases]
) -> None:
    http, _ = client
    crop = _jpeg(300, 200, seed=3)
    messages.commit([_review(1, vector=_unit(1), crop=crop),
                     _review(2, vector=_unit(2), crop=_jpeg(seed=4)),
                     _review(1, OTHER, vector=_unit(3), crop=_jpeg(seed=5))])
    review.consume(messages, {(CART, "review"), (OTHER, "review")})
    item_id = _msg_id(CART, 1)
    shown = http.get(f"/api/v1/review/{item_id}/crop")
    assert shown.status_code == 200 and shown.content == crop
    assert shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["cache-control"] == "no-store"
    path = tmp_path / "review.db"
    marker = crop[len(crop) // 2:len(crop) // 2 + 64]
    assert marker in _everything_in(path)
    assert review.purge(store="s999") == 0

    response = http.post("/api/v1/purge", json={"crops_only": True})

    assert response.status_code == 200
    assert response.json() == {"crops_deleted": 3, "items_deleted": 0}
    assert http.get(f"/api/v1/review/{item_id}/crop").status_code == 404
    assert len(http.get("/api/v1/review").json()["items"]) == 3
    assert marker not in _everything_in(path)  # overwritten, not just unlinked

    gone = http.post("/api/v1/purge", json={"crops_only": False})
    assert gone.json() == {"crops_deleted": 0, "items_deleted": 3}
    messages.commit([_review(1, vector=_unit(1), crop=crop)])  # a late resend
    review.consume(messages, {(CART, "*"), (OTHER, "*")})
    assert review.items() == []  # the cursors stayed: nothing purged comes back
    assert http.get(f"/api/v1/review/{item_id}/crop").status_code == 404


# -- the API ---------------------------------------------------------------------------------


def test_the_api_lists_without_images_and_maps_states_onto_http(
    messages: HubStore, review: ReviewStore, client: tuple[TestClient, Releases]
) -> None:
    http, releases = client
    messages.commit([_review(i, vector=_unit(i), crop=_jpeg(seed=i)) for i in (1, 2, 3)])
    review.consume(messages, {(CART, "review")})
    first, second, _ = (_msg_id(CART, i) for i in (1, 2, 3))

    listed = http.get("/api/v1/review", params={"status": "open"})
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [i["id"] for i in items] == [_msg_id(CART, i) for i in (1, 2, 3)]
    assert set(items[0]) == {"id", "cart", "store", "received_at", "reason", "candidates",
                             "weight_g", "dim", "has_crop", "status", "label", "labelled_at",
                             "closed_at"}
    assert len(listed.text) < 2000  # no image or embedding bytes

    assert http.post(f"/api/v1/review/{first}/dismiss").json()["status"] == "dismissed"
    assert http.post(f"/api/v1/review/{first}/dismiss").status_code == 409
    assert http.post(f"/api/v1/review/{first}/label", json={"sku": "sku-000"}).status_code == 409
    assert http.post("/api/v1/review/nosuchitem0000000/dismiss").status_code == 404
    assert http.get("/api/v1/review/nosuchitem0000000/crop").status_code == 404
    assert http.get(f"/api/v1/review/{second}").json()["status"] == "open"
    assert [i["id"] for i in http.get("/api/v1/review?status=dismissed").json()["items"]] == [
        first]
    assert len(http.get("/api/v1/review").json()["items"]) == 3
    assert http.get("/api/v1/review?status=bogus").status_code == 422
    assert releases.calls == 0  # a dismissal teaches nothing

    health = http.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert health["items"] == {"open": 2, "labelled": 0, "registered": 0, "dismissed": 1}
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/api/v1/review", "/api/v1/review/{item_id}/crop", "/api/v1/review/{item_id}/label",
            "/api/v1/skus", "/api/v1/purge"} <= set(paths)
    assert http.get("/docs").status_code == 404  # its scripts would come from a CDN


# -- configuration ---------------------------------------------------------------------------


def _config(tmp_path: Path, extra: str, database: str = "data/hub.db") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'store = "s001"\nhub_id = "hub-s001"\ndatabase = "{database}"\n'
                    '[catalogue]\npath = "cat.db"\nsigning_key = "k.pem"\n'
                    f'certificate = "k.cert"\n{extra}')
    return path


def test_the_review_section_has_defaults_and_refuses_what_cannot_work(tmp_path: Path) -> None:
    config = load_hub_config(_config(tmp_path, "[review]\n"))
    assert config.review is not None
    assert config.review.database == tmp_path / "data" / "review.db"
    assert (config.review.crop_retention_days, config.review.open_retention_days) == (30, 90)
    assert (config.review.api_host, config.review.api_port) == ("127.0.0.1", 8081)
    assert load_hub_config(_config(tmp_path, "")).review is None

    custom = load_hub_config(_config(
        tmp_path, '[review]\ndatabase = "r/review.db"\ncrop_retention_days = 7\n'
                  'open_retention_days = 14\napi_port = 0\n'))
    assert custom.review is not None and custom.review.database == tmp_path / "r" / "review.db"
    assert (custom.review.crop_retention_days, custom.review.api_port) == (7, 0)
    pg = load_hub_config(_config(tmp_path, "[review]\n", "postgresql://hub@db/cartos"))
    assert pg.review is not None and pg.review.database == tmp_path / "review.db"

    for bad in ("[review]\ncrop_retention_days = -1\n", "[review]\napi_port = 70000\n",
                "[review]\nsession_ids = true\n"):
        with pytest.raises(ConfigError):
            load_hub_config(_config(tmp_path, bad))
    no_catalogue = tmp_path / "bare.toml"
    no_catalogue.write_text('store = "s001"\nhub_id = "h"\ndatabase = "hub.db"\n[review]\n')
    with pytest.raises(ConfigError, match=r"\[review\] needs a \[catalogue\]"):
        load_hub_config(no_catalogue)


# -- the cart's side -------------------------------------------------------------------------


def test_the_cart_sends_a_small_jpeg_of_its_crop_and_nothing_when_the_file_is_gone(
    tmp_path: Path
) -> None:
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg(120, 90))
    assert review_crop_jpeg(str(small)) == small.read_bytes()  # sent as written
    big = tmp_path / "big.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1500, 3), dtype=np.uint8)
    cv2.imwrite(str(big), noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert big.stat().st_size > REVIEW_CROP_MAX_BYTES
    data = review_crop_jpeg(str(big))
    assert data is not None and len(data) <= REVIEW_CROP_MAX_BYTES
    size = jpeg_size(data)
    assert size is not None and max(size) <= 1024 and size[0] > size[1]

    vector = _unit(1)
    exemplar = review_exemplar(embedding_f16(vector), str(tmp_path / "gone.jpg"))
    assert exemplar == {"embedding_f16": _f16(vector)}
    assert review_exemplar(None, "no-crop") is None


def test_what_the_basket_queues_is_what_the_hub_takes_in(
    tmp_path: Path, messages: HubStore, review: ReviewStore
) -> None:
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(_jpeg(160, 120, seed=9))
    vector = _unit(9)
    with BasketStore(tmp_path / "basket.db") as basket:
        basket.apply(SessionOpened("s", SESSION))
        basket.apply(ReviewQueued("w:0:1:review", str(crop), "unknown item",
                                  (("sku-001", 0.2),), 300.0,
                                  exemplar=review_exemplar(embedding_f16(vector), str(crop))))
        (queued,) = basket.pending("review")
    messages.commit([Received(queued.msg_id, CART, STORE, "review", queued.seq,
                              queued.payload)])
    review.consume(messages, {(CART, "review")})
    (item,) = review.items()
    assert (item.reason, item.weight_g, item.candidates) == (
        "unknown item", 300.0, (("sku-001", 0.2),))
    assert review.crop(item.id) == crop.read_bytes()


def _settled_add(t: float) -> ItemEvent:
    return ItemEvent("w:0:1", Settled(1, t, 0, 300.0, 300.0))


def test_the_decider_queues_the_review_item_with_its_embedding_and_crop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = CatalogueView([CatalogueItem("sku-1", "Tin", weight_g=1000.0, weight_tol_g=10.0)])
    decider = EventDecider(None, catalogue, FusionPolicy(), tmp_path / "review")
    scene, _ = place(basket_background(), product_image(150, 110, seed=5), 250, 180)
    ring = FrameRing(max_frames=64)
    for i in range(40):
        ring.push(Frame(basket_background() if i < 20 else scene, t=i / 10, seq=i,
                        source="test"))
    vector = _unit(4)

    def seen(event: ItemEvent, ring: FrameRing | None
             ) -> tuple[None, EventFrames | None, np.ndarray, float]:
        assert ring is not None
        return None, decider.picker.pick(ring, event.t), vector, 0.0

    monkeypatch.setattr(decider, "_vision", seen)
    decision = decider.decide(_settled_add(2.0), ring, [])

    (queued,) = [c for c in decision.commands if isinstance(c, ReviewQueued)]
    assert queued.exemplar is not None
    assert queued.exemplar["embedding_f16"] == _f16(vector)
    crop = base64.b64decode(queued.exemplar["crop_jpeg"])
    assert crop == Path(decision.crop_path).read_bytes()


# -- the hub service -------------------------------------------------------------------------


def test_a_carts_review_item_reaches_the_queue_through_broker_and_hub(
    tmp_path: Path
) -> None:
    """Real Mosquitto, the hub's receiving loop with the queue as its consumer, a cart's
    sync client sending a full-size item (a 64 KiB crop) from its basket."""
    from tests.sync.broker import Broker

    exe = require_mosquitto()
    broker = Broker(tmp_path / "broker", executable=exe)
    review = ReviewStore(tmp_path / "review.db")
    hub = Hub(tmp_path / "hub.db", STORE, "hub-s001", HubSettings(port=broker.port))
    hub.add_consumer(review.consume)
    sync = None
    try:
        hub.start()
        crop = tmp_path / "crop.jpg"
        noise = np.random.default_rng(1).integers(0, 256, (900, 900, 3), dtype=np.uint8)
        cv2.imwrite(str(crop), noise)
        exemplar = review_exemplar(embedding_f16(_unit(1)), str(crop))
        assert exemplar is not None
        assert len(base64.b64decode(exemplar["crop_jpeg"])) > 48 * 1024
        with BasketStore(tmp_path / "basket.db") as basket:
            basket.apply(SessionOpened("s", SESSION))
            basket.apply(ReviewQueued("w:0:1:review", str(crop), "unknown item",
                                      exemplar=exemplar))
        sync = CartSync(tmp_path / "basket.db", STORE, CART,
                        SyncSettings(port=broker.port)).start()
        deadline = time.monotonic() + 30
        while not review.items() and time.monotonic() < deadline:
            time.sleep(0.05)
        (item,) = review.items()
        assert review.crop(item.id) == base64.b64decode(exemplar["crop_jpeg"])
    finally:
        if sync is not None:
            sync.stop()
        hub.stop()
        review.close()
        broker.close()
