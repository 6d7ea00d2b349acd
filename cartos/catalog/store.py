"""The catalogue on disk: one SQLite file, versioned, changed only in atomic steps.

A cart recognises items against this file while the back office may be
importing into it, so the design follows from three needs:

* **Atomic changes.** Every edit happens inside :meth:`CatalogStore.change`,
  which is exactly one SQLite transaction. An import that fails half way leaves
  the catalogue as it was, never with half the exemplars of a SKU.
* **A version number per change.** Prototypes, calibration artifacts and cached
  indexes are derived from the catalogue; stamping everything with the version
  that produced it lets a reader tell when its derived data is stale, and keeps
  older prototype sets queryable so a bad rebuild can be compared or rolled back.
* **Concurrent readers.** WAL journaling lets the recogniser read while a
  writer holds its transaction open.

Transactions are controlled by hand (``isolation_level=None`` plus explicit
``BEGIN IMMEDIATE``/``COMMIT``/``ROLLBACK``) because the implicit transactions
of Python's sqlite3 module commit at moments this store cannot control.
``BEGIN IMMEDIATE`` takes the write lock up front, so two writers queue instead
of failing half way through with a lock upgrade error.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sqlite_utils import Database

from cartos.catalog.errors import CatalogError, CatalogStateError, UnknownSkuError
from cartos.catalog.records import DISCONTINUED, SKU_STATUSES, ExemplarSet, SkuRecord, VersionRow

SCHEMA_VERSION = 1
"""Layout version of the SQLite file; bump it (and migrate) when the tables change."""

PROTOTYPE_LEVELS: tuple[str, ...] = ("sku", "family", "brand")
"""Granularities at which prototypes (mean embeddings) are kept."""

EMBEDDING_DIM_KEY = "embedding_dim"
SCHEMA_VERSION_KEY = "schema_version"
_RESERVED_META = frozenset({EMBEDDING_DIM_KEY, SCHEMA_VERSION_KEY})

# Vectors are stored little-endian whatever the host, so a catalogue file can be
# built on one machine and copied to a cart with another CPU.
_VECTOR_DTYPE = np.dtype("<f4")

# Larger than any version a catalogue will reach; stands for "no upper bound".
_NO_BOUND = 2**62

# How long a writer waits for another writer's change to finish before giving
# up; an import holding the write lock longer than this is a conflict to report.
_BUSY_TIMEOUT_S = 30.0

_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS versions (
        version INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS skus (
        sku TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        barcode TEXT,
        brand TEXT,
        family TEXT,
        weight_g REAL,
        weight_tol_g REAL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'discontinued')),
        successor TEXT REFERENCES skus (sku)
    )
    """,
    # AUTOINCREMENT so an exemplar id is never handed out twice, even after the
    # newest exemplars are removed: ids may be remembered by derived indexes.
    """
    CREATE TABLE IF NOT EXISTS exemplars (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sku TEXT NOT NULL REFERENCES skus (sku),
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        dim INTEGER NOT NULL CHECK (dim > 0),
        vector BLOB NOT NULL CHECK (length(vector) = 4 * dim)
    )
    """,
    "CREATE INDEX IF NOT EXISTS idx_exemplars_sku ON exemplars (sku)",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_exemplars_sku_source ON exemplars (sku, source)",
    # A row with a NULL vector is a tombstone: the key was deleted at that version.
    """
    CREATE TABLE IF NOT EXISTS prototypes (
        level TEXT NOT NULL CHECK (level IN ('sku', 'family', 'brand')),
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        dim INTEGER CHECK (dim > 0),
        vector BLOB,
        count INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
        PRIMARY KEY (level, key, version),
        CHECK ((vector IS NULL) = (dim IS NULL)),
        CHECK (vector IS NULL OR length(vector) = 4 * dim)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS artifacts (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (name, version)
    )
    """,
)

_SKU_COLUMNS = "sku, name, barcode, brand, family, weight_g, weight_tol_g, status, successor"


class CatalogStore:
    """Read and change a catalogue file.

    Reads work at any time. Every method that writes must run inside
    ``with store.change(kind, summary):`` and raises :class:`CatalogStateError`
    otherwise, so no write can escape the versioning.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pending: int | None = None
        self._dirty = False
        self._joined = False
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=_BUSY_TIMEOUT_S
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalogue {self.path}: {exc}") from exc
        try:
            self._db = Database(self._conn, recursive_triggers=False, execute_plugins=False)
            self._open()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise CatalogError(f"{self.path} is not a usable catalogue: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def within(cls, conn: sqlite3.Connection, path: str | Path) -> CatalogStore:
        """A view of the catalogue in ``path`` through ``conn``, whose transaction is open.

        Why: a signed update is verified and recorded by the bundle store on its own
        connection to this same file, and the catalogue change it carries must commit or
        roll back *with* that bookkeeping. Here :meth:`change` nests as a SAVEPOINT inside
        the caller's transaction, and :meth:`close` leaves the connection to its owner.
        """
        if not conn.in_transaction:
            raise CatalogStateError(
                "CatalogStore.within needs a connection with an open transaction")
        store = cls.__new__(cls)
        store.path = Path(path)
        store._pending = None
        store._dirty = False
        store._joined = True
        store._conn = conn
        store._db = Database(conn, recursive_triggers=False, execute_plugins=False)
        if store._check_schema_version() != SCHEMA_VERSION:
            raise CatalogError(f"{store.path} holds no catalogue to update")
        return store

    def _open(self) -> None:
        # The newer-schema check runs before anything is written: a file from a
        # newer release must not be touched, not even switched to WAL.
        found = self._check_schema_version()
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._db.enable_wal()
        if found == SCHEMA_VERSION:
            # Already set up: skip the write lock, so a cart opening the file
            # while an import holds it does not wait for the import to finish.
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have
            # created or upgraded the file since the first look.
            self._check_schema_version()
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                (SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _check_schema_version(self) -> int | None:
        """Return the file's schema version (None for a fresh file); refuse newer ones."""
        if "meta" not in self._db.table_names():
            return None
        row = self._conn.execute(
            "SELECT value FROM meta WHERE key = ?", (SCHEMA_VERSION_KEY,)
        ).fetchone()
        if row is None:
            return None
        try:
            found = int(row[0])
        except ValueError as exc:
            raise CatalogError(f"{self.path} has an unreadable schema version {row[0]!r}") from exc
        if found > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path} uses catalogue schema {found}, newer than the {SCHEMA_VERSION} "
                "this cartos understands; upgrade cartos to open it"
            )
        return found

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the file; an open change block is rolled back by SQLite."""
        if not self._joined:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CatalogStore({str(self.path)!r})"

    # -- versions ----------------------------------------------------------------

    @property
    def version(self) -> int:
        """The latest committed catalogue version; 0 for a catalogue never changed."""
        row = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM versions").fetchone()
        return int(row[0])

    @property
    def pending_version(self) -> int:
        """The version the open change will create if it writes anything."""
        return self._require_change()

    @contextmanager
    def change(self, kind: str, summary: str) -> Iterator[None]:
        """Group writes into one atomic, versioned change.

        On normal exit the writes are committed together with a new row in the
        version history. If the block raises, everything it wrote is rolled
        back and the exception propagates. A block that wrote nothing commits
        nothing and does not consume a version number, so re-running an
        idempotent import does not inflate the history.
        """
        if self._pending is not None:
            raise CatalogStateError("a change is already open; change blocks do not nest")
        begin, commit, rollback = (
            ("SAVEPOINT catalogue_change", "RELEASE catalogue_change",
             "ROLLBACK TO catalogue_change")
            if self._joined else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        )
        try:
            self._conn.execute(begin)
        except sqlite3.OperationalError as exc:
            raise CatalogError(f"cannot start a change to {self.path}: {exc}") from exc
        try:
            self._pending = self.version + 1
            self._dirty = False
            yield
            if self._dirty:
                self._conn.execute(
                    "INSERT INTO versions (version, kind, summary, created_at) VALUES (?, ?, ?, ?)",
                    (self._pending, kind, summary, _utc_now()),
                )
                self._conn.execute(commit)
            else:
                self._conn.execute(rollback)
                if self._joined:
                    self._conn.execute(commit)
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute(rollback)
                if self._joined:
                    self._conn.execute(commit)
            raise
        finally:
            self._pending = None
            self._dirty = False

    def history(self) -> list[VersionRow]:
        """Every committed change, oldest first."""
        rows = self._conn.execute(
            "SELECT version, kind, summary, created_at FROM versions ORDER BY version"
        ).fetchall()
        return [VersionRow(int(v), str(k), str(s), str(c)) for v, k, s, c in rows]

    def _require_change(self) -> int:
        if self._pending is None:
            raise CatalogStateError(
                "catalogue writes must happen inside `with store.change(kind, summary):`"
            )
        return self._pending

    # -- SKUs --------------------------------------------------------------------

    def upsert_sku(self, rec: SkuRecord) -> bool:
        """Insert or replace a SKU; returns False (and writes nothing) if it is unchanged."""
        self._require_change()
        if not rec.sku:
            raise CatalogError("a SKU code must not be empty")
        if rec.status not in SKU_STATUSES:
            raise CatalogError(
                f"SKU {rec.sku}: status {rec.status!r} is not one of {', '.join(SKU_STATUSES)}"
            )
        if rec.successor is not None:
            self._check_successor(rec.sku, rec.successor)
        if self.get_sku(rec.sku) == rec:
            return False
        self._conn.execute(
            f"INSERT INTO skus ({_SKU_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, barcode = excluded.barcode, "
            "brand = excluded.brand, family = excluded.family, weight_g = excluded.weight_g, "
            "weight_tol_g = excluded.weight_tol_g, status = excluded.status, "
            "successor = excluded.successor",
            (
                rec.sku,
                rec.name,
                rec.barcode,
                rec.brand,
                rec.family,
                rec.weight_g,
                rec.weight_tol_g,
                rec.status,
                rec.successor,
            ),
        )
        self._dirty = True
        return True

    def get_sku(self, sku: str) -> SkuRecord | None:
        row = self._conn.execute(
            f"SELECT {_SKU_COLUMNS} FROM skus WHERE sku = ?", (sku,)
        ).fetchone()
        return None if row is None else _sku_from_row(row)

    def list_skus(self, status: str | None = "active") -> list[SkuRecord]:
        """SKUs with the given status (``None``: all), sorted by SKU code."""
        if status is None:
            rows = self._conn.execute(f"SELECT {_SKU_COLUMNS} FROM skus ORDER BY sku").fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_SKU_COLUMNS} FROM skus WHERE status = ? ORDER BY sku", (status,)
            ).fetchall()
        return [_sku_from_row(row) for row in rows]

    def discontinue(self, sku: str, successor: str | None = None) -> None:
        """Mark a SKU discontinued, optionally naming the SKU that replaces it.

        The successor is set to exactly what is passed, so calling again with
        ``successor=None`` clears a previously named one.
        """
        self._require_change()
        current = self.get_sku(sku)
        if current is None:
            raise UnknownSkuError(f"unknown SKU {sku!r}")
        if successor is not None:
            self._check_successor(sku, successor)
        if current.status == DISCONTINUED and current.successor == successor:
            return
        self._conn.execute(
            "UPDATE skus SET status = ?, successor = ? WHERE sku = ?",
            (DISCONTINUED, successor, sku),
        )
        self._dirty = True

    def _check_successor(self, sku: str, successor: str) -> None:
        if successor == sku:
            raise CatalogError(f"SKU {sku!r} cannot be its own successor")
        # Following the chain both proves the successor exists and refuses
        # cycles, which would send "what replaced this?" lookups round forever.
        seen = {sku}
        step: str | None = successor
        while step is not None:
            if step in seen:
                raise CatalogError(f"making {successor!r} the successor of {sku!r} forms a cycle")
            seen.add(step)
            rec = self.get_sku(step)
            if rec is None:
                raise UnknownSkuError(f"unknown successor SKU {step!r}")
            step = rec.successor

    # -- exemplars ---------------------------------------------------------------

    @property
    def embedding_dim(self) -> int | None:
        """Dimension fixed by the first vectors ever stored; None until then."""
        value = self.meta_get(EMBEDDING_DIM_KEY)
        return None if value is None else int(value)

    def add_exemplars(
        self,
        sku: str,
        vectors: npt.ArrayLike,
        sources: Sequence[str],
        kind: str = "reference",
    ) -> int:
        """Store reference embeddings of one SKU; returns how many were new.

        ``sources`` identifies where each vector came from (usually the image
        path). A (sku, source) pair already present is skipped, which makes
        re-running an import harmless.
        """
        self._require_change()
        matrix = _as_matrix(vectors)
        if isinstance(sources, str) or len(sources) != matrix.shape[0]:
            raise ValueError(
                f"got {matrix.shape[0]} vectors but "
                f"{'a string' if isinstance(sources, str) else len(sources)} sources"
            )
        if self.get_sku(sku) is None:
            raise UnknownSkuError(f"unknown SKU {sku!r}")
        if matrix.shape[0] == 0:
            return 0
        dim = int(matrix.shape[1])
        self._ensure_dim(dim)
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT INTO exemplars (sku, source, kind, dim, vector) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (sku, source) DO NOTHING",
            (
                (sku, str(source), kind, dim, row.tobytes())
                for source, row in zip(sources, matrix, strict=True)
            ),
        )
        inserted = self._conn.total_changes - before
        if inserted:
            self._dirty = True
        return inserted

    def remove_exemplars(self, ids: Sequence[int]) -> int:
        """Delete exemplars by id; returns how many existed."""
        self._require_change()
        cursor = self._conn.execute(
            "DELETE FROM exemplars WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        removed = max(cursor.rowcount, 0)
        if removed:
            self._dirty = True
        return removed

    def exemplars(self, skus: Iterable[str] | None = None, kind: str | None = None) -> ExemplarSet:
        """Exemplars, optionally of some SKUs and/or one kind, in id order."""
        clauses: list[str] = []
        params: list[Any] = []
        if skus is not None:
            clauses.append("sku IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(skus)))
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            f"SELECT id, sku, source, kind, dim, vector FROM exemplars{where} ORDER BY id", params
        ).fetchall()
        dim = self.embedding_dim or 0
        if any(row[4] != dim for row in rows):
            raise CatalogStateError(f"{self.path}: stored exemplars disagree on their dimension")
        return ExemplarSet(
            ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
            skus=[row[1] for row in rows],
            vectors=_stack_blobs([row[5] for row in rows], dim),
            sources=[row[2] for row in rows],
            kinds=[row[3] for row in rows],
        )

    def exemplar_counts(self, kind: str | None = None) -> dict[str, int]:
        """Number of exemplars per SKU; SKUs without any are absent."""
        if kind is None:
            rows = self._conn.execute(
                "SELECT sku, COUNT(*) FROM exemplars GROUP BY sku ORDER BY sku"
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT sku, COUNT(*) FROM exemplars WHERE kind = ? GROUP BY sku ORDER BY sku",
                (kind,),
            ).fetchall()
        return {str(sku): int(count) for sku, count in rows}

    def _ensure_dim(self, dim: int) -> None:
        current = self.embedding_dim
        if current is None:
            self._write_meta(EMBEDDING_DIM_KEY, str(dim))
        elif current != dim:
            raise CatalogStateError(
                f"vectors have dimension {dim} but this catalogue's embeddings have {current}; "
                "a different backbone needs a fresh catalogue"
            )

    # -- prototypes --------------------------------------------------------------

    def put_prototypes(
        self,
        level: str,
        keys: Sequence[str],
        vectors: npt.ArrayLike,
        counts: Sequence[int],
    ) -> None:
        """Record prototypes for some keys at the pending version.

        Older versions stay in the table; :meth:`prototypes` picks the newest
        row per key, so keys not mentioned here keep their previous prototype.
        """
        self._require_change()
        _check_level(level)
        matrix = _as_matrix(vectors)
        n = int(matrix.shape[0])
        if isinstance(keys, str) or len(keys) != n or len(counts) != n:
            raise ValueError(
                f"keys, vectors and counts must align: got {len(keys)}, {n}, {len(counts)}"
            )
        if len(set(keys)) != n:
            raise ValueError("prototype keys must be unique within one call")
        if any(int(c) < 0 for c in counts):
            raise ValueError("prototype counts must not be negative")
        if n == 0:
            return
        dim = int(matrix.shape[1])
        self._ensure_dim(dim)
        self._write_prototypes(
            level,
            (
                (str(key), dim, row.tobytes(), int(count))
                for key, row, count in zip(keys, matrix, counts, strict=True)
            ),
        )

    def delete_prototypes(self, level: str, keys: Sequence[str]) -> None:
        """Retire prototypes from the pending version on; keys not present are ignored."""
        self._require_change()
        _check_level(level)
        live = set(self._live_prototype_keys(level))
        doomed = sorted({key for key in keys if key in live})
        if doomed:
            self._write_prototypes(level, ((key, None, None, 0) for key in doomed))

    def prototypes(
        self, level: str, version: int | None = None
    ) -> tuple[list[str], npt.NDArray[np.float32], list[int]]:
        """Prototypes as they stood at ``version`` (default: newest): keys, matrix, counts.

        For each key the row with the greatest version not above ``version``
        wins; keys whose winning row is a tombstone are left out.
        """
        _check_level(level)
        rows = self._conn.execute(
            "SELECT p.key, p.dim, p.vector, p.count FROM prototypes AS p "
            "JOIN (SELECT key, MAX(version) AS version FROM prototypes "
            "      WHERE level = ? AND version <= ? GROUP BY key) AS newest "
            "  ON p.key = newest.key AND p.version = newest.version "
            "WHERE p.level = ? AND p.vector IS NOT NULL ORDER BY p.key",
            (level, _NO_BOUND if version is None else version, level),
        ).fetchall()
        dim = self.embedding_dim or 0
        if any(row[1] != dim for row in rows):
            raise CatalogStateError(f"{self.path}: stored prototypes disagree on their dimension")
        return (
            [str(row[0]) for row in rows],
            _stack_blobs([row[2] for row in rows], dim),
            [int(row[3]) for row in rows],
        )

    def prototype_keys(self, level: str) -> list[str]:
        """Keys with a live (newest, not retired) prototype, without reading the vectors."""
        _check_level(level)
        return sorted(self._live_prototype_keys(level))

    def _live_prototype_keys(self, level: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT p.key FROM prototypes AS p "
            "JOIN (SELECT key, MAX(version) AS version FROM prototypes "
            "      WHERE level = ? GROUP BY key) AS newest "
            "  ON p.key = newest.key AND p.version = newest.version "
            "WHERE p.level = ? AND p.vector IS NOT NULL",
            (level, level),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def _write_prototypes(
        self, level: str, rows: Iterable[tuple[str, int | None, bytes | None, int]]
    ) -> None:
        version = self._require_change()
        self._conn.executemany(
            "INSERT INTO prototypes (level, key, version, dim, vector, count) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (level, key, version) DO UPDATE SET "
            "dim = excluded.dim, vector = excluded.vector, count = excluded.count",
            ((level, key, version, dim, blob, count) for key, dim, blob, count in rows),
        )
        self._dirty = True

    # -- artifacts ---------------------------------------------------------------

    def put_artifact(self, name: str, data: bytes) -> None:
        """Store a derived blob (index, calibration, ...) stamped with the pending version."""
        version = self._require_change()
        self._conn.execute(
            "INSERT INTO artifacts (name, version, data) VALUES (?, ?, ?) "
            "ON CONFLICT (name, version) DO UPDATE SET data = excluded.data",
            (name, version, bytes(data)),
        )
        self._dirty = True

    def drop_artifact_after(self, name: str, version: int) -> int:
        """Delete the versions of artifact ``name`` newer than ``version`` (undoing an update
        that installed one where there was none); returns how many rows went."""
        self._require_change()
        cursor = self._conn.execute(
            "DELETE FROM artifacts WHERE name = ? AND version > ?", (name, version))
        removed = max(cursor.rowcount, 0)
        if removed:
            self._dirty = True
        return removed

    def get_artifact(self, name: str, version: int | None = None) -> bytes | None:
        """The newest artifact of that name at or before ``version`` (default: newest)."""
        row = self._conn.execute(
            "SELECT data FROM artifacts WHERE name = ? AND version <= ? "
            "ORDER BY version DESC LIMIT 1",
            (name, _NO_BOUND if version is None else version),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def artifact_version(self, name: str) -> int | None:
        """The catalogue version the newest artifact of that name was written at."""
        row = self._conn.execute(
            "SELECT MAX(version) FROM artifacts WHERE name = ?", (name,)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    # -- meta --------------------------------------------------------------------

    def meta_get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        """Set a free-form catalogue setting; the store's own keys are refused."""
        self._require_change()
        if key in _RESERVED_META:
            raise CatalogError(f"meta key {key!r} is managed by the catalogue itself")
        self._write_meta(key, value)

    def _write_meta(self, key: str, value: str) -> None:
        self._require_change()
        if self.meta_get(key) == value:
            return
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        self._dirty = True


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _sku_from_row(row: Sequence[Any]) -> SkuRecord:
    sku, name, barcode, brand, family, weight_g, weight_tol_g, status, successor = row
    return SkuRecord(
        sku=sku,
        name=name,
        barcode=barcode,
        brand=brand,
        family=family,
        weight_g=None if weight_g is None else float(weight_g),
        weight_tol_g=None if weight_tol_g is None else float(weight_tol_g),
        status=status,
        successor=successor,
    )


def _check_level(level: str) -> None:
    if level not in PROTOTYPE_LEVELS:
        raise CatalogError(f"prototype level {level!r} is not one of {', '.join(PROTOTYPE_LEVELS)}")


def _as_matrix(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Validate embeddings and convert them to the on-disk float32 layout.

    Non-finite values are refused here because one NaN would silently poison
    every prototype and distance computed from the catalogue later.
    """
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (n, d) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"vectors must be floating point, got {array.dtype}")
    if array.shape[0] and array.shape[1] == 0:
        raise ValueError("vectors must have at least one dimension")
    matrix: npt.NDArray[np.float32] = np.ascontiguousarray(array, dtype=_VECTOR_DTYPE)
    if not np.isfinite(matrix).all():
        raise CatalogError("vectors contain NaN or infinite values")
    return matrix


def _stack_blobs(blobs: list[bytes], dim: int) -> npt.NDArray[np.float32]:
    """Turn stored vector blobs into one writable (n, dim) float32 matrix.

    Joining into a bytearray and viewing it avoids a per-row numpy round trip,
    which is what keeps reading thousands of exemplars well under a second.
    """
    buffer = bytearray().join(blobs)
    flat = np.frombuffer(buffer, dtype=_VECTOR_DTYPE)
    return flat.reshape(len(blobs), dim).astype(np.float32, copy=False)
