"""Which model file a profile selects, and how a missing or foreign one is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cartos.inference.model_card import card_path_for, shipped_model_path
from cartos.profiles import InferenceConfig, ProfileError
from cartos.profiles.model_file import model_file_for, verified_model


def test_default_model_follows_the_naming_convention() -> None:
    shipped = shipped_model_path()
    onnx = model_file_for(InferenceConfig(backend="onnxruntime", threads=1))
    assert onnx == shipped
    litert = model_file_for(InferenceConfig(backend="litert", variant="lite1", threads=1))
    assert litert == shipped.parent / "efficientnet_lite1_int8.tflite"


def test_shipped_model_verifies_against_its_card() -> None:
    path, card = verified_model(InferenceConfig(backend="onnxruntime", threads=1))
    assert path == shipped_model_path()
    assert card.embedding_size > 0 and len(card.sha256) == 64


def test_missing_packaged_variant_says_how_to_build_it() -> None:
    inference = InferenceConfig(backend="onnxruntime", variant="lite2", threads=1)
    if model_file_for(inference).exists():
        pytest.skip("a lite2 model has been built into the package")
    with pytest.raises(ProfileError) as exc:
        verified_model(inference)
    assert "efficientnet_lite2_int8.onnx" in str(exc.value)
    assert "cartos model build --variant lite2" in str(exc.value)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "backbone.onnx"
    shutil.copyfile(shipped_model_path(), model)
    shutil.copyfile(card_path_for(shipped_model_path()), card_path_for(model))
    with model.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ProfileError, match="does not match card"):
        verified_model(InferenceConfig(backend="onnxruntime", model=model, threads=1))


def test_model_without_card_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "backbone.onnx"
    shutil.copyfile(shipped_model_path(), model)
    with pytest.raises(ProfileError, match="has no model card"):
        verified_model(InferenceConfig(backend="onnxruntime", model=model, threads=1))


def test_card_of_another_variant_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "backbone.onnx"
    shutil.copyfile(shipped_model_path(), model)
    shutil.copyfile(card_path_for(shipped_model_path()), card_path_for(model))
    inference = InferenceConfig(backend="onnxruntime", variant="lite1", model=model, threads=1)
    with pytest.raises(ProfileError, match="is a lite0 backbone but the profile says"):
        verified_model(inference)
