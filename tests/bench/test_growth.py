"""``cartos bench growth``: the growth curve's plumbing, its baseline and its operating point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cartos.bench.growth import (
    GrowthParams,
    SoftmaxHead,
    automation_at_precision,
    query_floor,
    targets,
    tiers,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _growth(cache: Path, out: Path) -> dict[str, Any]:
    """One run through the real CLI entry point; returns the JSON of the last stdout line."""
    cmd = [
        sys.executable,
        "-m",
        "cartos",
        "bench",
        "growth",
        "--sizes",
        "8,12",
        "--refs",
        "3",
        "--queries",
        "2",
        "--unknown",
        "3",
        "--seed",
        "1",
        "--min-test-queries",
        "0",
        "--cache",
        str(cache),
        "--out-dir",
        str(out),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _shares(row: dict[str, Any]) -> list[float]:
    keys = (
        "top1",
        "top1_head",
        "top1_tail",
        "automation_at_99",
        "silent_error",
        "unknown_detection",
    )
    return [row[k] for k in keys]


def test_growth_cli_reports_both_systems_caches_embeddings_and_writes_reports(
    tmp_path: Path,
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = _growth(cache, out)
    assert first["cache"]["hit"] is False
    assert [r["skus"] for r in first["sizes"]] == [8, 12]
    assert first["embedding"]["views"] == ["orig"]
    for row in first["sizes"]:
        for value in _shares(row) + _shares(row["baseline"]):
            assert 0.0 <= value <= 1.0
        assert row["silent_error"] <= row["automation_at_99"]
        assert 0.0 <= row["review_per_1000"] <= 1000.0
        for system in (row, row["baseline"]):
            # crop to answer includes the backbone, so it exceeds the decision alone
            assert system["latency_ms_p50"] > system["decision_ms_p50"] > 0
        assert row["index_mib"] > 0 and row["baseline"]["index_mib"] > 0
        assert row["test_queries"] == row["skus"] == row["calibration_queries"]
        assert row["unknown_queries"] == 6
    assert first["sizes"][0]["shortlist"] == {"used": False}
    # Nested sizes: the smaller catalogue's references are a subset of the larger one's.
    assert first["sizes"][0]["reference_images"] < first["sizes"][1]["reference_images"]

    embeddings = Path(first["cache"]["dir"]) / "embeddings" / "refs.npy"
    stamp, blob = embeddings.stat().st_mtime_ns, embeddings.read_bytes()
    assert np.load(embeddings).shape[1] == 1280

    second = _growth(cache, out)
    assert second["cache"]["hit"] is True
    assert second["cache"]["dir"] == first["cache"]["dir"]
    assert embeddings.stat().st_mtime_ns == stamp and embeddings.read_bytes() == blob
    # Same data, same seeds: the accuracy columns are reproduced exactly.
    assert [_shares(r) for r in second["sizes"]] == [_shares(r) for r in first["sizes"]]

    for name in ("growth_accuracy.png", "growth_automation.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    table = (out / "growth.md").read_text()
    assert table.startswith("| SKUs |") and "| 12 |" in table
    assert json.loads((out / "growth.json").read_text())["sizes"][1]["skus"] == 12


def test_growth_cli_rejects_a_catalogue_too_small_to_calibrate(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "cartos",
        "bench",
        "growth",
        "--sizes",
        "4",
        "--cache",
        str(tmp_path),
        "--out-dir",
        str(tmp_path),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "at least 8" in done.stderr


def test_softmax_head_learns_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64)) * 3
    labels = np.repeat(np.arange(20), 5)
    x = centres[labels] + rng.standard_normal((100, 64)) * 0.5
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = [f"sku-{i:02d}" for i in labels]
    head = SoftmaxHead.fit(x, names, steps=200)
    test = centres[labels] + rng.standard_normal((100, 64)) * 0.5
    probs = head.predict_proba(test / np.linalg.norm(test, axis=1, keepdims=True))
    predicted = np.array(head.classes)[probs.argmax(axis=1)]
    assert probs.shape == (100, 20)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (predicted == np.array(names)).mean() >= 0.99
    # A head that never trained guesses at chance: the test can tell the two apart.
    untrained = SoftmaxHead.fit(x, names, steps=0).predict_proba(test)
    assert (np.array(head.classes)[untrained.argmax(axis=1)] == np.array(names)).mean() < 0.2


def test_automation_at_precision_picks_the_largest_share_meeting_the_target() -> None:
    # Calibration half, by falling confidence: 9 right, then a wrong one at 0.55.
    # Precision at >= 0.60: 9/9; at >= 0.55: 9/10 = 0.9 < 0.99 -> threshold 0.60.
    cal_conf = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5])
    cal_ok = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1], bool)
    # Test half: 4 of 8 reach 0.60, one of them wrong.
    test_conf = np.array([0.97, 0.8, 0.61, 0.6, 0.59, 0.4, 0.3, 0.2])
    test_ok = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
    op = automation_at_precision(cal_conf, cal_ok, test_conf, test_ok, precision=0.99)
    assert op.threshold == pytest.approx(0.60)
    assert op.automation == pytest.approx(4 / 8)
    assert op.precision == pytest.approx(3 / 4)
    assert op.silent_error == pytest.approx(1 / 8)
    # At 90 % the wrong answer at 0.55 is tolerated, and the 0.5 after it too (10/11).
    loose = automation_at_precision(cal_conf, cal_ok, test_conf, test_ok, precision=0.9)
    assert loose.threshold == pytest.approx(0.5)
    # Nothing reaches the target: no threshold, nothing automated.
    none = automation_at_precision(
        np.array([0.9, 0.8]), np.array([False, True]), test_conf, test_ok, precision=0.99
    )
    assert none.threshold is None and none.automation == 0.0 and none.precision is None


def test_tiers_are_the_quartiles_by_reference_count() -> None:
    skus = [f"s{i}" for i in range(8)]
    counts = dict(zip(skus, [5, 1, 3, 5, 1, 2, 4, 1], strict=True))
    head, tail = tiers(skus, counts)
    assert head == {"s0", "s3"}
    assert tail == {"s4", "s7"}  # three SKUs tie at 1 reference: the later slots go to the tail


def test_small_sizes_get_enough_test_queries() -> None:
    """100 SKUs x 4 photos would judge "silent errors <= 1 %" on 200 answers."""
    assert query_floor(4, 1000) == ((100, 20), (200, 10))
    assert query_floor(4, 0) == ()
    config = GrowthParams(max_skus=2000, queries=4, min_test_queries=1000).synth_config()
    for size in (100, 200, 500, 1000, 2000):
        per_sku = config.queries_for_slot(size - 1)
        assert size * per_sku // 2 >= 1000, size  # odd photos are the test half
    # The cache key changes with the floor: other photos, other cache folder.
    assert GrowthParams(100).key("m") != GrowthParams(100, min_test_queries=0).key("m")


def _row(
    skus: int, automation: float, silent: float, latency: float, base_auto: float
) -> dict[str, Any]:
    return {"skus": skus, "automation_at_99": automation, "silent_error": silent,
            "product_silent_error": silent / 2, "latency_ms_p50": latency,
            "decision_ms_p50": latency / 4, "baseline": {"automation_at_99": base_auto}}


def test_targets_read_the_three_numbers_off_the_rows_and_say_which_are_missed() -> None:
    good = [_row(100, 0.30, 0.004, 8.0, 0.10), _row(1000, 0.20, 0.002, 8.5, 0.08),
            _row(2000, 0.17, 0.003, 9.0, 0.04), _row(10000, 0.10, 0.001, 9.5, 0.02)]
    found = targets(good)
    assert found["automation_drop_1000_to_2000"]["met"]
    assert found["automation_drop_1000_to_2000"]["prototypes"] == pytest.approx(0.03)
    assert found["automation_drop_1000_to_2000"]["baseline"] == pytest.approx(0.04)
    assert found["max_silent_error"] == {"at_99": 0.004, "product_accept": 0.002, "limit": 0.01,
                                         "met": True}
    assert found["latency_ratio"]["recognition"] == pytest.approx(9.5 / 8.0, abs=1e-3)
    assert found["latency_ratio"]["met"]

    bad = [_row(100, 0.30, 0.004, 8.0, 0.10), _row(1000, 0.25, 0.012, 8.5, 0.08),
           _row(2000, 0.17, 0.003, 9.0, 0.04), _row(10000, 0.10, 0.001, 12.0, 0.02)]
    missed = targets(bad)
    assert not missed["automation_drop_1000_to_2000"]["met"]  # 8 points
    assert not missed["max_silent_error"]["met"]  # 1.2 % at 1,000 SKUs
    assert not missed["latency_ratio"]["met"]  # 1.5x
    assert "automation_drop_1000_to_2000" not in targets(bad[:1])
