"""The hub's review queue: item crops the carts could not settle, labelled by an attendant.

A cart queues a review item (``ReviewQueued`` on its ``review`` outbox stream) when
the recogniser could not name what went into the basket, or the shopper answered
"none of these". The item carries the crop's embedding and the masked item crop as
a small JPEG (``exemplar``, see :class:`cartos.basket.events.ReviewQueued`). The hub
commits the message like any other (:mod:`cartos.hub.service`); :meth:`ReviewStore.consume`,
registered with :meth:`Hub.add_consumer <cartos.hub.service.Hub.add_consumer>`, then
copies what an attendant needs into this store's own SQLite file:

* one row per message, keyed by the message id (a redelivery, a restart or a second
  pass over the same messages stores nothing twice), with a per-cart cursor in the same
  file and the same transaction;
* the cart, when it arrived, the reason, the recogniser's candidates, the weight, the
  embedding and the crop. **No shopper identity:** the message's session id, command
  key and cart-side timestamps are never copied;
* a body that is not a well-formed review item (missing fields, bad base64, an image
  that is not a JPEG, or one too large to be an item crop) is skipped, counted by
  reason (:meth:`ReviewStore.skipped`) and logged without its content; ingestion goes on.

An attendant then labels an item with a catalogue SKU (:meth:`ReviewStore.label`: the
embedding is learned into the master catalogue exactly like a shopper's correction,
id ``review:<item id>``), registers a new SKU from several items
(:meth:`ReviewStore.register`), or dismisses it. The hub's next release takes the
change to every cart.

Retention (:meth:`ReviewStore.sweep`): an item's crop is deleted ``crop_retention_days``
after the item was closed (labelled, registered or dismissed) and
``open_retention_days`` after it arrived while it stays open; :meth:`ReviewStore.purge`
drops every crop (or every item) at once. Deleted content is overwritten in the file
(``secure_delete``) and the write-ahead log is truncated after each sweep and purge.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import cv2
import numpy as np
import numpy.typing as npt

from cartos.catalog.records import DISCONTINUED, SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.errors import CartosError
from cartos.hub.catalogue import HubCatalogue, correction_source_id
from cartos.hub.errors import HubError, HubStorageError
from cartos.hub.message_store import MessageReader
from cartos.hub.sqlite_file import CURSORS_SCHEMA, advance_cursor, open_durable, read_cursor
from cartos.inference.corrections import APPLIED_META_PREFIX
from cartos.inference.embedder import l2_normalise

log = logging.getLogger(__name__)

REVIEW_STREAM: Final = "review"
STATUSES: Final = ("open", "labelled", "registered", "dismissed")
CLOSED: Final = ("labelled", "registered", "dismissed")

MAX_CROP_BYTES: Final = 64 * 1024
"""Largest crop accepted (the cart re-encodes its crop to fit)."""
MAX_CROP_SIDE: Final = 1024
"""Largest width and height of an accepted crop: anything bigger is not an item crop."""
MAX_EMBEDDING_DIM: Final = 8192
MAX_REASON_CHARS: Final = 200
MAX_CANDIDATES: Final = 20

DAY_S: Final = 86_400.0

# Why a message was skipped (the counter names, ``skipped:<reason>`` in the file).
NOT_REVIEW: Final = "not_review"
MALFORMED: Final = "malformed"
NO_EMBEDDING: Final = "no_embedding"
BAD_EMBEDDING: Final = "bad_embedding"
BAD_CROP: Final = "bad_crop"
NOT_JPEG: Final = "not_jpeg"
NOT_A_CROP: Final = "not_a_crop"

_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ReviewError(HubError):
    """Base of the review queue's refusals."""


class ReviewNotFoundError(ReviewError):
    """No review item with that id (HTTP 404)."""


class ReviewStateError(ReviewError):
    """The item is not open, or the request contradicts what was already done (HTTP 409)."""


class ReviewLabelError(ReviewError):
    """The label cannot be used: unknown or discontinued SKU, embedding of another model
    (HTTP 422)."""



class _Skip(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ReviewItem:
    """One review item as the attendant sees it (the crop bytes are fetched separately)."""

    id: str
    cart: str
    store: str
    received_at: float
    reason: str
    candidates: tuple[tuple[str, float], ...]
    weight_g: float | None
    dim: int | None
    has_crop: bool
    status: str
    label: str | None
    labelled_at: float | None
    closed_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "cart": self.cart, "store": self.store,
            "received_at": self.received_at, "reason": self.reason,
            "candidates": [[sku, score] for sku, score in self.candidates],
            "weight_g": self.weight_g, "dim": self.dim, "has_crop": self.has_crop,
            "status": self.status, "label": self.label, "labelled_at": self.labelled_at,
            "closed_at": self.closed_at,
        }


@dataclass(frozen=True)
class _Parsed:
    reason: str
    candidates: list[list[Any]]
    weight_g: float | None
    embedding: bytes
    crop: bytes | None


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,                 -- the uplink message id
    cart TEXT NOT NULL,
    store TEXT NOT NULL,
    received_at REAL NOT NULL,           -- hub clock
    reason TEXT NOT NULL,
    candidates TEXT NOT NULL,            -- JSON [[sku, score], ...]
    weight_g REAL,
    embedding BLOB,                      -- little-endian float16, as the cart sent it
    crop BLOB,                           -- JPEG; NULL once retention or a purge took it
    status TEXT NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'labelled', 'registered', 'dismissed')),
    label TEXT,
    labelled_at REAL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS items_by_status ON items(status, received_at);
""" + CURSORS_SCHEMA + """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_COLUMNS: Final = ("id, cart, store, received_at, reason, candidates, weight_g, "
                   "length(embedding), crop IS NOT NULL, status, label, labelled_at, closed_at")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's frame header, read without decoding any pixel
    (so a small file that claims a huge image is refused before anything is allocated);
    None when ``data`` is not a JPEG with a frame header."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 7 or i + 9 > n:
                return None
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        i += 2 + length
    return None


def check_crop(data: bytes) -> None:
    """Refuse (``_Skip``) anything but a decodable JPEG item crop of bounded size."""
    if len(data) > MAX_CROP_BYTES:
        raise _Skip(NOT_A_CROP, f"{len(data)}-byte image (at most {MAX_CROP_BYTES})")
    size = jpeg_size(data)
    if size is None:
        raise _Skip(NOT_JPEG, "the crop is not a JPEG")
    width, height = size
    if not (0 < width <= MAX_CROP_SIDE and 0 < height <= MAX_CROP_SIDE):
        raise _Skip(NOT_A_CROP, f"{width}x{height} image (an item crop is at most "
                                f"{MAX_CROP_SIDE}x{MAX_CROP_SIDE})")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.shape[:2] != (height, width):
        raise _Skip(NOT_JPEG, "the crop does not decode as the JPEG it claims to be")


def _b64(value: object, reason: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise _Skip(reason, f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Skip(reason, f"{what} is not valid base64") from None


def _decode_vector(raw: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


def parse_review(body: dict[str, Any]) -> _Parsed:
    """What of a ``review`` message body the hub keeps; raises ``_Skip`` for anything else."""
    if body.get("type") != "ReviewQueued":
        raise _Skip(NOT_REVIEW, f"a {str(body.get('type'))[:40]!r} on the review stream")
    command = body.get("command")
    if not isinstance(command, dict):
        raise _Skip(MALFORMED, "no command")
    reason = command.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
        raise _Skip(MALFORMED, "no reason")
    raw_candidates = command.get("candidates", [])
    if not isinstance(raw_candidates, list) or len(raw_candidates) > MAX_CANDIDATES:
        raise _Skip(MALFORMED, "candidates is not a short list")
    candidates: list[list[Any]] = []
    for pair in raw_candidates:
        if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str)
                or not 0 < len(pair[0]) <= 64 or isinstance(pair[1], bool)
                or not isinstance(pair[1], int | float) or not math.isfinite(pair[1])):
            raise _Skip(MALFORMED, "a candidate is not [sku, score]")
        candidates.append([pair[0], float(pair[1])])
    weight = command.get("weight_g")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)
                               or not math.isfinite(weight)):
        raise _Skip(MALFORMED, "weight_g is not a number")
    exemplar = command.get("exemplar")
    if exemplar is not None and not isinstance(exemplar, dict):
        raise _Skip(MALFORMED, "exemplar is not an object")
    if not exemplar or "embedding_f16" not in exemplar:
        raise _Skip(NO_EMBEDDING, "no embedding: nothing to label")
    embedding = _b64(exemplar["embedding_f16"], BAD_EMBEDDING, "embedding_f16")
    if len(embedding) % 2 or len(embedding) // 2 > MAX_EMBEDDING_DIM:
        raise _Skip(BAD_EMBEDDING, f"a {len(embedding)}-byte embedding")
    if not bool(np.all(np.isfinite(_decode_vector(embedding)))):
        raise _Skip(BAD_EMBEDDING, "the embedding is not finite")
    crop: bytes | None = None
    if exemplar.get("crop_jpeg") is not None:
        crop = _b64(exemplar["crop_jpeg"], BAD_CROP, "crop_jpeg")
        check_crop(crop)
    return _Parsed(reason.strip(), candidates,
                   float(weight) if weight is not None else None, embedding, crop)


class ReviewStore:
    """The review queue's own SQLite file (WAL, ``synchronous=FULL``, ``secure_delete``).

    Thread-safe: the hub's worker ingests, the attendants' API labels and the service's
    sweep deletes, each under one lock.
    """

    def __init__(self, path: Path, *, crop_retention_days: float = 30.0,
                 open_retention_days: float = 90.0,
                 clock: Callable[[], float] = time.time) -> None:
        if crop_retention_days < 0 or open_retention_days < 0:
            raise ValueError("retention days must be >= 0")
        self.path = path
        self.crop_retention_days = crop_retention_days
        self.open_retention_days = open_retention_days
        self._clock = clock
        self._lock = threading.RLock()
        self._retry: set[str] = set()
        self._conn = open_durable(path, _SCHEMA, "review database")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- ingestion ---------------------------------------------------------------------

    def consume(self, db: MessageReader, touched: set[tuple[str, str]]) -> bool:
        """The hub consumer (:meth:`Hub.add_consumer`): ingest the committed review
        messages of every touched cart. Never changes the catalogue (returns False)."""
        carts = {cart for cart, stream in touched if stream in (REVIEW_STREAM, "*")}
        carts |= self._retry
        self._retry = set()
        for cart in sorted(carts):
            try:
                self.ingest(db, cart)
            except HubStorageError as exc:  # tried again on the hub's next pass
                self._retry.add(cart)
                log.error("review items of %s not ingested: %s", cart, exc)
        return False

    def ingest(self, db: MessageReader, cart: str) -> int:
        """Copy ``cart``'s committed review messages past its cursor; returns how many
        items were new. Each one is stored once, whatever number of times it is read."""
        with self._lock:
            after = self.cursor(cart)
            messages = db.messages(REVIEW_STREAM, cart, after)
            if not messages:
                return 0
            now = self._clock()
            added = 0
            skipped: dict[str, int] = {}
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                for msg in messages:
                    if conn.execute("SELECT 1 FROM items WHERE id = ?", (msg.id,)).fetchone():
                        continue  # already here (its hub copy may have lost the crop since)
                    try:
                        item = parse_review(msg.body)
                    except _Skip as skip:
                        skipped[skip.reason] = skipped.get(skip.reason, 0) + 1
                        log.warning("review message %s of %s skipped (%s): %s",
                                    msg.id[:64], cart[:64], skip.reason, skip)
                        continue
                    except Exception as exc:  # a hostile body must never stop the hub
                        skipped[MALFORMED] = skipped.get(MALFORMED, 0) + 1
                        log.warning("review message %s of %s skipped (%s): %s",
                                    msg.id[:64], cart[:64], MALFORMED, type(exc).__name__)
                        continue
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO items(id, cart, store, received_at, reason, "
                        "candidates, weight_g, embedding, crop) VALUES (?,?,?,?,?,?,?,?,?)",
                        (msg.id, msg.cart, msg.store, now, item.reason,
                         json.dumps(item.candidates), item.weight_g, item.embedding, item.crop))
                    added += cur.rowcount
                for reason, count in skipped.items():
                    self._count(f"skipped:{reason}", count)
                advance_cursor(conn, cart, max(m.seq for m in messages))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise HubStorageError(f"review items of {cart} not stored: {exc}") from exc
        # The crop now lives here, under this store's retention: the hub's copy of the
        # message loses it (and its embedding), so purging here purges everywhere.
        redact = getattr(db, "redact", None)
        if redact is not None:
            upto = max(m.seq for m in messages)
            for field in ("crop_jpeg", "embedding_f16"):
                redact(REVIEW_STREAM, cart, upto, ("command", "exemplar", field))
        if added:
            log.info("review: %d new item(s) from %s", added, cart)
        return added

    def cursor(self, cart: str) -> int:
        """The seq of ``cart``'s review stream ingested up to (0: none)."""
        with self._lock:
            return read_cursor(self._conn, cart)

    def _count(self, name: str, n: int) -> None:
        self._conn.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                           (name, n))

    def skipped(self) -> dict[str, int]:
        """Review messages skipped since the file was created, by reason."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, value FROM counters WHERE name LIKE 'skipped:%' ORDER BY name")
            return {str(n).removeprefix("skipped:"): int(v) for n, v in rows}

    # -- reading -----------------------------------------------------------------------

    @staticmethod
    def _item(row: Sequence[Any]) -> ReviewItem:
        (id_, cart, store, received_at, reason, candidates, weight, emb_len, has_crop,
         status, label, labelled_at, closed_at) = row
        return ReviewItem(
            str(id_), str(cart), str(store), float(received_at), str(reason),
            tuple((str(s), float(p)) for s, p in json.loads(candidates)),
            None if weight is None else float(weight),
            None if emb_len is None else int(emb_len) // 2, bool(has_crop), str(status),
            None if label is None else str(label),
            None if labelled_at is None else float(labelled_at),
            None if closed_at is None else float(closed_at))

    def get(self, item_id: str) -> ReviewItem:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?",
                                     (item_id,)).fetchone()
        if row is None:
            raise ReviewNotFoundError(f"no review item {item_id[:80]!r}")
        return self._item(row)

    def items(self, status: str | None = None, limit: int = 1000) -> list[ReviewItem]:
        """Items oldest first, all or those with ``status``."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM items {where} ORDER BY received_at, rowid LIMIT ?",
                (*params, limit)).fetchall()
        return [self._item(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Items per status (every status named, 0 when none)."""
        with self._lock:
            rows = self._conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status")
            found = {str(s): int(n) for s, n in rows}
        return {s: found.get(s, 0) for s in STATUSES}

    def crop(self, item_id: str) -> bytes | None:
        """The item's JPEG crop; None once retention or a purge deleted it."""
        with self._lock:
            row = self._conn.execute("SELECT crop FROM items WHERE id = ?",
                                     (item_id,)).fetchone()
        if row is None:
            raise ReviewNotFoundError(f"no review item {item_id[:80]!r}")
        return None if row[0] is None else bytes(row[0])

    def _open_item(self, item_id: str) -> tuple[ReviewItem, npt.NDArray[np.float32]]:
        item = self.get(item_id)
        if item.status != "open":
            raise ReviewStateError(f"review item {item_id} is already {item.status}")
        row = self._conn.execute("SELECT embedding FROM items WHERE id = ?",
                                 (item_id,)).fetchone()
        if row is None or row[0] is None:
            raise ReviewStateError(f"review item {item_id} has no embedding to learn from")
        return item, _decode_vector(bytes(row[0]))

    # -- attendant actions -------------------------------------------------------------

    def label(self, item_id: str, sku: str, catalogue: HubCatalogue) -> ReviewItem:
        """Teach the master catalogue that the item is ``sku`` and close it as labelled.

        Learned like a shopper's correction, with id ``review:<item id>`` (exemplar source
        ``correction:<cart>:review:<item id>``), so a label repeated after a crash between
        the two files learns nothing twice. Raises :class:`ReviewNotFoundError`,
        :class:`ReviewStateError` (not open; already learned as another SKU) or
        :class:`ReviewLabelError` (unknown or discontinued SKU, wrong dimension).
        """
        with self._lock:
            item, vector = self._open_item(item_id)
            corrects = f"review:{item_id}"
            with CatalogStore(catalogue.path) as store:
                self._check_label(store, sku, [vector])
            if not catalogue.learn(sku, vector, item.cart, corrects):
                with CatalogStore(catalogue.path) as store:
                    applied = store.meta_get(
                        APPLIED_META_PREFIX + correction_source_id(item.cart, corrects))
                learned_as = json.loads(applied).get("sku") if applied else None
                if learned_as is None:
                    raise ReviewLabelError(f"the master catalogue refused {sku!r} for review "
                                           f"item {item_id} (see the hub log)")
                if learned_as != sku:
                    raise ReviewStateError(f"review item {item_id} was already learned as "
                                           f"{learned_as!r}")
            self._close([item_id], "labelled", sku)
        log.info("review item %s labelled %s", item_id, sku)
        return self.get(item_id)

    def register(self, record: SkuRecord, item_ids: Sequence[str],
                 catalogue: HubCatalogue) -> list[ReviewItem]:
        """Add ``record`` to the master catalogue for the whole fleet, with the items'
        embeddings as its exemplars (sources ``review:<item id>``); closes them as registered.

        The SKU must be new (an existing one is labelled instead); the one exception is a
        repeat of a registration that reached the catalogue but not this file.
        """
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise ReviewLabelError("a new SKU needs at least one review item")
        sources = [f"review:{i}" for i in ids]
        with self._lock:
            vectors = [self._open_item(i)[1] for i in ids]
            with CatalogStore(catalogue.path) as store:
                existing = store.get_sku(record.sku)
                if existing is not None:
                    have = set(store.exemplars(skus=[record.sku]).sources)
                    if not set(sources) <= have:
                        raise ReviewStateError(f"SKU {record.sku!r} is already in the "
                                               "catalogue: label the items with it instead")
                else:
                    self._check_dims(store, vectors)
            if existing is None:
                try:
                    catalogue.register(record, l2_normalise(np.stack(vectors)), sources)
                except CartosError as exc:
                    raise ReviewLabelError(f"SKU {record.sku!r} not registered: {exc}") from exc
            self._close(ids, "registered", record.sku)
        log.info("registered SKU %s from %d review item(s)", record.sku, len(ids))
        return [self.get(i) for i in ids]

    def dismiss(self, item_id: str) -> ReviewItem:
        """Close the item without teaching anything (not an item, not recognisable)."""
        with self._lock:
            item = self.get(item_id)
            if item.status != "open":
                raise ReviewStateError(f"review item {item_id} is already {item.status}")
            self._close([item_id], "dismissed", None)
        return self.get(item_id)

    @staticmethod
    def _check_label(store: CatalogStore, sku: str,
                     vectors: Iterable[npt.NDArray[np.float32]]) -> None:
        record = store.get_sku(sku)
        if record is None:
            raise ReviewLabelError(f"SKU {sku!r} is not in the master catalogue")
        if record.status == DISCONTINUED:
            raise ReviewLabelError(f"SKU {sku!r} is discontinued")
        ReviewStore._check_dims(store, vectors)

    @staticmethod
    def _check_dims(store: CatalogStore, vectors: Iterable[npt.NDArray[np.float32]]) -> None:
        dim = store.embedding_dim
        for vector in vectors:
            dim = vector.shape[0] if dim is None else dim  # an empty catalogue: agree at least
            if vector.shape[0] != dim:
                raise ReviewLabelError(f"the crop's embedding has {vector.shape[0]} dimensions, "
                                       f"the catalogue's {dim} (another model?)")

    def _close(self, ids: Sequence[str], status: str, label: str | None) -> None:
        now = self._clock()
        labelled_at = now if label is not None else None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for item_id in ids:
                self._conn.execute(
                    "UPDATE items SET status = ?, label = ?, labelled_at = ?, closed_at = ? "
                    "WHERE id = ? AND status = 'open'",
                    (status, label, labelled_at, now, item_id))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise HubStorageError(f"review items not closed: {exc}") from exc

    # -- retention ---------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Delete the crops retention no longer allows; returns how many were deleted.

        A closed item's crop goes ``crop_retention_days`` after it was closed, an open
        item's ``open_retention_days`` after it arrived (it stays open, without its image).
        """
        now = self._clock() if now is None else now
        closed_before = now - self.crop_retention_days * DAY_S
        arrived_before = now - self.open_retention_days * DAY_S
        deleted = self._write(
            "UPDATE items SET crop = NULL WHERE crop IS NOT NULL AND ("
            "(status != 'open' AND closed_at <= ?) OR (status = 'open' AND received_at <= ?))",
            (closed_before, arrived_before))
        if deleted:
            log.info("review retention: %d crop(s) deleted", deleted)
        return deleted

    def purge(self, store: str | None = None, *, crops_only: bool = True) -> int:
        """Drop every crop at once (``crops_only``), or every item, of ``store`` (None: all).

        Returns how many items lost their crop, or were deleted. The per-cart cursors stay,
        so nothing purged is ingested again.
        """
        where, params = ("WHERE store = ?", (store,)) if store is not None else ("", ())
        if crops_only:
            clause = "AND crop IS NOT NULL" if where else "WHERE crop IS NOT NULL"
            count = self._write(f"UPDATE items SET crop = NULL {where} {clause}", params)
        else:
            count = self._write(f"DELETE FROM items {where}", params)
        log.warning("review purge%s: %d item(s) %s", f" of store {store}" if store else "",
                    count, "lost their crop" if crops_only else "deleted")
        return count

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            try:
                count = int(self._conn.execute(sql, params).rowcount)
                if count:  # the old pages must not linger in the write-ahead log either
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise HubStorageError(f"review database {self.path}: {exc}") from exc
        return count
