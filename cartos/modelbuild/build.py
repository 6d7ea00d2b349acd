"""``cartos model build``: export, quantise, measure, and write the model card.

The card records how faithful INT8 is to FP32 on the calibration images
(embedding cosine and ImageNet top-1 agreement through the original classifier
head) and how fast each runs here, so a cart never runs a model whose
quality is undocumented.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cartos.inference.cpu_features import int8_kernels
from cartos.inference.model_card import ModelCard, card_path_for, sha256_file
from cartos.inference.preprocess import InputSpec, decode_image, to_tensor
from cartos.modelbuild.errors import ModelBuildError
from cartos.modelbuild.export import Backbone, export_fp32, load_backbone
from cartos.modelbuild.quantize import quantize_int8


@dataclass
class BuildResult:
    int8_path: Path
    fp32_path: Path | None
    card: ModelCard


def ort_session(path: Path, exact: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def embed_tensors(sess: ort.InferenceSession, batch: np.ndarray, bs: int = 8) -> np.ndarray:
    return np.concatenate(
        [sess.run(None, {"image": batch[i : i + bs]})[0] for i in range(0, len(batch), bs)]
    )


def throughput(sess: ort.InferenceSession, batch: np.ndarray, seconds: float = 2.0) -> float:
    """Images per second for repeated runs of ``batch`` (after one warm-up run)."""
    sess.run(None, {"image": batch})
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, {"image": batch})
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def agreement(
    fp32: np.ndarray, int8: np.ndarray, backbone: Backbone | None = None
) -> dict[str, float]:
    """FP32 vs INT8: embedding cosine, retrieval top-1 and ImageNet top-1 agreement.

    ImageNet top-1 agreement is reported for completeness but is a weak signal
    on product crops: the 1000-class head is rarely confident on them, so
    near-ties flip under tiny perturbations that do not move retrieval.
    """
    a = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    b = int8 / np.linalg.norm(int8, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    out = {
        "cosine_mean": float(cos.mean()),
        "cosine_p01": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
        "images": float(len(cos)),
    }
    # Retrieval is what recognition does: does each image keep its nearest
    # neighbour (leave-one-out) among the other images after quantisation?
    sim_a, sim_b = a @ a.T, b @ b.T
    np.fill_diagonal(sim_a, -np.inf)
    np.fill_diagonal(sim_b, -np.inf)
    out["retrieval_top1_agreement"] = float((sim_a.argmax(1) == sim_b.argmax(1)).mean())
    if backbone is not None:
        w, bias = backbone.classifier_weight, backbone.classifier_bias
        top_a = (fp32 @ w.T + bias).argmax(axis=1)
        top_b = (int8 @ w.T + bias).argmax(axis=1)
        out["imagenet_top1_agreement"] = float((top_a == top_b).mean())
    return out


def build_model(
    out_dir: Path,
    calibration_images: Sequence[Path],
    variant: str = "lite0",
    name: str | None = None,
    keep_fp32: bool = True,
    calibration_method: str = "minmax",
) -> BuildResult:
    """Export, quantise and document one backbone variant into ``out_dir``."""
    if len(calibration_images) < 16:
        raise ModelBuildError("need at least 16 calibration images")
    backbone = load_backbone(variant)
    spec = InputSpec(size=backbone.input_size)
    name = name or f"efficientnet_{variant}_int8"
    out_dir.mkdir(parents=True, exist_ok=True)
    int8_path = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        fp32_tmp = Path(tmp) / "fp32.onnx"
        export_fp32(backbone, fp32_tmp)
        quant = quantize_int8(fp32_tmp, int8_path, calibration_images, spec, calibration_method)
        tensors = np.stack([to_tensor(decode_image(p), spec) for p in calibration_images])
        s32, s8 = ort_session(fp32_tmp), ort_session(int8_path)
        e32 = embed_tensors(s32, tensors)
        agree = agreement(e32, embed_tensors(s8, tensors), backbone)
        # The same QDQ graph evaluated exactly (no fused integer kernels): the
        # quantisation's own quality, independent of this CPU's INT8 instructions.
        exact = agreement(e32, embed_tensors(ort_session(int8_path, exact=True), tensors))
        agree["cosine_mean_exact"] = exact["cosine_mean"]
        agree["cosine_min_exact"] = exact["cosine_min"]
        agree["retrieval_top1_agreement_exact"] = exact["retrieval_top1_agreement"]
        latency: dict[str, object] = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "onnxruntime": ort.__version__,
            "int8_kernels": int8_kernels(),
        }
        for bs in (1, 8):
            f32 = throughput(s32, tensors[:bs])
            i8 = throughput(s8, tensors[:bs])
            latency[f"batch{bs}"] = latency_entry(f32, i8, bs)
        fp32_path: Path | None = None
        if keep_fp32:
            fp32_path = out_dir / f"{name.removesuffix('_int8')}_fp32.onnx"
            shutil.copyfile(fp32_tmp, fp32_path)
    card = write_card(
        int8_path, name, variant, spec, backbone, quant, agree, latency,
        source={"weights": Path(backbone.weights_file).name, "variant": variant},
    )
    return BuildResult(int8_path=int8_path, fp32_path=fp32_path, card=card)


def latency_entry(fp32_per_s: float, int8_per_s: float, batch: int) -> dict[str, float]:
    """One batch size's throughput comparison, as every model card records it."""
    return {
        "fp32_images_per_s": round(fp32_per_s, 1),
        "int8_images_per_s": round(int8_per_s, 1),
        "int8_speedup": round(int8_per_s / fp32_per_s, 2),
        "int8_ms_per_batch": round(1000 * batch / int8_per_s, 2),
    }


def write_card(
    int8_path: Path,
    name: str,
    variant: str,
    spec: InputSpec,
    backbone: Backbone,
    quant: dict[str, object],
    agree: dict[str, Any],
    latency: dict[str, object],
    source: dict[str, str],
    **io_names: str,
) -> ModelCard:
    """Describe a built INT8 model next to it (``<model>.card.json`` convention)."""
    card = ModelCard(
        name=name,
        file=int8_path.name,
        sha256=sha256_file(int8_path),
        file_size=int8_path.stat().st_size,
        architecture=f"efficientnet-{variant} (ImageNet), pooled embedding",
        precision="int8",
        input_size=spec.size,
        normalisation={
            "mean": list(spec.mean),
            "std": list(spec.std),
            "scale": "1/255",
            "colour": spec.colour,
            "layout": spec.layout,
            "resize": "stretch to square",
        },
        embedding_size=backbone.embedding_size,
        quantisation=quant,
        agreement=agree,
        latency=latency,
        source=source,
        **io_names,  # type: ignore[arg-type]
    )
    card_path_for(int8_path).write_text(card.to_json(), encoding="utf-8")
    return card
