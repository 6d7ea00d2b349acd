"""Which backbone a catalogue was embedded with, and holding every later use to it.

A catalogue's prototypes and exemplars are points in one model's embedding space.
Scored against a query embedded by another model (a refreshed backbone, the LiteRT
export of the same one, other test-time views) they still produce numbers, just
meaningless ones: a silent failure. So the catalogue records the embedder's
signature (model sha256 + views) and where the model file is; writers refuse to mix
spaces, and a recogniser refuses to run against a catalogue of another space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cartos.catalog.store import CatalogStore
from cartos.inference.embedder import Embedder
from cartos.inference.errors import ModelMismatchError
from cartos.inference.model_card import ONNX_SUFFIX, card_path_for, shipped_model_path

SIGNATURE_KEY = "embedder_signature"
"""Catalogue meta: the :attr:`Embedder.signature` its vectors were made with."""
MODEL_KEY = "embedder_model"
"""Catalogue meta: ``{"sha256", "path"}`` of that model; path null for the shipped one."""
MODEL_SUFFIXES = (ONNX_SUFFIX, ".tflite")


def resolve_model(path: Path) -> Path:
    """A model file, or a model folder (``cartos model build/refresh --out``) holding one.

    A folder must hold exactly one model with its card, so that ``--model DIR`` can
    never pick one of two models by accident.
    """
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelMismatchError(f"{path}: no such model file or folder")
    found = sorted(
        p for p in path.iterdir()
        if p.suffix in MODEL_SUFFIXES and card_path_for(p).is_file()
    )
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ModelMismatchError(
            f"{path}: a model folder must hold exactly one model with its card (found {names})"
        )
    return found[0]


def record_model(store: CatalogStore, embedder: Embedder) -> None:
    """Note the embedder's space and model file; call inside the change that adds vectors."""
    store.meta_set(SIGNATURE_KEY, embedder.signature)
    shipped = embedder.model_path.resolve() == shipped_model_path().resolve()
    path = None if shipped else str(embedder.model_path.resolve())
    store.meta_set(MODEL_KEY, json.dumps({"sha256": embedder.card.sha256, "path": path},
                                         sort_keys=True))


def recorded_model(store: CatalogStore) -> Path | None:
    """The model file the catalogue was built with, None for the shipped model or if unknown."""
    text = store.meta_get(MODEL_KEY)
    if text is None:
        return None
    path = json.loads(text).get("path")
    return Path(path) if path else None


def embedder_for(store: CatalogStore, model: Path | None = None, **options: Any) -> Embedder:
    """The embedder to use with ``store``: ``model`` if given, else the one it was built with.

    A catalogue built with ``catalog import --model DIR`` keeps using that model in
    ``calibrate`` and ``recognize`` without being told again.
    """
    if model is not None:
        path: Path | None = resolve_model(model)
    else:
        path = recorded_model(store)
        if path is not None and not path.is_file():
            raise ModelMismatchError(
                f"{store.path}: the catalogue was built with {path}, which is gone; "
                "pass --model with that model, or rebuild the catalogue for another one"
            )
    if path is not None and path.suffix == ".tflite":
        options.setdefault("backend", "litert")  # the LiteRT export runs on LiteRT
    return Embedder(path, **options)


def signature_model_sha(store: CatalogStore) -> str | None:
    """sha256 of the model the catalogue's vectors came from, if it was recorded."""
    text = store.meta_get(SIGNATURE_KEY)
    if not text:
        return None
    try:
        sha = json.loads(text).get("model_sha256")
    except (ValueError, AttributeError):
        return None
    return str(sha) if sha else None


def _describe(signature: str) -> str:
    try:
        parsed = json.loads(signature)
        return f"model {str(parsed['model_sha256'])[:12]} with views {'+'.join(parsed['views'])}"
    except (ValueError, KeyError, TypeError):
        return signature


def check_signature(store: CatalogStore, embedder: Embedder) -> None:
    """Refuse to mix embeddings from different models or views in one catalogue."""
    stored = store.meta_get(SIGNATURE_KEY)
    if stored is not None and stored != embedder.signature:
        raise ModelMismatchError(
            f"{store.path}: the catalogue was embedded with {_describe(stored)}, this embedder "
            f"is {_describe(embedder.signature)}; their vectors cannot be compared. Use the "
            "model the catalogue was built with, or import into a new catalogue with "
            "`cartos catalog import MANIFEST --db NEW --model MODEL_DIR`"
        )
