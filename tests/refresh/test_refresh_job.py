"""``cartos model refresh`` end to end with a tiny budget: fine-tune the real backbone for a
few steps, export and quantise it, and let the gate judge it against the shipped model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cartos.inference.embedder import Embedder
from cartos.inference.model_card import verify_model
from cartos.refresh.train import augment
from cartos.synth import SynthConfig, generate_catalogue


def test_augment_keeps_a_product_photo_a_product_photo() -> None:
    rng = np.random.default_rng(0)
    image = np.full((120, 90, 3), 200, np.uint8)
    image[30:90, 20:70] = (40, 90, 160)
    shots = [augment(image, rng) for _ in range(20)]
    assert all(s.dtype == np.uint8 and s.ndim == 3 for s in shots)
    assert all(0.6 * 120 * 90 * 0.8 <= s.shape[0] * s.shape[1] <= 120 * 90 for s in shots)
    assert len({s.tobytes() for s in shots}) == 20  # every look differs


def test_refresh_with_a_tiny_budget_exports_a_gated_int8_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    synth = generate_catalogue(tmp_path / "synth", SynthConfig(
        n_skus=10, refs_per_sku=3, queries_per_sku=4, n_new=2, new_queries_per_sku=2, seed=3))
    out = tmp_path / "refreshed"
    cmd = [sys.executable, "-m", "cartos", "model", "refresh", "--references",
           str(synth.manifest), "--calibration", str(synth.queries), "--out", str(out),
           "--epochs", "1", "--batch-size", "8", "--time-budget-min", "0.5", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"accepted", "reason", "top1_before", "top1_after", "wall_s", "model"}
    assert 0.0 <= result["top1_before"] <= 1.0 and 0.0 <= result["top1_after"] <= 1.0
    assert result["wall_s"] > 0

    model = Path(result["model"])
    card = verify_model(model)  # the INT8 model matches its card
    assert card.precision == "int8" and card.embedding_size == 1280
    report = json.loads((out / "refresh.json").read_text())
    assert report["accepted"] == result["accepted"] and report["model_sha256"] == card.sha256
    assert report["training"]["steps"] >= 1
    assert report["test_set"]["rows"] == 20  # odd rows of the 40 labelled queries
    assert report["numbers"]["int8_agreement"] is not None
    assert result["accepted"] == (report["reasons"] == [])
    embedder = Embedder(model)  # it loads and embeds like any model a cart runs
    try:
        vectors = embedder.embed_paths([synth.root / "images" / synth.skus[0].sku_id
                                        / "ref_00.jpg"]).vectors
        assert vectors.shape == (1, 1280) and np.isfinite(vectors).all()
    finally:
        embedder.close()
