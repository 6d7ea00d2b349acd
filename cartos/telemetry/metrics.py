"""The cart's operational numbers in Prometheus form, for ``GET /metrics``.

Why these metrics:

* ``decisions_total{tier, sku}`` and ``corrections_total{sku}``: a correction
  is a decision a person overturned, so ``corrections / decisions`` per SKU
  estimates per-class accuracy in the field, which is what tells the catalogue
  team which products need more reference images;
* ``unknown_items_total`` and the prompt counters: how often the cart has to
  give up or ask the shopper, the two costs the recogniser is tuned against;
* ``review_queue_depth``: crops waiting for a human label at the hub;
* ``event_decision_latency_seconds`` and ``backbone_latency_seconds``: the
  shopper waits for the first, the second is where that time usually goes;
* ``memory_headroom_ratio``, ``sensor_healthy{sensor}`` and
  ``operating_mode``: whether the cart is degraded, and how.

Every :class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry`
rather than the process-global one, so tests, benchmarks and a running cart
can each have a private set without "duplicated timeseries" errors.

Label cardinality: ``sku`` labels are bounded by the catalogue (a few
thousand SKUs at most; every SKU the cart can decide is a catalogue entry).
Pass ``known_skus`` to enforce that bound: any SKU outside it is counted
under ``sku="other"`` instead of creating a new series.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

OPERATING_MODES: Final[tuple[str, ...]] = (
    "full",
    "barcode_weight",
    "vision_barcode",
    "barcode_only",
    "camera_only",
)
"""The cart's operating modes, from all sensors working to the degraded fallbacks."""

DECISION_TIERS: Final[tuple[str, ...]] = ("accept", "confirm", "fallback", "unknown")
"""Recognition's decision tiers (see :mod:`cartos.fusion.answer`)."""

OTHER_SKU: Final = "other"
"""Label value for SKUs outside ``known_skus``, keeping the series count bounded."""

CONTENT_TYPE: Final[str] = CONTENT_TYPE_LATEST
"""Content type of :meth:`Metrics.render`'s output (Prometheus text format)."""

EVENT_DECISION_BUCKETS: Final[tuple[float, ...]] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
"""Seconds from a sensor event to the basket decision: a shopper notices beyond ~0.5 s."""

BACKBONE_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
)  # fmt: skip
"""Seconds per backbone inference: INT8 EfficientNet-Lite0 runs in tens of ms on cart CPUs."""


class Metrics:
    """The cart's counters, gauges and histograms over a private registry.

    Methods are named after what happened (``decision``, ``correction``) so
    the runtime records facts and never deals with Prometheus objects.
    Thread-safe: prometheus_client's metrics lock internally.
    """

    def __init__(self, *, known_skus: Collection[str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._known_skus: frozenset[str] | None = (
            None if known_skus is None else frozenset(known_skus)
        )
        reg = self.registry
        self._decisions = Counter(
            "cartos_decisions",
            "Basket decisions by recognition tier and SKU.",
            ["tier", "sku"],
            registry=reg,
        )
        self._corrections = Counter(
            "cartos_corrections",
            "Decisions a person corrected, by the SKU that was decided.",
            ["sku"],
            registry=reg,
        )
        self._unknown = Counter(
            "cartos_unknown_items", "Items the cart could not identify.", registry=reg
        )
        self._prompts_opened = Counter(
            "cartos_prompts_opened", "Questions put to the shopper.", registry=reg
        )
        self._prompts_answered = Counter(
            "cartos_prompts_answered", "Questions the shopper answered.", registry=reg
        )
        self._prompts_expired = Counter(
            "cartos_prompts_expired", "Questions that timed out unanswered.", registry=reg
        )
        self._drift_alerts = Counter(
            "cartos_drift_alerts", "Drift and retraining triggers raised, by trigger.",
            ["trigger"], registry=reg,
        )
        self._drift_psi = Gauge(
            "cartos_drift_psi", "Population Stability Index of the last closed window vs the "
            "reference, per watched feature.", ["feature"], registry=reg,
        )
        self._review_depth = Gauge(
            "cartos_review_queue_depth",
            "Crops in the open session queued for human labelling.",
            registry=reg,
        )
        self._event_latency = Histogram(
            "cartos_event_decision_latency_seconds",
            "Time from a sensor event to the basket decision.",
            buckets=EVENT_DECISION_BUCKETS,
            registry=reg,
        )
        self._backbone_latency = Histogram(
            "cartos_backbone_latency_seconds",
            "Time of one backbone (embedding) inference.",
            buckets=BACKBONE_BUCKETS,
            registry=reg,
        )
        self._headroom = Gauge(
            "cartos_memory_headroom_ratio",
            "Fraction of the memory budget still free (0..1).",
            registry=reg,
        )
        self._sensor_healthy = Gauge(
            "cartos_sensor_healthy",
            "1 while a sensor works, 0 when it is faulted or missing.",
            ["sensor"],
            registry=reg,
        )
        self._mode = Enum(
            "cartos_operating_mode",
            "The cart's operating mode (degraded when not 'full').",
            states=list(OPERATING_MODES),
            registry=reg,
        )

    # -- recognition ----------------------------------------------------------

    def decision(self, tier: str, sku: str | None) -> None:
        """Count one basket decision; ``sku`` is None for an ``unknown`` decision."""
        if tier not in DECISION_TIERS:
            raise ValueError(f"unknown decision tier {tier!r}; expected one of {DECISION_TIERS}")
        self._decisions.labels(tier=tier, sku=self._sku_label(sku)).inc()
        if tier == "unknown":
            self._unknown.inc()

    def correction(self, sku: str | None) -> None:
        """Count a correction of an earlier decision for ``sku``."""
        self._corrections.labels(sku=self._sku_label(sku)).inc()

    def drift_alert(self, trigger: str) -> None:
        self._drift_alerts.labels(trigger=trigger).inc()

    def set_drift_psi(self, values: Mapping[str, float]) -> None:
        for feature, value in values.items():
            self._drift_psi.labels(feature=feature).set(value)

    def unknown_item(self) -> None:
        """Count an item that could not be identified outside a tiered decision."""
        self._unknown.inc()

    def observe_decision_latency(self, seconds: float) -> None:
        self._event_latency.observe(_non_negative("decision latency", seconds))

    def observe_backbone_latency(self, seconds: float) -> None:
        self._backbone_latency.observe(_non_negative("backbone latency", seconds))

    # -- shopper interaction --------------------------------------------------

    def prompt_opened(self) -> None:
        self._prompts_opened.inc()

    def prompt_answered(self) -> None:
        self._prompts_answered.inc()

    def prompt_expired(self) -> None:
        self._prompts_expired.inc()

    def set_review_depth(self, depth: int) -> None:
        self._review_depth.set(_non_negative("review queue depth", depth))

    # -- health ---------------------------------------------------------------

    def set_memory_headroom(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"memory headroom must be a fraction in [0, 1], got {fraction}")
        self._headroom.set(fraction)

    def set_sensor_health(self, sensor: str, healthy: bool) -> None:
        self._sensor_healthy.labels(sensor=sensor).set(1 if healthy else 0)

    def set_mode(self, mode: str) -> None:
        if mode not in OPERATING_MODES:
            raise ValueError(f"unknown operating mode {mode!r}; expected one of {OPERATING_MODES}")
        self._mode.state(mode)

    def observe_health(self, health: Mapping[str, Any]) -> None:
        """Copy a health report (``{"mode", "sensors", "headroom"}``) into the gauges.

        The local API calls this on every scrape, so the health gauges are as
        fresh as the report without the runtime having to push them.
        """
        mode = health.get("mode")
        if isinstance(mode, str):
            self.set_mode(mode)
        sensors = health.get("sensors")
        if isinstance(sensors, Mapping):
            for name, healthy in sensors.items():
                self.set_sensor_health(str(name), bool(healthy))
        headroom = health.get("headroom")
        if isinstance(headroom, int | float):
            self.set_memory_headroom(float(headroom))

    # -- exposition -----------------------------------------------------------

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def _sku_label(self, sku: str | None) -> str:
        if sku is None:
            return "none"
        if self._known_skus is not None and sku not in self._known_skus:
            return OTHER_SKU
        return sku


def _non_negative(what: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{what} cannot be negative, got {value}")
    return value
