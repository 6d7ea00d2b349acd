"""Metrics exposition, parsed back with prometheus_client's own text parser."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cartos.api.models import OperatingMode
from cartos.telemetry.metrics import BACKBONE_BUCKETS, OPERATING_MODES, Metrics
from tests.api.conftest import HealthBoard


def samples(exposition: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_decisions_and_corrections_are_counted_per_sku() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.decision("accept", "milk-1l")
    metrics.decision("confirm", "milk-1l")
    metrics.decision("unknown", None)
    metrics.correction("milk-1l")
    got = samples(metrics.render())
    assert got[("cartos_decisions_total", (("sku", "milk-1l"), ("tier", "accept")))] == 3
    assert got[("cartos_decisions_total", (("sku", "milk-1l"), ("tier", "confirm")))] == 1
    assert got[("cartos_corrections_total", (("sku", "milk-1l"),))] == 1
    assert got[("cartos_unknown_items_total", ())] == 1


def test_skus_outside_the_catalogue_share_one_series() -> None:
    metrics = Metrics(known_skus={"milk-1l"})
    metrics.decision("accept", "milk-1l")
    metrics.decision("accept", "mystery-1")
    metrics.decision("accept", "mystery-2")
    got = samples(metrics.render())
    skus = {dict(labels)["sku"] for name, labels in got if name == "cartos_decisions_total"}
    assert skus == {"milk-1l", "other"}
    assert got[("cartos_decisions_total", (("sku", "other"), ("tier", "accept")))] == 2


def test_prompts_review_and_health_gauges() -> None:
    metrics = Metrics()
    metrics.prompt_opened()
    metrics.prompt_opened()
    metrics.prompt_answered()
    metrics.prompt_expired()
    metrics.set_review_depth(4)
    metrics.observe_health(
        {"mode": "vision_barcode", "sensors": {"scale": False, "camera": True}, "headroom": 0.3}
    )
    got = samples(metrics.render())
    assert got[("cartos_prompts_opened_total", ())] == 2
    assert got[("cartos_prompts_answered_total", ())] == 1
    assert got[("cartos_prompts_expired_total", ())] == 1
    assert got[("cartos_review_queue_depth", ())] == 4
    assert got[("cartos_memory_headroom_ratio", ())] == pytest.approx(0.3)
    assert got[("cartos_sensor_healthy", (("sensor", "scale"),))] == 0
    assert got[("cartos_sensor_healthy", (("sensor", "camera"),))] == 1
    modes = {
        dict(labels)["cartos_operating_mode"]: value
        for (name, labels), value in got.items()
        if name == "cartos_operating_mode"
    }
    assert modes == {mode: float(mode == "vision_barcode") for mode in OPERATING_MODES}


@given(st.lists(st.floats(0, 2.0, allow_nan=False), max_size=30))
def test_backbone_histogram_counts_every_observation(latencies: list[float]) -> None:
    metrics = Metrics()
    for seconds in latencies:
        metrics.observe_backbone_latency(seconds)
    got = samples(metrics.render())
    assert got[("cartos_backbone_latency_seconds_count", ())] == len(latencies)
    assert got[("cartos_backbone_latency_seconds_sum", ())] == pytest.approx(sum(latencies))
    for bound in BACKBONE_BUCKETS:
        key = ("cartos_backbone_latency_seconds_bucket", (("le", str(bound)),))
        assert got[key] == sum(1 for s in latencies if s <= bound)


def test_registries_are_private() -> None:
    first, second = Metrics(), Metrics()
    first.unknown_item()
    assert samples(second.render())[("cartos_unknown_items_total", ())] == 0


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("decision", ("maybe", "milk-1l")),
        ("set_mode", ("turbo",)),
        ("set_memory_headroom", (1.5,)),
        ("observe_decision_latency", (-0.1,)),
    ],
)
def test_impossible_values_are_refused(call: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        getattr(Metrics(), call)(*args)


def test_operating_modes_match_the_api_contract() -> None:
    assert get_args(OperatingMode) == OPERATING_MODES


def test_metrics_endpoint_refreshes_health_and_review(
    client: TestClient, metrics: Metrics, health_board: HealthBoard
) -> None:
    metrics.decision("accept", "milk-1l")
    health_board.mode = "barcode_weight"
    health_board.sensors["camera"] = False
    health_board.headroom = 0.125
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("cartos_decisions_total", (("sku", "milk-1l"), ("tier", "accept")))] == 1
    assert got[("cartos_sensor_healthy", (("sensor", "camera"),))] == 0
    assert got[("cartos_memory_headroom_ratio", ())] == 0.125
    assert got[("cartos_operating_mode", (("cartos_operating_mode", "barcode_weight"),))] == 1
    assert got[("cartos_review_queue_depth", ())] == 0
