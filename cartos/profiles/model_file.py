"""Which model file a profile runs, and whether it is there and intact.

A profile normally names no model: the backend and variant pick the packaged file by the naming
convention ``efficientnet_<variant>_int8.<onnx|tflite>`` next to the shipped ONNX model. Only the
lite0 ONNX model ships with every install; other variants and formats are built on a build machine
first, so a missing file is reported with the command that makes it.
"""

from __future__ import annotations

from pathlib import Path

from cartos.inference.errors import InferenceError
from cartos.inference.model_card import ModelCard, card_path_for, shipped_model_path, verify_model
from cartos.profiles.errors import ProfileError
from cartos.profiles.loader import display_path
from cartos.profiles.schema import MODEL_SUFFIX, InferenceConfig


def packaged_model_name(variant: str) -> str:
    """Stem of the packaged model for a backbone variant."""
    return f"efficientnet_{variant}_int8"


def model_file_for(inference: InferenceConfig) -> Path:
    """The model file the profile's inference section selects (it may not exist yet)."""
    if inference.model is not None:
        return inference.model
    onnx = shipped_model_path(packaged_model_name(inference.variant))
    return onnx.with_suffix(MODEL_SUFFIX[inference.backend])


def verified_model(inference: InferenceConfig) -> tuple[Path, ModelCard]:
    """The selected model file and its card, after checking sha256, size and variant.

    Raises ProfileError naming the file and, when it is a packaged model that was never built,
    the command that builds it.
    """
    path = model_file_for(inference)
    if not path.is_file():
        hint = ""
        if inference.model is None:
            fmt = " (LiteRT .tflite export)" if inference.backend == "litert" else ""
            hint = (
                f"; build it on a build machine with `cartos model build --variant "
                f"{inference.variant} --calibration IMAGES …`{fmt}, or set inference.model"
            )
        raise ProfileError(
            f"model file {display_path(path)} for backend {inference.backend!r}, variant "
            f"{inference.variant!r} does not exist{hint}"
        )
    if not card_path_for(path).is_file():
        raise ProfileError(
            f"model file {display_path(path)} has no model card "
            f"({display_path(card_path_for(path))}); the runtime refuses unverified models"
        )
    try:
        card = verify_model(path)
    except InferenceError as exc:
        raise ProfileError(str(exc)) from exc
    card_variant = card.source.get("variant")
    if card_variant is not None and card_variant != inference.variant:
        raise ProfileError(
            f"model {display_path(path)} is a {card_variant} backbone but the profile says "
            f"variant {inference.variant!r}"
        )
    return path, card
