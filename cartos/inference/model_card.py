"""Model cards: the JSON that travels with every backbone file.

The card is the contract between the build machine and the cart: it pins the
file's sha256 and size, the input preprocessing and the embedding size, and
records how faithful the INT8 model is to its FP32 parent. The runtime refuses
a model whose bytes do not match its card.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cartos.inference.errors import ModelIntegrityError
from cartos.inference.preprocess import InputSpec

SHIPPED_MODEL_NAME = "efficientnet_lite0_int8"
ONNX_SUFFIX = ".onnx"
LITERT_SUFFIX = ".tflite"


@dataclass
class ModelCard:
    """Metadata describing one exported backbone file."""

    name: str
    file: str
    sha256: str
    file_size: int
    architecture: str
    precision: str
    input_size: int
    normalisation: dict[str, Any]
    embedding_size: int
    input_name: str = "image"
    output_name: str = "embedding"
    quantisation: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def input_spec(self) -> InputSpec:
        norm = self.normalisation
        return InputSpec(
            size=self.input_size,
            mean=tuple(norm["mean"]),  # type: ignore[arg-type]
            std=tuple(norm["std"]),  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelIntegrityError(f"{path}: unreadable model card ({exc})") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(model_path: Path) -> Path:
    """``m.onnx`` -> ``m.card.json``; other formats keep their suffix: ``m.tflite.card.json``.

    The ONNX and LiteRT exports of one backbone share a stem, so only one of
    them may own the bare ``<stem>.card.json``; ONNX had it first.
    """
    if model_path.suffix == ONNX_SUFFIX:
        return model_path.with_suffix(".card.json")
    return model_path.with_name(f"{model_path.name}.card.json")


def shipped_model_path(name: str = SHIPPED_MODEL_NAME, suffix: str = ONNX_SUFFIX) -> Path:
    """Location of a model shipped as package data (``suffix``: ``.onnx`` or ``.tflite``)."""
    return Path(str(resources.files("cartos.inference") / "models" / f"{name}{suffix}"))


def verify_model(model_path: Path, card: ModelCard | None = None) -> ModelCard:
    """Check a model file against its card; return the card.

    Size is compared before hashing so a truncated download fails fast.
    """
    if card is None:
        card = ModelCard.load(card_path_for(model_path))
    if not model_path.is_file():
        raise ModelIntegrityError(f"{model_path}: model file missing")
    size = model_path.stat().st_size
    if size != card.file_size:
        raise ModelIntegrityError(
            f"{model_path}: size {size} does not match card ({card.file_size})"
        )
    digest = sha256_file(model_path)
    if digest != card.sha256:
        raise ModelIntegrityError(f"{model_path}: sha256 {digest} does not match card")
    return card
