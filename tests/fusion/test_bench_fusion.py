"""``cartos bench fusion`` end to end on a generated catalogue, as a user runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from cartos.synth import SynthConfig, generate_catalogue, split_queries

KEYS = {"events", "accept_precision", "automation", "unknown_silent", "alerts", "vision_only"}


def test_bench_fusion_prints_sane_numbers(tmp_path: Path) -> None:
    synth = generate_catalogue(
        tmp_path / "synth",
        SynthConfig(n_skus=10, refs_per_sku=2, queries_per_sku=6, n_new=2, seed=3),
    )
    calibration, test = split_queries(synth)
    with test.open(newline="") as fh:
        rows = list(csv.reader(fh))
    with synth.new_products.open(newline="") as fh:
        new_rows = list(csv.reader(fh))[1:]
    assert all(r[6] for r in rows[1:] + new_rows), "generated SKUs carry nominal weights"
    queries = synth.root / "fusion_queries.csv"
    with queries.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows + new_rows)
    policy = tmp_path / "policy.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "cartos", "bench", "fusion",
            "--references", str(synth.manifest),
            "--calibration", str(calibration),
            "--queries", str(queries),
            "--scan-share", "1.0",
            "--seed", "5",
            "--json",
            "--policy-out", str(policy),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= KEYS
    assert {"accept_precision", "automation", "unknown_silent"} <= set(result["vision_only"])
    known = len(rows) - 1
    assert result["events"] == known + len(new_rows)
    # every row is scanned: listed barcodes identify known items, unknown items carry codes
    # the catalogue does not list, so they must never be accepted
    assert result["accept_precision"] == 1.0
    assert result["unknown_silent"] == 0.0
    assert result["automation"] == known / result["events"]
    assert result["alerts"].get("unlisted_barcode") == len(new_rows)
    camera = result["vision_only"]
    for key in ("accept_precision", "automation", "unknown_silent"):
        assert camera[key] is None or 0.0 <= camera[key] <= 1.0
    # the camera alone cannot automate more than camera + scanner on the same events
    assert camera["automation"] <= result["automation"]
    assert json.loads(policy.read_text())["accept_threshold"] > 0
