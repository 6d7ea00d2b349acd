"""A catalogue remembers the model it was embedded with, and nothing recognises against it
with another one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cartos.catalog.store import CatalogStore
from cartos.inference.catalogue_model import (
    MODEL_KEY,
    SIGNATURE_KEY,
    embedder_for,
    recorded_model,
    resolve_model,
)
from cartos.inference.embedder import Embedder
from cartos.inference.errors import ModelMismatchError
from cartos.inference.model_card import card_path_for, shipped_model_path
from cartos.inference.recognizer import Recognizer
from tests.inference.conftest import Prepared


def _model_dir(root: Path) -> Path:
    """A model folder as `cartos model build --out` leaves it: one model and its card."""
    root.mkdir(parents=True)
    model = shipped_model_path()
    shutil.copyfile(model, root / model.name)
    shutil.copyfile(card_path_for(model), card_path_for(root / model.name))
    return root


def _cartos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cartos", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_model_folder_must_hold_exactly_one_model(tmp_path: Path) -> None:
    folder = _model_dir(tmp_path / "m")
    assert resolve_model(folder) == folder / shipped_model_path().name
    assert resolve_model(folder / shipped_model_path().name) == folder / shipped_model_path().name
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMismatchError, match=r"exactly one model .*found none"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(ModelMismatchError, match="no such model"):
        resolve_model(tmp_path / "missing")
    shutil.copyfile(folder / shipped_model_path().name, folder / "other.onnx")
    shutil.copyfile(card_path_for(shipped_model_path()), folder / "other.card.json")
    with pytest.raises(ModelMismatchError, match=r"found .*other\.onnx"):
        resolve_model(folder)


def test_import_with_a_model_folder_records_it_and_recognize_uses_it(
    prepared: Prepared, tmp_path: Path
) -> None:
    folder = _model_dir(tmp_path / "refreshed")
    db = tmp_path / "cat.db"
    done = _cartos("catalog", "import", str(prepared.synth.manifest), "--db", str(db),
                   "--model", str(folder))
    assert done.returncode == 0, done.stderr
    with CatalogStore(db) as store:
        assert recorded_model(store) == (folder / shipped_model_path().name).resolve()
        meta = json.loads(store.meta_get(MODEL_KEY) or "{}")
        embedder = embedder_for(store)
    assert embedder.model_path == (folder / shipped_model_path().name).resolve()
    assert meta["sha256"] == embedder.card.sha256
    query = sorted(prepared.synth.root.glob("images/*/query_00.jpg"))[0]
    done = _cartos("recognize", "--db", str(db), "--json", str(query))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["sku"] == query.parent.name

    # The recorded model disappears: a clear refusal, not the shipped model in its place.
    shutil.rmtree(folder)
    done = _cartos("recognize", "--db", str(db), "--json", str(query))
    assert done.returncode == 2
    assert "which is gone" in done.stderr


def test_recognize_refuses_a_catalogue_embedded_with_another_model(
    catalogue_copy: Path, prepared: Prepared, embedder: Embedder
) -> None:
    with CatalogStore(catalogue_copy) as store:
        Recognizer.from_store(store, embedder)  # the model it was built with: fine
        with store.change("test", "pretend another backbone built this catalogue"):
            store.meta_set(SIGNATURE_KEY, json.dumps({"model_sha256": "ab" * 32,
                                                      "views": ["orig", "flip"]}))
        with pytest.raises(ModelMismatchError, match="model abababababab"):
            Recognizer.from_store(store, embedder)
        Recognizer.from_store(store)  # vectors alone (health checks, benchmarks): no model
    query = sorted(prepared.synth.root.glob("images/*/query_00.jpg"))[0]
    done = _cartos("recognize", "--db", str(catalogue_copy), str(query))
    assert done.returncode == 2
    assert "embedded with model abababababab" in done.stderr
    assert "--model MODEL_DIR" in done.stderr


def test_other_views_are_another_embedding_space(catalogue_copy: Path) -> None:
    with CatalogStore(catalogue_copy) as store, pytest.raises(ModelMismatchError,
                                                              match="views orig\\+flip"):
        Recognizer.from_store(store, Embedder(views=("orig",)))


def test_the_litert_export_of_the_same_backbone_is_another_space(catalogue_copy: Path) -> None:
    """INT8 ONNX and INT8 LiteRT embeddings differ (cosine ~0.99): a LiteRT cart needs a
    catalogue embedded with LiteRT."""
    pytest.importorskip("ai_edge_litert")
    tflite = shipped_model_path(suffix=".tflite")
    with CatalogStore(catalogue_copy) as store:
        litert = embedder_for(store, tflite)
        try:
            assert litert.model_path == tflite and litert.dim == 1280
            with pytest.raises(ModelMismatchError, match="embedded with"):
                Recognizer.from_store(store, litert)
        finally:
            litert.close()
