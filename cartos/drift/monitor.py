"""Drift and retraining triggers, each an :class:`Alert` carrying its evidence.

* **Input/embedding drift**: every ``window`` observations, each watched feature's
  distribution is compared with the reference window by PSI (:mod:`cartos.drift.psi`);
  above ``psi_tolerance`` is an alert naming the features and their PSI. The reference is
  fixed (the first window after start or a saved one): comparing each window with the
  previous one would let a slow drift pass as "no change" forever.
* **Class accuracy**: accepted answers that a shopper or attendant corrected count as
  wrong for that SKU, the others as right; a SKU below ``class_accuracy`` in two
  consecutive windows (with ``min_class_events`` each) is an alert. One bad window is
  noise; two is a trend.
* **Catalogue growth**: SKUs added since the last backbone refresh at or above
  ``new_sku_share`` of the catalogue (default 5 %): the prototypes carry them, but the
  backbone never saw them.
* **Successor confusion**: a discontinued SKU that keeps being the recogniser's top
  answer (``successor_hits`` in a window) means its successor looks like it and
  needs more references.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cartos.drift.errors import DriftError
from cartos.drift.features import EMBEDDING_FEATURES, INPUT_FEATURES
from cartos.drift.psi import DEFAULT_BINS, bin_edges, psi, shares


@dataclass(frozen=True)
class DriftSettings:
    window: int = 200
    reference_windows: int = 5
    """Windows pooled into the reference when none is given: a reference as small as one
    window is as noisy as the windows compared with it, and doubles the false alarms."""
    bins: int = DEFAULT_BINS
    psi_tolerance: float = 0.25
    class_accuracy: float = 0.8
    min_class_events: int = 10
    new_sku_share: float = 0.05
    successor_hits: int = 5

    def __post_init__(self) -> None:
        if self.window < 5 * self.bins:
            raise DriftError(f"a window of {self.window} is too small for {self.bins} bins "
                             f"(at least {5 * self.bins})")
        if self.psi_tolerance <= 0:
            raise DriftError("psi_tolerance must be positive")


@dataclass(frozen=True)
class Alert:
    trigger: str
    """``input_drift``, ``embedding_drift``, ``class_accuracy``, ``catalogue_growth`` or
    ``successor_confusion``."""
    window: int
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Reference:
    edges: dict[str, np.ndarray]
    shares: dict[str, np.ndarray]


class DriftMonitor:
    """Feed it observations; it returns alerts when a window closes."""

    def __init__(self, settings: DriftSettings | None = None,
                 reference: Mapping[str, Sequence[float]] | None = None,
                 discontinued: Iterable[str] = ()) -> None:
        self.settings = settings or DriftSettings()
        self.windows = 0
        self._values: dict[str, list[float]] = defaultdict(list)
        self._count = 0
        self._reference = self._fit(reference) if reference is not None else None
        self._pooled: dict[str, list[float]] = defaultdict(list)
        self._class: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [right, wrong]
        self._low_before: set[str] = set()
        self._discontinued = set(discontinued)
        self._answers: dict[str, int] = defaultdict(int)
        self.last_psi: dict[str, float] = {}

    def _fit(self, values: Mapping[str, Sequence[float]]) -> _Reference:
        edges = {k: bin_edges(v, self.settings.bins) for k, v in values.items()}
        return _Reference(edges, {k: shares(values[k], e) for k, e in edges.items()})

    @property
    def reference(self) -> dict[str, dict[str, list[float]]] | None:
        """The reference (bin edges and shares per feature), to save across restarts: a
        reference rebuilt after every restart would absorb a drift that began before it."""
        if self._reference is None:
            return None
        return {k: {"edges": e.tolist(), "shares": self._reference.shares[k].tolist()}
                for k, e in self._reference.edges.items()}

    def restore(self, saved: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Adopt a reference saved from :attr:`reference`."""
        edges = {k: np.asarray(v["edges"], dtype=np.float64) for k, v in saved.items()}
        fitted = {k: np.asarray(v["shares"], dtype=np.float64) for k, v in saved.items()}
        if any(fitted[k].size != edges[k].size + 1 for k in edges):
            raise DriftError("a saved drift reference whose shares do not match its bins")
        self._reference = _Reference(edges, fitted)

    def observe(self, features: Mapping[str, float], answer: str | None = None) -> list[Alert]:
        """One crop's features (input and/or embedding) and the SKU answered, if any."""
        for name, value in features.items():
            self._values[name].append(float(value))
        if answer is not None:
            self._answers[answer] += 1
        self._count += 1
        if self._count < self.settings.window:
            return []
        return self._close_window()

    def outcome(self, sku: str, corrected: bool) -> None:
        """An accepted answer of ``sku`` was (``corrected``) or was not corrected."""
        self._class[sku][1 if corrected else 0] += 1

    def catalogue_growth(self, new_since_refresh: int, catalogue_size: int) -> Alert | None:
        share = new_since_refresh / max(1, catalogue_size)
        if share < self.settings.new_sku_share:
            return None
        return Alert("catalogue_growth", self.windows, {
            "new_skus": new_since_refresh, "catalogue_skus": catalogue_size,
            "share": round(share, 4), "threshold": self.settings.new_sku_share})

    def _close_window(self) -> list[Alert]:
        values, self._values, self._count = dict(self._values), defaultdict(list), 0
        self.windows += 1
        alerts: list[Alert] = []
        if self._reference is None:
            for name, vs in values.items():
                self._pooled[name] += vs
            if self.windows >= self.settings.reference_windows:
                self._reference = self._fit(self._pooled)
                self._pooled = defaultdict(list)
        else:
            self.last_psi = {k: psi(self._reference.shares[k],
                                    shares(values[k], self._reference.edges[k]))
                             for k in self._reference.edges if k in values}
            for trigger, names in (("input_drift", INPUT_FEATURES),
                                   ("embedding_drift", EMBEDDING_FEATURES)):
                over = {k: round(v, 4) for k, v in self.last_psi.items()
                        if k in names and v > self.settings.psi_tolerance}
                if over:
                    alerts.append(Alert(trigger, self.windows, {
                        "psi": over, "tolerance": self.settings.psi_tolerance,
                        "window_means": {k: round(float(np.mean(values[k])), 4) for k in over}}))
        alerts += self._class_alerts()
        alerts += self._successor_alerts()
        return alerts

    def _class_alerts(self) -> list[Alert]:
        s = self.settings
        low = {sku: right / (right + wrong) for sku, (right, wrong) in self._class.items()
               if right + wrong >= s.min_class_events
               and right / (right + wrong) < s.class_accuracy}
        alerts = [Alert("class_accuracy", self.windows, {
            "sku": sku, "accuracy": round(acc, 4), "threshold": s.class_accuracy,
            "events": sum(self._class[sku]), "consecutive_windows": 2})
            for sku, acc in sorted(low.items()) if sku in self._low_before]
        self._low_before = set(low)
        self._class = defaultdict(lambda: [0, 0])
        return alerts

    def _successor_alerts(self) -> list[Alert]:
        alerts = [Alert("successor_confusion", self.windows, {"sku": sku, "answers": n})
                  for sku, n in sorted(self._answers.items())
                  if sku in self._discontinued and n >= self.settings.successor_hits]
        self._answers = defaultdict(int)
        return alerts
