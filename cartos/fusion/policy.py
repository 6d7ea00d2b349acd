"""Fusion thresholds, fitted on labelled events rather than guessed.

The fused posterior is a product of models that each make assumptions
(independent sensors, Gaussian pack weights, a uniform background); its top
probability is a good *ranking* of how sure fusion is, not a probability a
cart may act on. So, exactly as recognition does, a logistic model is fitted
on calibration events (items whose identity is known, including simulated
unknowns) from the posterior's features to P(answer right), and the accept
threshold is the lowest one whose accepted events reach the target precision
(default 99.5 %). The unknown threshold keeps the share of known items sent
to ``unknown`` at a target rate.

Barcode-identified events are not part of the fit: their identity comes from
a check-digit-verified scan and their confidence is
:attr:`FusionPolicy.barcode_confidence`; the fit covers the camera × scale
path, where mistakes happen.

The policy is stored as JSON so the cart runtime loads the exact thresholds
the benchmark measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.errors import FusionCalibrationError
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.posterior import FEATURE_NAMES, EvidenceModel, fused_posterior
from cartos.fusion.weight_model import WeightModel
from cartos.inference.calibration import NEVER, LogisticModel


@dataclass
class FusionPolicy:
    """Everything :func:`cartos.fusion.fuse.fuse` needs besides the evidence and the catalogue.

    Without a fitted ``confidence_model`` the policy is *uncalibrated*: the
    camera × scale path then never answers ``accept`` (like an uncalibrated
    recogniser), while barcode-identified items still can.
    """

    model: EvidenceModel = field(default_factory=EvidenceModel)
    confidence_model: LogisticModel | None = None
    accept_threshold: float = NEVER
    confirm_threshold: float = 0.5
    unknown_threshold: float = 0.5
    group_threshold: float = 0.9
    """Share of the candidates' mass one family (or brand) must hold for a fallback answer."""
    ticket_switch_probability: float = 0.9
    """Camera × scale posterior of another SKU needed to call a ticket switch."""
    vision_contradiction: float = 0.05
    """The camera contradicts a scanned SKU when it gives it at most this probability."""
    barcode_confidence: float = 0.999
    removal_accept_probability: float = 0.95
    target_precision: float = 0.995
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return self.confidence_model is not None

    def confidence(self, features: np.ndarray) -> float:
        """Calibrated P(answer right) for one event's features (needs a fitted model)."""
        if self.confidence_model is None:
            raise FusionCalibrationError("fusion policy is not calibrated")
        return float(self.confidence_model.predict(features.reshape(1, -1))[0])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> FusionPolicy:
        try:
            data = json.loads(text)
            model = data.pop("model")
            data["model"] = EvidenceModel(weight=WeightModel(**model.pop("weight")), **model)
            cm = data.get("confidence_model")
            data["confidence_model"] = None if cm is None else LogisticModel(**cm)
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise FusionCalibrationError(f"unreadable fusion policy: {exc}") from exc

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> FusionPolicy:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FusionCalibrationError(f"cannot read fusion policy {path}: {exc}") from exc
        return cls.from_json(text)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class CalibrationEvent:
    """One labelled add event; ``truth`` is None for an item outside the catalogue."""

    vision: VisionEvidence | None
    weight: WeightEvidence | None
    barcode: BarcodeEvidence | None
    truth: str | None


DEFAULT_UNKNOWN_SHARE = 0.4
"""Fit the fusion thresholds as if 40 % of items were in no catalogue.

A store sees far fewer, so this is deliberately pessimistic: the price of an unknown item
accepted as a catalogue SKU (silent misclassification) is much higher than that of a question.
On GroZi-120 (``cartos bench fusion --grozi``, docs/benchmarks.md) the sweep 0.10 / 0.25 / 0.35
/ 0.40 / as simulated (about 0.5) accepted 2 / 1 / 0 / 0 / 0 of 672 unknown items and 93.7 /
90.7 / 89.4 / 86.9 / 84.1 % of known ones; 0.40 is the most permissive setting with a step of
margin before the first unknown is accepted. Chosen on that benchmark's queries, so it is a
measured, not an independent, estimate: re-run the sweep on a store's own data."""


@dataclass(frozen=True)
class FusionTargets:
    """What the fit aims for."""

    accept_precision: float = 0.995
    confirm_precision: float = 0.90
    false_unknown_rate: float = 0.03
    unknown_share: float | None = DEFAULT_UNKNOWN_SHARE
    """Share of items outside the catalogue the thresholds are fitted for. Simulated unknowns
    are reweighted to it when the precision thresholds are chosen; ``None`` takes the events
    as they come (about half unknowns in the simulated folds). See
    :data:`DEFAULT_UNKNOWN_SHARE` for the default."""


def fit_fusion_calibration(
    events: Sequence[CalibrationEvent],
    catalogue: CatalogueView,
    base: FusionPolicy | None = None,
    targets: FusionTargets | None = None,
) -> FusionPolicy:
    """Fit the confidence model and thresholds of ``base`` on labelled events.

    Raises :class:`FusionCalibrationError` when the events cannot support a
    fit (no camera × scale events, or all right / all wrong).
    """
    base = base or FusionPolicy()
    targets = targets or FusionTargets()
    feats: list[np.ndarray] = []
    correct: list[bool] = []
    known: list[bool] = []
    unknown_p: list[float] = []
    skipped_barcode = 0
    for ev in events:
        post = fused_posterior(ev.vision, ev.weight, ev.barcode, catalogue, base.model)
        if post.barcode_sku is not None:
            skipped_barcode += 1
            continue
        top = post.top
        if top is None:
            continue
        feats.append(post.features())
        correct.append(ev.truth is not None and top.sku == ev.truth)
        known.append(ev.truth is not None and ev.truth in catalogue)
        unknown_p.append(post.unknown_probability)
    if len(feats) < 10:
        raise FusionCalibrationError(
            f"fusion calibration needs at least 10 camera events, got {len(feats)}"
        )
    x = np.stack(feats)
    y = np.array(correct)
    k = np.array(known)
    if y.all() or not y.any():
        raise FusionCalibrationError(
            "fusion calibration needs both right and wrong answers (add unknown items)"
        )
    confidence_model = LogisticModel.fit(x, y.astype(float))
    conf = confidence_model.predict(x)
    weights = _event_weights(k, targets.unknown_share)
    accept = weighted_threshold_for_precision(conf, y, weights, targets.accept_precision)
    confirm = min(
        accept, weighted_threshold_for_precision(conf, y, weights, targets.confirm_precision)
    )
    unk = np.array(unknown_p)
    unknown_threshold = (
        float(np.clip(np.quantile(unk[k], 1.0 - targets.false_unknown_rate), 0.2, 0.99))
        if k.any()
        else base.unknown_threshold
    )
    accepted = (conf >= accept) & (unk < unknown_threshold)
    metrics = {
        "unknown_share": targets.unknown_share,
        "events": len(events),
        "camera_events": len(feats),
        "barcode_events_skipped": skipped_barcode,
        "known_events": int(k.sum()),
        "unknown_events": int((~k).sum()),
        "features": list(FEATURE_NAMES),
        "accept_rate_known": float(accepted[k].mean()) if k.any() else float("nan"),
        "accept_precision": float(y[accepted].mean()) if accepted.any() else float("nan"),
        "accept_precision_weighted": float(
            (weights * y * accepted).sum() / (weights * accepted).sum()
        )
        if accepted.any()
        else float("nan"),
        "unknown_accepted_rate": float(accepted[~k].mean()) if (~k).any() else float("nan"),
    }
    return FusionPolicy(
        model=base.model,
        confidence_model=confidence_model,
        accept_threshold=accept,
        confirm_threshold=confirm,
        unknown_threshold=unknown_threshold,
        group_threshold=base.group_threshold,
        ticket_switch_probability=base.ticket_switch_probability,
        vision_contradiction=base.vision_contradiction,
        barcode_confidence=base.barcode_confidence,
        removal_accept_probability=base.removal_accept_probability,
        target_precision=targets.accept_precision,
        metrics=metrics,
    )


def _event_weights(known: np.ndarray, unknown_share: float | None) -> np.ndarray:
    """Per-event weights that give unknown events ``unknown_share`` of the total."""
    weights = np.ones(len(known))
    n_unknown = int((~known).sum())
    if unknown_share is None or n_unknown == 0 or known.all():
        return weights
    if not 0.0 <= unknown_share < 1.0:
        raise FusionCalibrationError(f"unknown_share must lie in [0, 1), got {unknown_share}")
    n_known = len(known) - n_unknown
    weights[~known] = unknown_share / (1.0 - unknown_share) * n_known / n_unknown
    return weights


def weighted_threshold_for_precision(
    conf: np.ndarray, correct: np.ndarray, weights: np.ndarray, precision: float
) -> float:
    """Lowest threshold whose accepted events reach ``precision`` (weighted by ``weights``).

    Like :func:`cartos.inference.calibration.threshold_for_precision`: cut-offs
    only between distinct confidences, :data:`NEVER` when no cut-off works.
    """
    if len(conf) == 0:
        return NEVER
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    w = weights[order]
    prec = np.cumsum(w * correct[order]) / np.cumsum(w)
    group_end = np.append(c[1:] < c[:-1], True)
    ok = np.where((prec >= precision) & group_end)[0]
    if len(ok) == 0:
        return NEVER
    return float(c[ok[-1]])
