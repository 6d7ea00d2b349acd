"""The shipped INT8 model: checksum against its card, loading, and a full rebuild."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from cartos.inference.backend import BackendOptions, available, create
from cartos.inference.errors import ModelIntegrityError
from cartos.inference.model_card import (
    ModelCard,
    card_path_for,
    sha256_file,
    shipped_model_path,
    verify_model,
)
from tests.conftest import require_data


def test_shipped_model_matches_its_card() -> None:
    path = shipped_model_path()
    card = ModelCard.load(card_path_for(path))
    assert path.stat().st_size == card.file_size
    assert sha256_file(path) == card.sha256
    assert card.embedding_size == 1280
    assert card.input_size == 224
    assert card.precision == "int8"
    assert card.normalisation["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert card.quantisation["format"] == "QDQ" and card.quantisation["per_channel"] is True
    assert card.agreement["cosine_mean"] >= 0.99
    assert {"batch1", "batch8"} <= set(card.latency)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    src = shipped_model_path()
    copy = tmp_path / src.name
    shutil.copyfile(src, copy)
    shutil.copyfile(card_path_for(src), card_path_for(copy))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_model(copy)
    copy.write_bytes(bytes(data[:-10]))
    with pytest.raises(ModelIntegrityError, match="size"):
        verify_model(copy)


def test_onnxruntime_backend_embeds_a_batch() -> None:
    assert "onnxruntime" in available()
    backend = create("onnxruntime", shipped_model_path(), BackendOptions(threads=1))
    out = backend.run(np.zeros((3, 3, 224, 224), np.float32))
    assert out.shape == (3, 1280)
    assert np.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.data
def test_rebuild_reproduces_the_shipped_model_quality(tmp_path: Path) -> None:
    """Export + INT8 quantisation from the build extra; FP32/INT8 agreement >= 0.99."""
    pytest.importorskip("torch")
    from cartos.cli.inputs import expand_inputs
    from cartos.inference.cpu_features import exact_int8_dot_product, int8_kernels
    from cartos.modelbuild.build import build_model

    grozi = require_data("grozi120")
    images = [i.path for i in expand_inputs([grozi / "manifest.csv"], split="reference")]
    random.Random(0).shuffle(images)
    result = build_model(tmp_path, sorted(images[:128]), keep_fp32=False)
    card = json.loads(card_path_for(result.int8_path).read_text())
    assert card["sha256"] == sha256_file(result.int8_path)
    # The quantised graph itself agrees with FP32 on every CPU ...
    assert card["agreement"]["cosine_mean_exact"] >= 0.99
    # ... and so do ONNX Runtime's fused INT8 kernels where the CPU has an 8-bit dot
    # product; on AVX2-only x86 they lose about a point (see cpu_features).
    floor = 0.99 if exact_int8_dot_product() else 0.98
    assert card["agreement"]["cosine_mean"] >= floor, int8_kernels()
    assert card["embedding_size"] == 1280
    # The rebuilt model is a drop-in: same input/output contract as the shipped one.
    backend = create("onnxruntime", result.int8_path)
    assert backend.output_dim == 1280
