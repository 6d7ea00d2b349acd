"""Confidence calibration, open-set scoring and per-class decision thresholds.

A raw cosine score is not a probability, and its scale drifts with catalogue
size: the more SKUs, the more near neighbours, the smaller the margins. So the
numbers a cart acts on are *fitted*, on labelled images that are not
references, to what actually happened:

* ``unknown_score``: P(the item is not in the catalogue), a logistic model
  over the top score and the top-1/top-2 margin, fitted on known items vs
  simulated unknowns (held-out SKUs scored against a gallery without them).
* ``confidence``: P(top-1 SKU is right) = P(right | known) x P(known), where
  P(right | known) is a second logistic model fitted on known items only.
* thresholds: one global accept threshold chosen for a target precision, then
  raised per SKU wherever that SKU attracted confident mistakes; a confirm
  threshold; an unknown threshold set for a target false-unknown rate on known
  items; family and brand thresholds for the hierarchy fallback.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    finite = np.where(np.isfinite(scores), scores, -1e9)
    z = finite / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


POSTERIOR_TOP_K = 10
"""SKUs that share the posterior mass used for the family/brand fallback.

Restricting the softmax to each query's ten best SKUs keeps answers local:
a SKU added to the catalogue can move a query's family/brand hint only if it
ranks among that query's ten best candidates.
"""


def local_posterior(scores: np.ndarray, temperature: float, k: int = POSTERIOR_TOP_K) -> np.ndarray:
    """Softmax over each row's ``k`` best scores; zero elsewhere. Same shape as ``scores``."""
    if scores.shape[1] <= k:
        return softmax(scores, temperature)
    keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(len(scores))[:, None]
    probs = np.zeros_like(scores, dtype=np.float64)
    probs[rows, keep] = softmax(scores[rows, keep], temperature)
    return probs


def score_features(scores: np.ndarray) -> np.ndarray:
    """(n, 2) features of a score matrix: the top score and the top-1/top-2 margin.

    Only the two best scores enter, so adding a SKU can change a query's
    confidence only if the new SKU becomes that query's best or second best.
    """
    finite = np.where(np.isfinite(scores), scores, -1.0)
    if finite.shape[1] < 2:
        top = finite[:, 0]
        return np.stack([top, top + 1.0], axis=1)
    part = -np.partition(-finite, 1, axis=1)
    top, second = part[:, 0], part[:, 1]
    return np.stack([top, top - second], axis=1)


@dataclass
class LogisticModel:
    """sigmoid(w . standardise(x) + b), fitted by Newton's method with an L2 ridge."""

    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -40, 40))))

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iters: int = 50
    ) -> LogisticModel:
        mean = x.mean(axis=0)
        scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        w = np.zeros(z.shape[1])
        reg = ridge * np.eye(z.shape[1])
        reg[-1, -1] = 0.0
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -40, 40)))
            grad = z.T @ (p - y) + reg @ w
            hess = (z * (p * (1 - p))[:, None]).T @ z + reg + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(
            weights=[float(v) for v in w[:-1]],
            bias=float(w[-1]),
            mean=[float(v) for v in mean],
            scale=[float(v) for v in scale],
        )


def fit_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """Temperature minimising the NLL of the true SKU (known items only)."""
    rows = np.arange(len(truth))
    best_t, best_nll = 0.05, np.inf
    for t in np.geomspace(0.005, 1.0, 60):
        p = softmax(scores, float(t))[rows, truth]
        nll = float(-np.log(np.maximum(p, 1e-12)).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> float:
    """ECE with equal-width bins: sum_b |acc_b - conf_b| * n_b / n."""
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += abs(float(correct[mask].mean()) - float(confidence[mask].mean())) * mask.mean()
    return float(ece)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(mask.sum()),
                "confidence": float(confidence[mask].mean()) if mask.any() else float("nan"),
                "accuracy": float(correct[mask].mean()) if mask.any() else float("nan"),
            }
        )
    return out


@dataclass
class CalibrationTargets:
    """What calibration aims for; every number is configurable from the CLI."""

    accept_precision: float = 0.995
    confirm_precision: float = 0.90
    false_unknown_rate: float = 0.03
    group_precision: float = 0.95
    holdout_fraction: float = 0.08
    folds: int = 0  # 0: as many folds as it takes to hold out every SKU once
    seed: int = 0


@dataclass
class Calibration:
    """Everything the recogniser needs to turn scores into decisions."""

    catalog_version: int
    temperature: float
    confidence_model: LogisticModel
    unknown_model: LogisticModel
    accept_threshold: float
    confirm_threshold: float
    unknown_threshold: float
    family_threshold: float
    brand_threshold: float
    class_accept_thresholds: dict[str, float] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def confidence(self, features: np.ndarray) -> np.ndarray:
        """P(top-1 right) = P(right | known) * P(known)."""
        return np.asarray(
            self.confidence_model.predict(features) * (1.0 - self.unknown_model.predict(features))
        )

    def unknown(self, features: np.ndarray) -> np.ndarray:
        """P(item is not in the catalogue)."""
        return self.unknown_model.predict(features)

    def accept_threshold_for(self, sku: str) -> float:
        return self.class_accept_thresholds.get(sku, self.accept_threshold)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        data["confidence_model"] = LogisticModel(**data["confidence_model"])
        data["unknown_model"] = LogisticModel(**data["unknown_model"])
        return cls(**data)


NEVER = 1.000001
"""A threshold no probability reaches: "accept nothing"."""


def threshold_for_precision(conf: np.ndarray, correct: np.ndarray, precision: float) -> float:
    """Lowest threshold t such that the answers with confidence >= t reach ``precision``.

    Cut-offs are only taken between distinct confidence values, so tied
    answers are always accepted or refused together. Returns :data:`NEVER`
    when no cut-off reaches the target.
    """
    if len(conf) == 0:
        return NEVER
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    prec = np.cumsum(correct[order]) / np.arange(1, len(c) + 1)
    group_end = np.append(c[1:] < c[:-1], True)
    ok = np.where((prec >= precision) & group_end)[0]
    if len(ok) == 0:
        return NEVER
    return float(c[ok[-1]])
