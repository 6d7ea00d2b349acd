"""Installing a verified ``catalogue`` bundle into the cart's catalogue, and undoing it.

The bundle store (:class:`~cartos.sync.bundles.store.BundleStore`) lives in the
catalogue file itself, so its bookkeeping and the catalogue change it carries
are one SQLite transaction: after a crash the cart holds either the old bundle
and the old prototypes or the new ones, never a mix. :class:`CatalogueUpdater`
provides the store's three hooks:

``apply``
    decodes every part (:mod:`cartos.sync.catalogue_parts`), writes SKU rows,
    replaces the fleet exemplars of the SKUs the bundle names and recomputes
    their prototypes exactly as the hub did, installs thresholds, and swaps the
    model only after it loaded, warmed up and passed an embedding sanity check.
    Before writing it records an *undo* document (what every touched row was),
    because a cumulative delta cannot be undone by re-applying the previous one.
``restore``
    plays the undo document of the bundle being rolled back.
``health_check``
    after commit: the recogniser must build from the new catalogue and still
    recognise the catalogue's own reference exemplars; otherwise the store rolls
    the bundle back by itself.

A cart's own corrections stay (kind ``correction``) until the hub's bundle
includes them (same ``source``), so a correction is never counted twice and a
cart never forgets what its shopper just taught it while the hub catches up.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import numpy as np

from cartos.catalog.records import DISCONTINUED, SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference.catalogue_model import signature_model_sha
from cartos.inference.corrections import CORRECTION_KIND
from cartos.inference.enrolment import _refresh_prototypes
from cartos.inference.model_card import ModelCard
from cartos.inference.recognizer import CALIBRATION_ARTIFACT, Recognizer
from cartos.sync.bundles.manifest import Manifest
from cartos.sync.catalogue_parts import (
    BASELINE_META,
    FLEET_KIND,
    decode_catalogue_rows,
    decode_prototype_deltas,
)
from cartos.sync.errors import PartFormatError, UpdateError

log = logging.getLogger(__name__)

UNDO_META_PREFIX: Final = "bundle_undo:"
MODEL_META: Final = "bundle_model"
"""Catalogue meta: ``{"sha256", "path"}`` of the model a bundle installed (absent: shipped)."""

HEALTH_SAMPLE: Final = 32
HEALTH_MIN_SELF_TOP1: Final = 0.9
"""Share of sampled SKUs whose reference must still be recognised as their own SKU."""

ModelCheck = Callable[[Path, ModelCard, int], None]
"""``check(model_path, card, catalogue_dim)``: raise to refuse a model (see
:func:`check_model`)."""


def _kinds(parts: Mapping[str, bytes], manifest: Manifest) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for spec in manifest.parts:
        if spec.kind in out:
            raise PartFormatError(f"two {spec.kind} parts in one bundle")
        out[spec.kind] = parts[spec.name]
    return out


def _vector_b64(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()


def _vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _groups_of(record: SkuRecord | None, into: dict[str, set[str]]) -> None:
    """Add the family and brand ``record`` belongs to (a SKU about to move out of them)."""
    if record is not None:
        for level in ("family", "brand"):
            if (group := getattr(record, level)) is not None:
                into[level].add(group)


def check_model(model_path: Path, card: ModelCard, catalogue_dim: int) -> None:
    """Load a model, warm it up, and check its embeddings are usable before it is swapped in.

    Why each check: a model that loads may still emit NaNs (a broken quantisation), a
    constant (dead weights), another dimension (a different backbone: every stored
    prototype would be meaningless) or non-deterministic output.
    """
    from cartos.inference.embedder import Embedder  # the backend loads only here

    try:
        embedder = Embedder(model_path, card=card, views=("orig",), verify=True)
    except Exception as exc:
        raise UpdateError(f"the new model does not load: {exc}") from exc
    try:
        if embedder.dim != catalogue_dim:
            raise UpdateError(
                f"the new model embeds in {embedder.dim} dimensions, the catalogue in "
                f"{catalogue_dim}: it needs a rebuilt catalogue")
        rng = np.random.default_rng(0)
        size = int(card.input_size)
        probes = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                  np.full((size, size, 3), (30, 140, 220), dtype=np.uint8)]
        for _ in range(3):  # warm-up: first runs allocate and pick kernels
            first = embedder.embed_arrays(probes)
        again = embedder.embed_arrays(probes)
        if not np.all(np.isfinite(first)):
            raise UpdateError("the new model's embeddings are not finite")
        if float(np.abs(first - again).max()) > 1e-4:
            raise UpdateError("the new model is not deterministic")
        if float(first[0] @ first[1]) > 0.9999:
            raise UpdateError("the new model gives the same embedding for different images")
    finally:
        embedder.close()


class CatalogueUpdater:
    """The apply/restore/health hooks for the bundle store kept in ``catalogue_path``."""

    def __init__(self, catalogue_path: Path, models_dir: Path | None = None,
                 model_check: ModelCheck = check_model, cart: str | None = None) -> None:
        """``cart``: this cart's id, to recognise its own corrections in the hub's bundle
        (the hub names them ``correction:<cart>:<prompt>``, the cart ``correction:<prompt>``)."""
        self.cart = cart
        self.catalogue_path = catalogue_path
        self.recognizer: Recognizer | None = None
        """The recogniser the last passing health check built from the new catalogue: the
        runtime adopts it instead of building another."""
        self.models_dir = models_dir or catalogue_path.with_name(catalogue_path.stem + "-models")
        self.model_check = model_check

    # -- apply ---------------------------------------------------------------------------

    def apply(self, manifest: Manifest, parts: Mapping[str, bytes],
              conn: sqlite3.Connection) -> None:
        by_kind = _kinds(parts, manifest)
        rows = decode_catalogue_rows(by_kind["catalogue_rows"]) \
            if "catalogue_rows" in by_kind else []
        delta = decode_prototype_deltas(by_kind["prototype_deltas"]) \
            if "prototype_deltas" in by_kind else None
        if "thresholds" in by_kind:
            try:  # refuse non-JSON before touching anything
                json.loads(by_kind["thresholds"].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise PartFormatError(f"thresholds: not UTF-8 JSON ({exc})") from exc
        store = CatalogStore.within(conn, self.catalogue_path)
        model = self._stage_model(by_kind, store) if "model" in by_kind else None
        undo: dict[str, Any] = {"skus": {}, "exemplars": [], "fleet_skus": [],
                                "calibration": None, "model": store.meta_get(MODEL_META),
                                "thresholds": "thresholds" in by_kind,
                                "catalogue_version": store.version}
        with store.change("bundle", f"{manifest.type} bundle v{manifest.version}"):
            touched: set[str] = set()
            left: dict[str, set[str]] = {"family": set(), "brand": set()}
            for rec in rows:
                before = store.get_sku(rec.sku)
                undo["skus"][rec.sku] = None if before is None else asdict(before)
                if store.upsert_sku(rec):
                    touched.add(rec.sku)
                    _groups_of(before, left)
            if delta is not None:
                touched |= self._install_fleet(store, delta, undo)
            if "thresholds" in by_kind:
                old = store.get_artifact(CALIBRATION_ARTIFACT)
                undo["calibration"] = None if old is None else old.decode()
                store.put_artifact(CALIBRATION_ARTIFACT, by_kind["thresholds"])
            if model is not None:
                store.meta_set(MODEL_META, json.dumps(model, sort_keys=True))
            _refresh_prototypes(store, touched, left)
            self._prune_undo(store, manifest, conn)
            store.meta_set(UNDO_META_PREFIX + f"{manifest.type}:{manifest.version}",
                           json.dumps(undo, sort_keys=True))

    @staticmethod
    def _prune_undo(store: CatalogStore, manifest: Manifest, conn: sqlite3.Connection) -> None:
        """Keep undo records only for the bundle that becomes ``previous``: the store can roll
        back no further, and each record holds a copy of the fleet exemplars it replaced."""
        keep = {UNDO_META_PREFIX + f"{manifest.type}:{manifest.version}"}
        row = conn.execute(
            "SELECT version FROM bundle_slots WHERE store = ? AND type = ? AND slot = 'current'",
            (manifest.store, manifest.type)).fetchone()
        if row is not None:
            keep.add(UNDO_META_PREFIX + f"{manifest.type}:{int(row[0])}")
        prefix = UNDO_META_PREFIX + f"{manifest.type}:"
        stale = [str(k) for (k,) in conn.execute(
            "SELECT key FROM meta WHERE key LIKE ? AND value != ''", (prefix + "%",))
            if str(k) not in keep]
        for key in stale:
            store.meta_set(key, "")

    def _install_fleet(self, store: CatalogStore,
                       delta: tuple[str, int, dict[str, list[tuple[str, np.ndarray]]]],
                       undo: dict[str, Any]) -> set[str]:
        baseline, dim, table = delta
        mine = store.meta_get(BASELINE_META)
        if mine != baseline:
            raise UpdateError(f"the bundle is built on catalogue baseline {baseline!r}, this "
                              f"cart's catalogue on {mine!r}: it needs a full catalogue")
        if store.embedding_dim not in (None, dim):
            raise UpdateError(f"fleet exemplars have {dim} dimensions, the catalogue "
                              f"{store.embedding_dim}")
        affected = set(store.exemplar_counts(kind=FLEET_KIND)) | set(table)
        undo["fleet_skus"] = sorted(affected)
        incoming = {source for rows in table.values() for source, _ in rows}
        if self.cart is not None:
            own = f"correction:{self.cart}:"
            incoming |= {"correction:" + s[len(own):] for s in incoming if s.startswith(own)}
        doomed: list[int] = []
        old = store.exemplars(skus=sorted(affected))
        for i, (sku, source, kind) in enumerate(zip(old.skus, old.sources, old.kinds,
                                                    strict=True)):
            if kind == FLEET_KIND or (kind == CORRECTION_KIND and source in incoming):
                doomed.append(int(old.ids[i]))
                undo["exemplars"].append([sku, source, kind, _vector_b64(old.vectors[i])])
        store.remove_exemplars(doomed)
        for sku, rows in table.items():
            if store.get_sku(sku) is None:
                raise UpdateError(f"fleet exemplars for {sku!r}, which this catalogue lacks")
            if rows:
                store.add_exemplars(sku, np.stack([v for _, v in rows]),
                                    [s for s, _ in rows], kind=FLEET_KIND)
        return affected

    def _stage_model(self, by_kind: Mapping[str, bytes], store: CatalogStore) -> dict[str, str]:
        """Write the model beside the catalogue and check it; returns what to record."""
        if "model_card" not in by_kind:
            raise PartFormatError("a model part needs its model_card part")
        try:
            card = ModelCard.from_json(by_kind["model_card"].decode())
        except Exception as exc:
            raise PartFormatError(f"model_card: {exc}") from exc
        built_with = signature_model_sha(store)
        if built_with is not None and built_with != card.sha256:
            # The catalogue's vectors are points in its own model's space: a new backbone
            # comes with the catalogue re-embedded for it, or not at all.
            raise UpdateError(
                f"the release's model {card.sha256[:12]} is not the one this catalogue was "
                f"embedded with ({built_with[:12]}); a new backbone needs the catalogue "
                "rebuilt for it in the same release")
        data = by_kind["model"]
        self.models_dir.mkdir(parents=True, exist_ok=True)
        path = self.models_dir / f"{card.sha256}.onnx"
        # Checked under a staging name: a refused model never replaces a file in use
        # (its card may name the running model's hash) and never stays on disk.
        staged = self.models_dir / f"staged-{card.sha256}.onnx"
        staged_card = staged.with_suffix(".card.json")
        try:
            with open(staged, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            staged_card.write_text(card.to_json())
            self.model_check(staged, card, store.embedding_dim or 0)
        except BaseException:
            staged.unlink(missing_ok=True)
            staged_card.unlink(missing_ok=True)
            raise
        os.replace(staged_card, path.with_suffix(".card.json"))
        os.replace(staged, path)
        return {"sha256": card.sha256, "path": str(path)}

    # -- restore -------------------------------------------------------------------------

    def restore(self, current: Manifest, _previous: Manifest | None,
                _previous_parts: Mapping[str, bytes], conn: sqlite3.Connection) -> None:
        store = CatalogStore.within(conn, self.catalogue_path)
        key = UNDO_META_PREFIX + f"{current.type}:{current.version}"
        text = store.meta_get(key)
        if text is None:
            raise UpdateError(f"no undo record for {current.type} v{current.version}")
        undo = json.loads(text)
        with store.change("rollback", f"roll back {current.type} bundle v{current.version}"):
            touched = set(undo["fleet_skus"])
            left: dict[str, set[str]] = {"family": set(), "brand": set()}
            for sku, before in undo["skus"].items():
                _groups_of(store.get_sku(sku), left)
                if before is None:
                    rec = store.get_sku(sku)
                    if rec is not None:
                        store.upsert_sku(SkuRecord(**{**asdict(rec), "status": DISCONTINUED}))
                else:
                    store.upsert_sku(SkuRecord(**before))
                touched.add(sku)
            if touched:
                fleet = store.exemplars(skus=sorted(touched), kind=FLEET_KIND)
                store.remove_exemplars([int(i) for i in fleet.ids])
            for sku, source, kind, vec in undo["exemplars"]:
                store.add_exemplars(sku, _vector(vec)[None, :], [source], kind=kind)
            if undo["calibration"] is not None:
                store.put_artifact(CALIBRATION_ARTIFACT, undo["calibration"].encode())
            elif undo.get("thresholds"):  # there was none: the installed one goes
                store.drop_artifact_after(CALIBRATION_ARTIFACT, int(undo["catalogue_version"]))
            if undo["model"] is not None:
                store.meta_set(MODEL_META, undo["model"])
            elif store.meta_get(MODEL_META) is not None:
                store.meta_set(MODEL_META, "")
            _refresh_prototypes(store, touched, left)
            store.meta_set(key, "")

    # -- health --------------------------------------------------------------------------

    def health_check(self, _manifest: Manifest) -> bool:
        """The recogniser builds and still knows the catalogue's own references.

        One reference of each of up to ``HEALTH_SAMPLE`` random active SKUs is recognised;
        only those SKUs' references are read, so the check costs the same at 100 SKUs as at
        10,000."""
        with CatalogStore(self.catalogue_path) as store:
            recognizer = Recognizer.from_store(store)
            active = {r.sku for r in store.list_skus("active")}
            with_refs = sorted(s for s in store.exemplar_counts(kind="reference") if s in active)
            if not with_refs:
                self.recognizer = recognizer
                return True
            rng = np.random.default_rng(0)
            chosen = rng.choice(len(with_refs), size=min(HEALTH_SAMPLE, len(with_refs)),
                                replace=False)
            refs = store.exemplars(skus=[with_refs[i] for i in chosen], kind="reference")
            first = {sku: i for i, sku in reversed(list(enumerate(refs.skus)))}
            skus = sorted(first)
            answers = recognizer.recognize_vectors(refs.vectors[[first[s] for s in skus]])
            hits = sum(bool(a.topk) and a.topk[0].sku == sku
                       for a, sku in zip(answers, skus, strict=True))
            ok = bool(hits >= HEALTH_MIN_SELF_TOP1 * len(skus))
            if not ok:
                log.warning("catalogue health: %d of %d references recognised", hits, len(skus))
            self.recognizer = recognizer if ok else None
            return ok

    def active_model(self) -> Path | None:
        """The model a bundle installed, or None for the shipped one."""
        with CatalogStore(self.catalogue_path) as store:
            return installed_model(store)


def installed_model(store: CatalogStore) -> Path | None:
    """The model file a release installed in this catalogue (meta ``bundle_model``), or
    None: the profile's model applies."""
    text = store.meta_get(MODEL_META)
    return Path(json.loads(text)["path"]) if text else None
