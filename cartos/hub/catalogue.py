"""The store's master catalogue at the hub, and what it teaches the fleet.

The carts were provisioned with a copy of this catalogue at a *baseline*
(catalogue meta ``fleet_baseline``, set by :func:`provision`). Since then the
hub learns from every cart: a shopper's answer arrives as a correction with
the crop's embedding and is applied here exactly as the cart applied it
(:func:`cartos.inference.corrections.apply_correction`, same bounded memory),
and an attendant can label a review crop or register a new SKU
(:mod:`cartos.hub.review`). :meth:`HubCatalogue.fleet_parts` then renders
everything that differs from the baseline as one cumulative bundle, so the
newest release alone brings any cart, however long it was away, to the hub's
state.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.errors import CartosError
from cartos.hub.errors import HubError
from cartos.hub.message_store import MessageReader
from cartos.inference.corrections import CORRECTION_KIND, apply_correction
from cartos.inference.enrolment import _refresh_prototypes
from cartos.inference.recognizer import CALIBRATION_ARTIFACT
from cartos.sync.catalogue_parts import (
    BASELINE_META,
    encode_catalogue_rows,
    encode_prototype_deltas,
)

log = logging.getLogger(__name__)

FLEET_ROWS_META: Final = "fleet_rows"
"""SKUs registered or changed at the hub since the baseline: their rows and *all* their
exemplars travel in every bundle (the carts' baseline has neither)."""

MODEL_META: Final = "fleet_model"
"""Path of the backbone every cart should run (set by :meth:`HubCatalogue.set_model`); its
model file and card travel in every release, and carts swap only after checking it."""

BASELINE_CALIBRATION_META: Final = "fleet_baseline_calibration"
"""Catalogue version of the calibration the carts were provisioned with: a calibration
refitted at the hub since (``cartos calibrate`` on the master catalogue) ships as the
``thresholds`` part of every release."""


LEARNED_META_PREFIX: Final = "learned_corrections:"



def _exemplar_vector(exemplar: object) -> npt.NDArray[np.float32] | None:
    """The float32 embedding a correction carries (``{"embedding_f16": base64}``), or None."""
    if not isinstance(exemplar, dict) or not isinstance(exemplar.get("embedding_f16"), str):
        return None
    try:
        raw = base64.b64decode(exemplar["embedding_f16"], validate=True)
    except ValueError:
        return None
    if not raw or len(raw) % 2:
        return None
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    return vector if bool(np.all(np.isfinite(vector))) else None


def provision(catalogue: Path, baseline: str | None = None) -> str:
    """Mark ``catalogue`` as the baseline carts are provisioned from; returns its id.

    Copy the file to the carts *after* this: a bundle applies only on the same baseline.
    """
    baseline = baseline or f"b-{secrets.token_hex(8)}"
    with CatalogStore(catalogue) as store, store.change("provision", f"baseline {baseline}"):
        store.meta_set(BASELINE_META, baseline)
        store.meta_set(BASELINE_CALIBRATION_META,
                       str(store.artifact_version(CALIBRATION_ARTIFACT) or 0))
    return baseline


def correction_source_id(cart: str, corrects: str) -> str:
    """The fleet-wide id of a cart's correction (a cart's prompt ids are only unique on it)."""
    return f"{cart}:{corrects}"


class HubCatalogue:
    """One master catalogue file; each method is one catalogue transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with CatalogStore(path) as store:
            baseline = store.meta_get(BASELINE_META)
        if not baseline:
            raise HubError(f"{path} has no fleet baseline: run provision() before the carts "
                           "are given their copy")
        self.baseline = baseline

    def learn(self, sku: str, embedding: npt.NDArray[np.float32], cart: str,
              corrects: str) -> bool:
        """Apply one cart's correction; False if it was already applied or is refused."""
        with CatalogStore(self.path) as store:
            return self._learn_in(store, sku, embedding, cart, corrects)

    @staticmethod
    def _learn_in(store: CatalogStore, sku: str, embedding: npt.NDArray[np.float32],
                  cart: str, corrects: str) -> bool:
        try:
            result = apply_correction(store, None, sku, embedding,
                                      correction_source_id(cart, corrects))
        except CartosError as exc:  # an unknown SKU or a bad vector is logged, not fatal
            log.warning("correction %s from %s for %s not learned: %s", corrects, cart, sku, exc)
            return False
        return result.applied

    def register(self, record: SkuRecord, vectors: npt.NDArray[np.float32],
                 sources: Sequence[str]) -> None:
        """Add or extend a SKU from reviewed crops' embeddings, for the whole fleet."""
        summary = f"register {record.sku} from {len(sources)} crops"
        with CatalogStore(self.path) as store, store.change("register", summary):
            before = store.get_sku(record.sku)
            left = {level: {g} for level in ("family", "brand")
                    if before is not None and (g := getattr(before, level)) is not None}
            store.upsert_sku(record)
            store.add_exemplars(record.sku, vectors, list(sources), kind="reviewed")
            rows = set(json.loads(store.meta_get(FLEET_ROWS_META) or "[]"))
            rows.add(record.sku)
            store.meta_set(FLEET_ROWS_META, json.dumps(sorted(rows)))
            _refresh_prototypes(store, [record.sku], left)

    def set_model(self, model: Path | None) -> None:
        """Ship ``model`` (an ONNX file with its ``.card.json``) to the fleet; None: stop.

        The backbone refresh (a new model and the catalogue rebuilt with it) sets this;
        the file and card are read when each release is cut."""
        if model is not None:
            card = model.with_suffix(".card.json")
            if not model.is_file() or not card.is_file():
                raise HubError(f"{model}: a model needs its file and its card ({card.name})")
        with CatalogStore(self.path) as store, store.change("model", f"fleet model {model}"):
            store.meta_set(MODEL_META, "" if model is None else str(model))

    def fleet_parts(self) -> dict[str, tuple[str, bytes]]:
        """Every difference from the baseline as bundle parts ``{name: (kind, bytes)}``."""
        with CatalogStore(self.path) as store:
            row_skus = json.loads(store.meta_get(FLEET_ROWS_META) or "[]")
            corrections = store.exemplars(kind=CORRECTION_KIND)
            table: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = {}
            for sku, source, vector in zip(corrections.skus, corrections.sources,
                                           corrections.vectors, strict=True):
                table.setdefault(sku, []).append((source, vector))
            if row_skus:
                new = store.exemplars(skus=row_skus)
                for sku, source, kind, vector in zip(new.skus, new.sources, new.kinds,
                                                     new.vectors, strict=True):
                    if kind != CORRECTION_KIND:
                        table.setdefault(sku, []).append((source, vector))
            records = [r for s in row_skus if (r := store.get_sku(s)) is not None]
            dim = store.embedding_dim or 0
            parts: dict[str, tuple[str, bytes]] = {
                "fleet.json": ("prototype_deltas",
                               encode_prototype_deltas(self.baseline, dim, table)),
            }
            if records:
                parts["rows.json"] = ("catalogue_rows", encode_catalogue_rows(records))
            model = store.meta_get(MODEL_META)
            if model:
                path = Path(model)
                parts["model.onnx"] = ("model", path.read_bytes())
                parts["model.card.json"] = ("model_card",
                                            path.with_suffix(".card.json").read_bytes())
            shipped = int(store.meta_get(BASELINE_CALIBRATION_META) or 0)
            if (store.artifact_version(CALIBRATION_ARTIFACT) or 0) > shipped:
                calibration = store.get_artifact(CALIBRATION_ARTIFACT)
                if calibration is not None:
                    parts["thresholds.json"] = ("thresholds", calibration)
        return parts

    def consume(self, messages: MessageReader, touched: set[tuple[str, str]]) -> bool:
        """The hub consumer (:meth:`cartos.hub.service.Hub.add_consumer`): learn the
        corrections of every touched cart; True when the catalogue changed."""
        carts = sorted({c for c, stream in touched if stream in ("corrections", "*")})
        return sum(self.catch_up(messages, cart) for cart in carts) > 0

    def catch_up(self, messages: MessageReader, cart: str) -> int:
        """Learn every committed correction of ``cart`` not learned yet; returns how many
        changed the catalogue.

        The cursor (the cart's corrections seq learned up to) is catalogue meta, advanced
        after each correction; :func:`apply_correction` is idempotent by id, so a hub
        killed between the two learns nothing twice.
        """
        key = LEARNED_META_PREFIX + cart
        learned = 0
        with CatalogStore(self.path) as store:
            after = int(store.meta_get(key) or 0)
            last = after
            for msg in messages.messages("corrections", cart, after):
                last = msg.seq
                command = msg.body.get("command")
                if not isinstance(command, dict) or msg.body.get("type") != "ItemAdded":
                    continue
                vector = _exemplar_vector(command.get("exemplar"))
                sku, corrects = command.get("sku"), command.get("corrects")
                if vector is not None and isinstance(sku, str) and isinstance(corrects, str):
                    learned += self._learn_in(store, sku, vector, cart, corrects)
            if last != after:
                with store.change("learn", f"learned {cart} corrections to {last}"):
                    store.meta_set(key, str(last))
        return learned

    def version(self) -> int:
        with CatalogStore(self.path) as store:
            return store.version
