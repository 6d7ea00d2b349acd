"""The cart's side: staging of chunked parts, and the store of accepted bundles.

:class:`ChunkAssembler` receives the chunks of one verified bundle into a staging directory.
Every chunk is on disk (written atomically, fsynced) before it is acknowledged, so after a
restart the assembler reopens the directory and reports exactly which chunk indexes are
still missing. It never holds more than one chunk in memory, never stores more bytes for a
part than the signed manifest declares, and hands a part over only once it hashes to the
manifest's sha256.

:class:`BundleStore` is one SQLite file (WAL, ``synchronous=FULL``) holding, per store and
bundle type, the ``current`` and ``previous`` accepted bundles (envelope, manifest, parts),
the highest version ever accepted, and the installed key certificates and revocations.
:meth:`BundleStore.offer` verifies a bundle completely and only then runs the ``apply`` hook
and the bookkeeping in *one* transaction: a failing hook, a full disk or a crash leaves the
previous state, and a rejected bundle leaves the file byte-for-byte unchanged. Nothing that
arrives can make ``offer`` raise: every verdict, including "expired", comes back as an
:class:`Outcome` so an update problem never stops the cart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, TypedDict

from cartos.sync.bundles import verify
from cartos.sync.bundles.keys import KeyCertificate, RevocationList, TrustStore
from cartos.sync.bundles.manifest import (
    DEFAULT_CAPS,
    PART_KINDS,
    Caps,
    Chunk,
    Manifest,
    PartSpec,
    parse_manifest,
    reject,
    strict_loads,
)
from cartos.sync.bundles.verify import DEFAULT_SKEW_S, PartSource, VerifiedBundle
from cartos.sync.errors import BundleRejected, BundleStoreError

ApplyHook = Callable[[Manifest, Mapping[str, bytes], sqlite3.Connection], None]
"""``apply(manifest, parts_by_name, conn)``: install a verified bundle. Runs inside the
store's open transaction on ``conn``; it may write tables of this file, must not commit or
roll back, and raises to refuse (the whole offer is then undone)."""

RestoreHook = Callable[[Manifest, Manifest | None, Mapping[str, bytes], sqlite3.Connection],
                      None]
"""``restore(current_manifest, previous_manifest, previous_parts_by_name, conn)``: undo the
current bundle and reinstate the previous one on rollback; ``None`` means "no previous
bundle: back to the shipped baseline". The current manifest is given because an update
made of cumulative deltas is undone from what *it* changed, not by re-applying the one
before. Same transaction rules as :data:`ApplyHook`."""

HealthCheck = Callable[[Manifest], bool]
"""Called after a bundle is committed; ``False`` (or an exception) rolls it back."""

Status = Literal["applied", "no_update", "rejected", "failed", "rolled_back", "unhealthy"]

SCHEMA_VERSION: Final = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bundle_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_slots (
    store TEXT NOT NULL,
    type TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('current', 'previous')),
    version INTEGER NOT NULL CHECK (version >= 1),
    envelope BLOB NOT NULL,
    manifest BLOB NOT NULL,
    accepted_at INTEGER NOT NULL,
    PRIMARY KEY (store, type, slot)
);
CREATE TABLE IF NOT EXISTS bundle_parts (
    store TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (store, type, version, name)
);
CREATE TABLE IF NOT EXISTS bundle_blobs (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_high_water (
    store TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (store, type)
);
CREATE TABLE IF NOT EXISTS bundle_key_documents (
    digest TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('certificate', 'revocation')),
    envelope BLOB NOT NULL,
    installed_at INTEGER NOT NULL
);
"""

_STORED_CAPS: Final = Caps(
    manifest_bytes=1 << 62,
    part_bytes={kind: 1 << 62 for kind in PART_KINDS},
    total_bytes=1 << 62,
    max_parts=1 << 30,
)
"""Manifests already accepted are re-read without caps: lowering a cap in the config must not
make the bundle the cart is running on unreadable."""


class Holding(TypedDict):
    """One line of the reconciliation message: "for this store and type I hold v41"."""

    store: str
    type: str
    version: int


@dataclass(frozen=True)
class Outcome:
    """The verdict on an offer or a rollback.

    ``status``: ``applied``; ``no_update`` (expired: nothing to do); ``rejected`` (the bundle
    failed verification, ``reason`` is a rejection code); ``failed`` (the bundle was fine but
    could not be installed: ``apply_failed`` or ``storage``; it may be offered again);
    ``rolled_back`` (``health_check`` failed after applying, or ``requested``);
    ``unhealthy`` (health check and then rollback both failed: ``rollback_failed``).
    """

    status: Status
    reason: str | None = None
    detail: str = ""
    type: str | None = None
    version: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "applied"


def _now() -> float:
    return time.time()


class BundleStore:
    """The accepted bundles of one cart, which belongs to exactly one store (``store_id``).

    Not thread-safe: the runtime's sync thread owns it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        root_key: str,
        store_id: str,
        apply: ApplyHook,
        restore: RestoreHook,
        health_check: HealthCheck | None = None,
        certificates: Iterable[bytes] = (),
        caps: Caps = DEFAULT_CAPS,
        skew_s: int = DEFAULT_SKEW_S,
        clock: Callable[[], float] = _now,
    ) -> None:
        self.path = Path(path)
        self.store_id = store_id
        self.caps = caps
        self.skew_s = skew_s
        self._apply = apply
        self._restore = restore
        self._health_check = health_check
        self._clock = clock
        self._trust = TrustStore(root_key)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise BundleStoreError(f"cannot open bundle store {self.path}: {exc}") from exc
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BundleStoreError(f"{self.path}: WAL journal mode unavailable ({mode})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._create()
            self._load_trust()
        except sqlite3.Error as exc:
            self._conn.close()
            raise BundleStoreError(f"cannot open bundle store {self.path}: {exc}") from exc
        try:
            for envelope in certificates:
                self.install_certificate(envelope)
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
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

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file (and truncate the log), e.g. before
        backing the file up or comparing its bytes."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def trust(self) -> TrustStore:
        return self._trust

    # -- reading -------------------------------------------------------------------------

    def holding(self) -> list[Holding]:
        """What the cart runs now, for reconciliation on (re)connect: the hub compares this
        to what it published instead of trusting broker sessions or retained messages."""
        rows = self._conn.execute(
            "SELECT store, type, version FROM bundle_slots WHERE slot = 'current' "
            "ORDER BY store, type"
        ).fetchall()
        return [Holding(store=s, type=t, version=int(v)) for s, t, v in rows]

    def high_water(self, bundle_type: str) -> int:
        """Highest version ever accepted for this cart's store and ``bundle_type`` (0: none).
        Only versions above it are accepted, including after a rollback."""
        row = self._conn.execute(
            "SELECT version FROM bundle_high_water WHERE store = ? AND type = ?",
            (self.store_id, bundle_type),
        ).fetchone()
        return int(row[0]) if row else 0

    def current(self, bundle_type: str) -> Manifest | None:
        return self._slot_manifest(bundle_type, "current")

    def previous(self, bundle_type: str) -> Manifest | None:
        return self._slot_manifest(bundle_type, "previous")

    def parts_of(self, manifest: Manifest) -> dict[str, bytes]:
        """The stored parts of an accepted (current or previous) bundle, by part name."""
        rows = self._conn.execute(
            "SELECT p.name, b.data FROM bundle_parts p JOIN bundle_blobs b USING (sha256) "
            "WHERE p.store = ? AND p.type = ? AND p.version = ?",
            (manifest.store, manifest.type, manifest.version),
        ).fetchall()
        return {str(name): bytes(data) for name, data in rows}

    # -- keys ----------------------------------------------------------------------------

    def install_certificate(self, envelope: bytes) -> KeyCertificate:
        """Verify a root-signed signing-key certificate and keep it (idempotent).

        Raises :class:`BundleRejected` (nothing is written) when it is not root-signed.
        """
        cert = self._trust.check_certificate(envelope)
        self._persist_document("certificate", envelope)
        self._trust.install(cert)
        return cert

    def install_revocations(self, envelope: bytes) -> RevocationList:
        """Verify a root-signed revocation list and keep it; revocations never lapse."""
        revocation = self._trust.check_revocations(envelope)
        self._persist_document("revocation", envelope)
        self._trust.revoke(revocation.key_ids)
        return revocation

    # -- offering ------------------------------------------------------------------------

    def check(self, envelope: bytes) -> VerifiedBundle:
        """Verify a manifest envelope and its version without its parts.

        The runtime calls this when a manifest arrives, before fetching any chunk, so no
        bandwidth or disk is spent on a bundle that will be refused. Raises
        :class:`BundleRejected` (``exc.no_update`` for expired).
        """
        verified = verify.verify_envelope(
            envelope,
            self._trust,
            store_id=self.store_id,
            now=int(self._clock()),
            caps=self.caps,
            skew_s=self.skew_s,
        )
        verified_manifest = verified.manifest
        verify.check_version(verified_manifest, self.high_water(verified_manifest.type))
        return verified

    def offer(self, envelope: bytes, parts: Mapping[str, PartSource]) -> Outcome:
        """Verify a bundle with its parts and, if everything passes, install it.

        ``parts`` maps :meth:`Manifest.part_ref` labels to bytes or staged files (see
        :meth:`ChunkAssembler.parts`). Never raises for anything in ``envelope`` or
        ``parts``.
        """
        try:
            verified = self.check(envelope)
            manifest = verified.manifest
            loaded = verify.load_parts(manifest, parts)
        except BundleRejected as exc:
            return Outcome("no_update" if exc.no_update else "rejected", exc.reason, exc.detail)
        except sqlite3.Error as exc:
            return Outcome("failed", "storage", f"reading the bundle store: {exc}")

        failure = self._install(verified, loaded)
        if failure is not None:
            return failure
        done = Outcome("applied", type=manifest.type, version=manifest.version)
        if self._health_check is None:
            return done
        try:
            healthy = bool(self._health_check(manifest))
            why = "health check reported failure"
        except Exception as exc:  # a crashing check is a failing check
            healthy = False
            why = f"health check raised {type(exc).__name__}: {exc}"
        if healthy:
            return done
        try:
            self.rollback(manifest.type)
        except BundleStoreError as exc:
            return Outcome(
                "unhealthy",
                "rollback_failed",
                f"{why}; rollback failed: {exc}",
                manifest.type,
                manifest.version,
            )
        return Outcome("rolled_back", "health_check", why, manifest.type, manifest.version)

    def rollback(self, bundle_type: str) -> Outcome:
        """Go back to the previous bundle of ``bundle_type`` (or the baseline if none).

        One transaction: the ``restore`` hook plus the slot change. The rolled-back version
        stays the high-water mark, so it cannot be offered again: the hub must publish a
        newer one. Raises :class:`BundleStoreError` when there is nothing to roll back or the
        hook fails (the state is then unchanged).
        """
        current = self.current(bundle_type)
        if current is None:
            raise BundleStoreError(f"no {bundle_type!r} bundle installed; nothing to roll back")
        previous = self.previous(bundle_type)
        previous_parts = self.parts_of(previous) if previous is not None else {}
        key = (self.store_id, bundle_type)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._restore(current, previous, previous_parts, self._conn)
                self._require_open_transaction("restore")
                self._drop_version(current)
                self._conn.execute(
                    "DELETE FROM bundle_slots WHERE store = ? AND type = ? AND slot = 'current'",
                    key,
                )
                self._conn.execute(
                    "UPDATE bundle_slots SET slot = 'current' "
                    "WHERE store = ? AND type = ? AND slot = 'previous'",
                    key,
                )
                self._collect_blobs()
                self._conn.execute("COMMIT")
            except BaseException:
                self._abort()
                raise
        except BundleStoreError:
            raise
        except Exception as exc:
            raise BundleStoreError(
                f"rollback of {bundle_type!r} v{current.version} failed: {exc}"
            ) from exc
        return Outcome(
            "rolled_back",
            "requested",
            f"v{current.version} -> "
            + (f"v{previous.version}" if previous is not None else "baseline"),
            bundle_type,
            previous.version if previous is not None else None,
        )

    # -- internals -----------------------------------------------------------------------

    def _install(self, verified: VerifiedBundle, loaded: Mapping[str, bytes]) -> Outcome | None:
        """Apply hook + bookkeeping in one transaction; an Outcome on failure, else None."""
        manifest = verified.manifest
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return Outcome("failed", "storage", str(exc), manifest.type, manifest.version)
        try:
            try:
                self._apply(manifest, loaded, self._conn)
            except Exception as exc:
                self._abort()
                return Outcome(
                    "failed",
                    "apply_failed",
                    f"{type(exc).__name__}: {exc}",
                    manifest.type,
                    manifest.version,
                )
            self._require_open_transaction("apply")
            self._record(verified, loaded)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort()
            return Outcome("failed", "storage", str(exc), manifest.type, manifest.version)
        except BaseException:
            self._abort()
            raise
        return None

    def _record(self, verified: VerifiedBundle, loaded: Mapping[str, bytes]) -> None:
        manifest = verified.manifest
        key = (manifest.store, manifest.type)
        old_previous = self._slot_manifest(manifest.type, "previous")
        if old_previous is not None:
            self._drop_version(old_previous)
        self._conn.execute(
            "DELETE FROM bundle_slots WHERE store = ? AND type = ? AND slot = 'previous'", key
        )
        self._conn.execute(
            "UPDATE bundle_slots SET slot = 'previous' "
            "WHERE store = ? AND type = ? AND slot = 'current'",
            key,
        )
        self._conn.execute(
            "INSERT INTO bundle_slots (store, type, slot, version, envelope, manifest, "
            "accepted_at) VALUES (?, ?, 'current', ?, ?, ?, ?)",
            (
                manifest.store,
                manifest.type,
                manifest.version,
                verified.envelope,
                manifest.canonical(),
                int(self._clock()),
            ),
        )
        for spec in manifest.parts:
            self._conn.execute(
                "INSERT OR IGNORE INTO bundle_blobs (sha256, data) VALUES (?, ?)",
                (spec.sha256, loaded[spec.name]),
            )
            self._conn.execute(
                "INSERT INTO bundle_parts (store, type, version, name, kind, sha256, size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, manifest.version, spec.name, spec.kind, spec.sha256, spec.size),
            )
        self._conn.execute(
            "INSERT INTO bundle_high_water (store, type, version) VALUES (?, ?, ?) "
            "ON CONFLICT (store, type) DO UPDATE SET version = excluded.version",
            (*key, manifest.version),
        )
        self._collect_blobs()

    def _drop_version(self, manifest: Manifest) -> None:
        self._conn.execute(
            "DELETE FROM bundle_parts WHERE store = ? AND type = ? AND version = ?",
            (manifest.store, manifest.type, manifest.version),
        )

    def _collect_blobs(self) -> None:
        self._conn.execute(
            "DELETE FROM bundle_blobs WHERE sha256 NOT IN (SELECT sha256 FROM bundle_parts)"
        )

    def _require_open_transaction(self, hook: str) -> None:
        if not self._conn.in_transaction:
            raise BundleStoreError(f"the {hook} hook ended the store's transaction")

    def _abort(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _slot_manifest(self, bundle_type: str, slot: str) -> Manifest | None:
        row = self._conn.execute(
            "SELECT manifest FROM bundle_slots WHERE store = ? AND type = ? AND slot = ?",
            (self.store_id, bundle_type, slot),
        ).fetchone()
        if row is None:
            return None
        return parse_manifest(strict_loads(bytes(row[0])), _STORED_CAPS)

    def _create(self) -> None:
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bundle_meta'"
        ).fetchone()
        if exists:
            row = self._conn.execute(
                "SELECT value FROM bundle_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None or int(row[0]) != SCHEMA_VERSION:
                raise BundleStoreError(f"{self.path}: unsupported bundle store schema {row}")
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(
                "INSERT OR REPLACE INTO bundle_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._abort()
            raise

    def _load_trust(self) -> None:
        """Replay persisted certificates and revocations, re-verified against the pinned root
        (a document that no longer verifies, e.g. after a root change, is ignored)."""
        rows = self._conn.execute(
            "SELECT kind, envelope FROM bundle_key_documents ORDER BY rowid"
        ).fetchall()
        for kind, envelope in rows:
            with contextlib.suppress(BundleRejected):
                if kind == "certificate":
                    self._trust.add_certificate(bytes(envelope))
                else:
                    self._trust.add_revocations(bytes(envelope))

    def _persist_document(self, kind: str, envelope: bytes) -> None:
        digest = hashlib.sha256(envelope).hexdigest()
        try:
            if self._conn.execute(
                "SELECT 1 FROM bundle_key_documents WHERE digest = ?", (digest,)
            ).fetchone():
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO bundle_key_documents (digest, kind, envelope, installed_at) "
                    "VALUES (?, ?, ?, ?)",
                    (digest, kind, bytes(envelope), int(self._clock())),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._abort()
                raise
        except sqlite3.Error as exc:
            raise BundleStoreError(f"cannot record {kind}: {exc}") from exc


# -- staging of chunked parts ----------------------------------------------------------------

_CHUNK_FILE = re.compile(r"(\d{8})\.([0-9a-f]{64})\.chunk")


@dataclass
class _PartState:
    count: int | None = None
    received: dict[int, tuple[int, str]] = field(default_factory=dict)
    """index -> (size, sha256_of_chunk) of the chunks on disk."""


class ChunkAssembler:
    """Resumable reception of the parts of one bundle.

    Give it a manifest that has passed :meth:`BundleStore.check` (signature, store, version,
    declared sizes), so an attacker cannot make the cart stage anything unsigned. Layout
    under ``staging_dir``::

        <store>/<type>/v<version>-<manifest digest[:16]>/
            chunks/<part>/count                        declared chunk count
            chunks/<part>/<index:08d>.<sha256>.chunk   one received chunk
            parts/<part>                               assembled, hash-checked part

    The manifest digest in the directory name keeps two different manifests claiming the
    same version from sharing chunks.
    """

    def __init__(
        self, staging_dir: str | Path, manifest: Manifest, *, caps: Caps = DEFAULT_CAPS
    ) -> None:
        self.manifest = manifest
        self.caps = caps
        self.staging_dir = Path(staging_dir)
        self.root = (
            self.staging_dir
            / manifest.store
            / manifest.type
            / f"v{manifest.version}-{manifest.digest()[:16]}"
        )
        self._states: dict[str, _PartState] = {}
        self._complete: set[str] = set()
        self._load()

    # -- public --------------------------------------------------------------------------

    def add(self, chunk: Chunk) -> bool:
        """Stage one chunk; True when its part is now complete and verified.

        Raises :class:`BundleRejected`: ``mixed_parts`` (another bundle's version or a part
        not in the manifest), ``malformed`` (index/count impossible for the part),
        ``chunk_conflict`` (disagrees with a staged chunk), ``oversize`` (would exceed the
        declared size; checked before hashing, nothing written), ``chunk_corrupt``,
        ``tampered_part`` (complete part fails the signed hash; its chunks are dropped so
        it can be fetched again).
        """
        spec = self._spec_for(chunk)
        if spec.name in self._complete:
            return True
        state = self._states.setdefault(spec.name, _PartState())
        if state.count is not None and chunk.count != state.count:
            reject("chunk_conflict", f"{spec.name}: count {chunk.count}, staged {state.count}")
        received = state.received
        held = received.get(chunk.index)
        if held is not None:
            if held[1] == chunk.sha256_of_chunk:
                return False  # a resent chunk: already on disk
            reject("chunk_conflict", f"{spec.name}: chunk {chunk.index} differs from staged")
        staged = sum(size for size, _ in received.values())
        if staged + len(chunk.data) > spec.size:
            reject(
                "oversize",
                f"{spec.name}: {staged + len(chunk.data)} bytes would exceed declared {spec.size}",
            )
        if verify.hash_part(chunk.data) != chunk.sha256_of_chunk:
            reject("chunk_corrupt", f"{spec.name}: chunk {chunk.index} fails its sha256")
        part_dir = self.root / "chunks" / spec.name
        if state.count is None:
            _write_atomic(part_dir / "count", str(chunk.count).encode("ascii"))
            state.count = chunk.count
        name = f"{chunk.index:08d}.{chunk.sha256_of_chunk}.chunk"
        _write_atomic(part_dir / name, chunk.data)
        received[chunk.index] = (len(chunk.data), chunk.sha256_of_chunk)
        if len(received) == state.count:
            self._assemble(spec, state)
            return True
        return False

    def missing(self) -> dict[str, list[int] | None]:
        """Per incomplete part, the chunk indexes still to fetch (``None``: nothing received
        yet, so the chunk count is unknown: fetch the whole part)."""
        out: dict[str, list[int] | None] = {}
        for spec in self.manifest.parts:
            if spec.name in self._complete:
                continue
            state = self._states.get(spec.name)
            if state is None or state.count is None:
                out[spec.name] = None
            else:
                out[spec.name] = [i for i in range(state.count) if i not in state.received]
        return out

    @property
    def complete(self) -> bool:
        return len(self._complete) == len(self.manifest.parts)

    def parts(self) -> dict[str, Path]:
        """The assembled parts keyed by :meth:`Manifest.part_ref`, for
        :meth:`BundleStore.offer` (which verifies them again from disk)."""
        if not self.complete:
            missing = sorted(set(p.name for p in self.manifest.parts) - self._complete)
            reject("missing_part", f"parts still incomplete: {missing}")
        return {
            self.manifest.part_ref(spec.name): self.root / "parts" / spec.name
            for spec in self.manifest.parts
        }

    def discard(self) -> None:
        """Delete this bundle's staging directory (after the offer, whatever its outcome)."""
        shutil.rmtree(self.root, ignore_errors=True)
        parent = self.root.parent
        while parent != self.staging_dir and parent.is_relative_to(self.staging_dir):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        self._states.clear()
        self._complete.clear()

    # -- internals -----------------------------------------------------------------------

    def _spec_for(self, chunk: Chunk) -> PartSpec:
        if not isinstance(chunk, Chunk):
            reject("malformed", "not a Chunk")
        if chunk.bundle_version != self.manifest.version:
            reject(
                "mixed_parts",
                f"chunk of v{chunk.bundle_version} offered to v{self.manifest.version}",
            )
        spec = self.manifest.part(chunk.part)
        if spec is None:
            reject("mixed_parts", f"part {chunk.part!r} is not in this manifest")
        limit = min(self.caps.max_chunks, max(1, spec.size))
        if not 1 <= chunk.count <= limit:
            reject("malformed", f"{spec.name}: count {chunk.count} not in 1..{limit}")
        if not 0 <= chunk.index < chunk.count:
            reject("malformed", f"{spec.name}: index {chunk.index} not below {chunk.count}")
        if not chunk.data and spec.size > 0:
            reject("malformed", f"{spec.name}: empty chunk")
        return spec

    def _assemble(self, spec: PartSpec, state: _PartState) -> None:
        part_dir = self.root / "chunks" / spec.name
        received = state.received
        if sum(size for size, _ in received.values()) != spec.size:
            self._drop_part(spec.name)
            reject("tampered_part", f"{spec.name}: chunks do not add up to {spec.size} bytes")
        target = self.root / "parts" / spec.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("wb") as out:
            for index in range(len(received)):
                _size, sha = received[index]
                with (part_dir / f"{index:08d}.{sha}.chunk").open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if tmp.stat().st_size != spec.size or verify.hash_file(tmp) != spec.sha256:
            tmp.unlink(missing_ok=True)
            self._drop_part(spec.name)
            reject("tampered_part", f"{spec.name}: assembled part fails the signed sha256")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        shutil.rmtree(part_dir, ignore_errors=True)
        self._complete.add(spec.name)
        self._states.pop(spec.name, None)

    def _drop_part(self, name: str) -> None:
        shutil.rmtree(self.root / "chunks" / name, ignore_errors=True)
        self._states.pop(name, None)

    def _load(self) -> None:
        """Rebuild the reception state from disk after a restart."""
        for spec in self.manifest.parts:
            if (self.root / "parts" / spec.name).is_file():
                self._complete.add(spec.name)
                continue
            part_dir = self.root / "chunks" / spec.name
            if not part_dir.is_dir():
                continue
            try:
                count = int((part_dir / "count").read_text("ascii"))
            except (OSError, ValueError):
                self._drop_part(spec.name)
                continue
            state = _PartState(count=count)
            for path in part_dir.iterdir():
                match = _CHUNK_FILE.fullmatch(path.name)
                if match is None:
                    if path.name != "count":
                        path.unlink(missing_ok=True)  # an interrupted write
                    continue
                index = int(match.group(1))
                if index >= count:
                    path.unlink(missing_ok=True)
                    continue
                state.received[index] = (path.stat().st_size, match.group(2))
            self._states[spec.name] = state
            if len(state.received) == count:
                # Crashed between the last chunk and assembly: finish it now.
                with contextlib.suppress(BundleRejected):
                    self._assemble(spec, state)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync, rename, fsync the directory: after a crash the file
    is either absent or complete, never a torn chunk that looks received."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
