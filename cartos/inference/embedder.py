"""Image crop → L2-normalised embedding, with optional test-time augmentation.

The embedder owns the backend session and the preprocessing named by the
model card, so the catalogue and the queries are always embedded the same way.
Its ``signature`` (model sha256 + views) is stored in the catalogue; a query
embedded under another signature would be compared in a different space.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cartos.inference import backend as backends
from cartos.inference.backend import BackendOptions
from cartos.inference.errors import ImageDecodeError
from cartos.inference.model_card import ModelCard, card_path_for, shipped_model_path, verify_model
from cartos.inference.preprocess import decode_image, hflip, to_tensor

View = Callable[[np.ndarray], np.ndarray]


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def _centre_crop(image: np.ndarray) -> np.ndarray:
    """Central 80 %: drops background and basket mesh at the crop border."""
    h, w = image.shape[:2]
    dy, dx = int(h * 0.1), int(w * 0.1)
    return image[dy : h - dy, dx : w - dx] if h - 2 * dy >= 8 and w - 2 * dx >= 8 else image


VIEWS: dict[str, View] = {"orig": _identity, "flip": hflip, "centre": _centre_crop}
DEFAULT_VIEWS: tuple[str, ...] = ("orig", "flip")


@dataclass
class EmbedResult:
    """Embeddings for the images that decoded, and errors for those that did not."""

    vectors: np.ndarray
    ok_index: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


class Embedder:
    """Backbone session + preprocessing + test-time views."""

    def __init__(
        self,
        model_path: Path | None = None,
        backend: str = "onnxruntime",
        options: BackendOptions | None = None,
        views: Sequence[str] = DEFAULT_VIEWS,
        batch_size: int = 8,
        verify: bool = True,
        card: ModelCard | None = None,
    ) -> None:
        self.model_path = model_path or shipped_model_path()
        if card is None:
            card_file = card_path_for(self.model_path)
            card = verify_model(self.model_path) if verify else ModelCard.load(card_file)
        elif verify:
            verify_model(self.model_path, card)
        self.card = card
        unknown = [v for v in views if v not in VIEWS]
        if unknown or not views:
            raise ValueError(f"unknown test-time views {unknown}; choose from {sorted(VIEWS)}")
        self.views = tuple(views)
        self.batch_size = max(1, batch_size)
        self.spec = self.card.input_spec
        self.backend = backends.create(backend, self.model_path, options)
        self.dim = self.backend.output_dim

    @property
    def signature(self) -> str:
        """Identifies the embedding space; catalogues and queries must agree on it."""
        return json.dumps({"model_sha256": self.card.sha256, "views": list(self.views)})

    def embed_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed decoded BGR images; returns (N, D) unit vectors (views averaged)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        tensors = [to_tensor(VIEWS[v](img), self.spec) for img in images for v in self.views]
        raw = np.concatenate(
            [
                self.backend.run(np.stack(tensors[i : i + self.batch_size * len(self.views)]))
                for i in range(0, len(tensors), self.batch_size * len(self.views))
            ]
        )
        per_view = l2_normalise(raw).reshape(len(images), len(self.views), self.dim)
        return l2_normalise(per_view.mean(axis=1))

    def embed_paths(self, paths: Sequence[str | Path | bytes]) -> EmbedResult:
        """Decode and embed; undecodable inputs are reported by index, never raised."""
        decoded: list[np.ndarray] = []
        result = EmbedResult(vectors=np.zeros((0, self.dim), dtype=np.float32))
        for i, p in enumerate(paths):
            try:
                decoded.append(decode_image(p))
                result.ok_index.append(i)
            except ImageDecodeError as exc:
                result.errors[i] = str(exc)
        result.vectors = self.embed_arrays(decoded)
        return result

    def close(self) -> None:
        self.backend.close()
