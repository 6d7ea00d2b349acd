"""Expansion planning: what adding these SKUs would do, before they go live.

Adding a SKU never retrains anything, but it can still hurt: a new flavour that looks
like an existing one takes answers from it. The planner builds the catalogue *as it would
be* (the live snapshot plus the new SKUs' embedded reference images, in memory only; the
live file is read, never written) and compares it with the catalogue as it is:

* **collision**: each new SKU's nearest existing prototype, and where that similarity
  falls in the distribution of existing SKUs' nearest-neighbour similarities. At or above
  ``collision_percentile`` (default the 95th) the new SKU is closer to an existing one
  than almost any two SKUs already are: expect confusions, route them by barcode or
  weight, or merge them in the taxonomy.
* **impact on neighbours**: for the existing SKUs nearest to the new ones, the share of
  their own reference exemplars still recognised as themselves before and after, each
  left out of the catalogue in turn. A drop is the expected per-class accuracy loss.
* **needs more references**: fewer than ``min_references`` images, references spread
  wider than ``spread_percentile`` of existing SKUs, or references of the new SKU that the
  what-if catalogue recognises as something else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cartos.catalog.records import SkuRecord
from cartos.inference.errors import InferenceError
from cartos.inference.index import CatalogueSnapshot, RecognitionIndex


@dataclass(frozen=True)
class PlanSettings:
    collision_percentile: float = 95.0
    spread_percentile: float = 90.0
    min_references: int = 3
    neighbours: int = 3
    """Existing SKUs per new SKU whose accuracy impact is estimated."""


@dataclass
class NewSkuPlan:
    sku: str
    references: int
    nearest: str
    similarity: float
    similarity_percentile: float
    collision: bool
    self_recognised: float
    spread: float
    needs_more_references: list[str] = field(default_factory=list)


@dataclass
class NeighbourImpact:
    sku: str
    near: list[str]
    self_recognised_before: float
    self_recognised_after: float

    @property
    def drop(self) -> float:
        return self.self_recognised_before - self.self_recognised_after


@dataclass
class ExpansionPlan:
    new: list[NewSkuPlan]
    neighbours: list[NeighbourImpact]
    existing_nn_similarity: dict[str, float]
    settings: PlanSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "new": [asdict(n) for n in self.new],
            "neighbours": [asdict(n) | {"drop": round(n.drop, 4)} for n in self.neighbours],
            "existing_nn_similarity": self.existing_nn_similarity,
            "settings": asdict(self.settings),
            "collisions": sum(n.collision for n in self.new),
            "need_more_references": sum(bool(n.needs_more_references) for n in self.new),
        }


def _prototypes(index: RecognitionIndex) -> np.ndarray:
    return index._prototypes


def _loo_self_recognised(index: RecognitionIndex, sku: str) -> float:
    """Share of ``sku``'s own exemplars recognised as ``sku`` when each is left out of the
    catalogue in turn: an exemplar scored against a catalogue that contains it would
    always find itself, whatever moved in next to it."""
    col = index.skus.index(sku)
    starts = index._starts
    z_all = index._exemplars
    begin = int(starts[col])
    end = int(starts[col + 1]) if col + 1 < len(starts) else len(z_all)
    if end - begin < 2:
        return 0.0  # one reference: nothing to test it against
    protos = _prototypes(index)
    own_sum = z_all[begin:end].astype(np.float64).sum(axis=0)
    w = index.nn_weight
    hits = 0
    for i in range(begin, end):
        q = z_all[i]
        proto = q @ protos.T
        rest = own_sum - q
        proto[col] = float(q @ (rest / np.linalg.norm(rest)))
        sims = z_all @ q
        sims[i] = -np.inf
        nearest = np.maximum.reduceat(sims, starts)
        scores = (1 - w) * proto + w * nearest
        hits += int(np.argmax(scores) == col)
    return hits / (end - begin)


def plan_expansion(snapshot: CatalogueSnapshot, new_records: Sequence[SkuRecord],
                   new_vectors: Mapping[str, np.ndarray],
                   settings: PlanSettings | None = None) -> ExpansionPlan:
    """Plan adding ``new_records`` with their reference embeddings (raw, per SKU)."""
    settings = settings or PlanSettings()
    if not new_records:
        raise InferenceError("nothing to plan: the manifest names no new SKU")
    clash = [r.sku for r in new_records if r.sku in {x.sku for x in snapshot.records}]
    if clash:
        raise InferenceError(f"already in the catalogue: {', '.join(clash[:5])}; plan-add "
                             "is for SKUs that are not live yet")
    now = RecognitionIndex.from_snapshot(snapshot)
    added = [np.asarray(new_vectors[r.sku], dtype=np.float32) for r in new_records]
    after = RecognitionIndex(
        [*snapshot.records, *new_records],
        np.vstack([snapshot.exemplar_vectors, *added]),
        [*snapshot.exemplar_skus, *(r.sku for r, v in zip(new_records, added, strict=True)
                                    for _ in range(len(v)))],
        snapshot.projection, nn_weight=snapshot.nn_weight, version=snapshot.version)

    # Existing SKUs' nearest-neighbour similarity: the scale a new SKU is judged on.
    protos = _prototypes(now)
    sims = protos @ protos.T
    np.fill_diagonal(sims, -np.inf)
    nn = sims.max(axis=1) if len(protos) > 1 else np.array([0.0])
    spreads = _spreads(now, snapshot)

    by_sku = {s: i for i, s in enumerate(now.skus)}
    plans: list[NewSkuPlan] = []
    near_sets: dict[str, set[str]] = {}
    for record, vectors in zip(new_records, added, strict=True):
        z = after.project(vectors)
        proto = z.sum(axis=0)
        proto /= np.linalg.norm(proto)
        to_existing = protos @ proto
        order = np.argsort(-to_existing)
        nearest = now.skus[int(order[0])]
        similarity = float(to_existing[order[0]])
        percentile = float(np.mean(nn <= similarity) * 100.0)
        spread = float(np.mean(1.0 - z @ proto))
        plan = NewSkuPlan(
            sku=record.sku, references=len(vectors), nearest=nearest,
            similarity=round(similarity, 4), similarity_percentile=round(percentile, 1),
            collision=percentile >= settings.collision_percentile,
            self_recognised=round(_loo_self_recognised(after, record.sku), 4),
            spread=round(spread, 4))
        if len(vectors) < settings.min_references:
            plan.needs_more_references.append(
                f"{len(vectors)} reference image(s), fewer than {settings.min_references}")
        if spreads.size and spread > np.percentile(spreads, settings.spread_percentile):
            plan.needs_more_references.append(
                "references spread wider than "
                f"{settings.spread_percentile:.0f} % of existing SKUs")
        if len(vectors) >= 2 and plan.self_recognised < 1.0:
            plan.needs_more_references.append(
                f"only {plan.self_recognised:.0%} of its own references recognised as itself")
        plans.append(plan)
        for j in order[: settings.neighbours]:
            near_sets.setdefault(now.skus[int(j)], set()).add(record.sku)

    impacts = [NeighbourImpact(sku, sorted(near),
                               round(_loo_self_recognised(now, sku), 4),
                               round(_loo_self_recognised(after, sku), 4))
               for sku, near in sorted(near_sets.items()) if sku in by_sku]
    impacts.sort(key=lambda n: -n.drop)
    return ExpansionPlan(plans, impacts, {
        "p50": round(float(np.percentile(nn, 50)), 4),
        f"p{settings.collision_percentile:g}": round(
            float(np.percentile(nn, settings.collision_percentile)), 4)}, settings)


def _exemplars_by_sku(snapshot: CatalogueSnapshot) -> dict[str, np.ndarray]:
    skus = np.asarray(snapshot.exemplar_skus)
    return {r.sku: snapshot.exemplar_vectors[skus == r.sku] for r in snapshot.records}


def _spreads(index: RecognitionIndex, snapshot: CatalogueSnapshot) -> np.ndarray:
    """Mean cosine distance of each existing SKU's exemplars to its prototype."""
    protos = _prototypes(index)
    out = []
    for sku, vectors in _exemplars_by_sku(snapshot).items():
        z = index.project(vectors)
        out.append(float(np.mean(1.0 - z @ protos[index.skus.index(sku)])))
    return np.asarray(out)
