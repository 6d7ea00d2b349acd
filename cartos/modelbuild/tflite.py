"""``cartos model build --format tflite``: the INT8 LiteRT model for ARM carts, with its card.

Build-time only (imports torch, litert-torch and ai-edge-quantizer). The path
is torch -> float ``.tflite`` -> static INT8 ``.tflite``:

* litert-torch converts the very module the ONNX export uses
  (:func:`cartos.modelbuild.export.load_backbone`), so both formats come from
  one set of weights and stop at the same pooled embedding. It needs no
  TensorFlow, unlike an ONNX -> TensorFlow -> LiteRT hop (onnx2tf), and runs
  with the build extra's pinned torch on a CPU-only machine.
* ai-edge-quantizer quantises the float model statically from the same
  calibration images, through the runtime preprocessing, with the ONNX
  build's recipe (:mod:`cartos.modelbuild.quantize`): per-channel symmetric
  INT8 weights, per-tensor INT8 activations from min/max calibration, and
  the stem, first MBConv block and 1x1 head kept in float. Keeping the same
  layers in float makes the two formats agree with each other, not only
  each with FP32, so a catalogue enrolled on one runtime still matches
  queries embedded on the other.
* The model's input and output stay float32 (quantise/dequantise happen
  inside the graph), so the backend contract is unchanged.

The card records FP32 agreement measured against the torch module itself and
LiteRT throughput of the FP32 and INT8 files on the build machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cartos.inference.backend import BackendOptions, InferenceBackend
from cartos.inference.model_card import LITERT_SUFFIX
from cartos.inference.preprocess import InputSpec, decode_image, to_tensor
from cartos.modelbuild.build import BuildResult, agreement, latency_entry, write_card
from cartos.modelbuild.errors import ModelBuildError
from cartos.modelbuild.export import Backbone, load_backbone
from cartos.modelbuild.quantize import ImageCalibrationReader

# Layers kept in float, as tensor-name patterns of the converted graph: litert-torch names each
# tensor after the torch modules that produced it. The same layers as quantize.KEEP_FLOAT.
FLOAT_SCOPES: tuple[str, ...] = ("__conv_stem", "MBConvBlock_0/", "__conv_head")
# Op types kept in float wherever they are: in this graph the only TRANSPOSEs are the NCHW<->NHWC
# shuffles at either end and the only MEAN is the global pool, which would otherwise squeeze the
# 1280-d embedding through one per-tensor INT8 scale.
FLOAT_OP_TYPES: tuple[str, ...] = ("TRANSPOSE", "MEAN")


def _import_build_module(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelBuildError(
            f"the LiteRT build needs {package}: pip install 'cartos[build]'"
        ) from exc


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def convert_fp32(backbone: Backbone, path: Path) -> None:
    """Write the FP32 embedding graph as ``.tflite`` (NCHW float input, batch 1, resizable)."""
    torch = _import_build_module("torch", "torch==2.13.0")
    litert_torch = _import_build_module("litert_torch", "litert-torch")
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = (torch.zeros(1, 3, backbone.input_size, backbone.input_size),)
    try:
        edge_model = litert_torch.convert(backbone.module.eval(), sample)
        edge_model.export(str(path))
    except Exception as exc:  # the converter raises many unrelated exception types
        raise ModelBuildError(f"litert-torch could not convert the backbone: {exc}") from exc


def _signature(model_path: Path) -> tuple[str, str, str]:
    """(signature key, input name, output name) of a single-signature model."""
    interpreter = _import_build_module("ai_edge_litert.interpreter", "ai-edge-litert")
    signatures = interpreter.Interpreter(model_path=str(model_path)).get_signature_list()
    if len(signatures) != 1:
        raise ModelBuildError(f"{model_path}: expected one signature, found {sorted(signatures)}")
    key, io = next(iter(signatures.items()))
    if len(io["inputs"]) != 1 or len(io["outputs"]) != 1:
        raise ModelBuildError(f"{model_path}: expected one input and one output ({io})")
    return str(key), str(io["inputs"][0]), str(io["outputs"][0])


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration_images: Sequence[Path],
    spec: InputSpec,
    float_scopes: Sequence[str] = FLOAT_SCOPES,
    float_op_types: Sequence[str] = FLOAT_OP_TYPES,
) -> dict[str, object]:
    """Static INT8 quantisation of ``fp32_path`` into ``int8_path``; settings for the card."""
    aeq = _import_build_module("ai_edge_quantizer", "ai-edge-quantizer")
    recipes = _import_build_module("ai_edge_quantizer.recipe_manager", "ai-edge-quantizer")
    qtyping = _import_build_module("ai_edge_quantizer.qtyping", "ai-edge-quantizer")
    op_name = qtyping.TFLOperationName
    no_quantize = "no_quantize"

    manager = recipes.RecipeManager()
    manager.add_static_config(".*", op_name.ALL_SUPPORTED, 8, 8)  # per-channel int8 weights
    for op in ("INPUT", "OUTPUT", *float_op_types):  # float32 model I/O, float pooling
        manager.add_quantization_config(".*", getattr(op_name, op), algorithm_key=no_quantize)
    if float_scopes:
        pattern = "|".join(re.escape(s) for s in float_scopes)
        manager.add_quantization_config(pattern, op_name.ALL_SUPPORTED, algorithm_key=no_quantize)

    key, input_name, _ = _signature(fp32_path)
    reader = ImageCalibrationReader(calibration_images, spec, input_name, batch=1)
    samples = list(iter(reader.get_next, None))
    if not samples:
        raise ModelBuildError("no calibration image could be decoded")
    quantizer = aeq.Quantizer(str(fp32_path), manager.get_quantization_recipe())
    with warnings.catch_warnings():
        # Calibration runs the interpreter with every intermediate tensor kept (it warns so).
        # EfficientNet-Lite has a few dead channels (weights ~1e-10) whose int32 bias saturates
        # ("invalid value encountered in cast"); their outputs are constant ReLU6(bias) ~ 0 and
        # the embedding cosine is unchanged to 4 decimals when those weights are lifted.
        warnings.filterwarnings("ignore", message=".*preserve_all_tensors", category=UserWarning)
        warnings.filterwarnings("ignore", message="invalid value encountered in cast")
        calibration = quantizer.calibrate({key: samples}, num_threads=os.cpu_count() or 1)
        result = quantizer.quantize(
            calibration, enable_progress_bar=False, enable_progress_report=False
        )
    if result.quantized_model is None:
        raise ModelBuildError("ai-edge-quantizer returned no model")
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    int8_path.write_bytes(bytes(result.quantized_model))
    return {
        "tool": f"ai_edge_quantizer {_version('ai-edge-quantizer')} (static, min/max)",
        "format": "TFLite INT8, float32 model input and output",
        "per_channel": True,
        "activation_type": "int8",
        "weight_type": "int8",
        "calibration_method": "minmax",
        "calibration_images": len(samples),
        "float_scopes": list(float_scopes),
        "float_op_types": list(float_op_types),
    }


def embed(backend: InferenceBackend, tensors: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate(
        [backend.run(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
    )


def throughput(backend: InferenceBackend, batch: np.ndarray, seconds: float = 2.0) -> float:
    """Images per second for repeated runs of ``batch`` (after one warm-up run)."""
    backend.run(batch)
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.run(batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def _torch_embed(backbone: Backbone, tensors: np.ndarray, batch: int = 8) -> np.ndarray:
    torch = _import_build_module("torch", "torch==2.13.0")
    with torch.no_grad():
        parts = [
            backbone.module(torch.from_numpy(tensors[i : i + batch])).numpy()
            for i in range(0, len(tensors), batch)
        ]
    return np.asarray(np.concatenate(parts), dtype=np.float32)


def build_tflite_model(
    out_dir: Path,
    calibration_images: Sequence[Path],
    variant: str = "lite0",
    name: str | None = None,
    keep_fp32: bool = False,
    calibration_method: str = "minmax",
    seconds: float = 2.0,
) -> BuildResult:
    """Convert, quantise and document one backbone variant as ``<name>.tflite`` in ``out_dir``.

    Same parameters as :func:`cartos.modelbuild.build.build_model`; activation ranges are
    min/max only. ``seconds`` is the length of each throughput measurement in the card.
    """
    from cartos.inference.backends.litert_backend import LiteRtBackend

    if calibration_method != "minmax":
        raise ModelBuildError(
            f"the LiteRT build calibrates by min/max only, not {calibration_method!r}"
        )
    if len(calibration_images) < 16:
        raise ModelBuildError("need at least 16 calibration images")
    backbone = load_backbone(variant)
    spec = InputSpec(size=backbone.input_size)
    name = name or f"efficientnet_{variant}_int8"
    out_dir.mkdir(parents=True, exist_ok=True)
    int8_path = out_dir / f"{name}{LITERT_SUFFIX}"
    options = BackendOptions()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_tmp = Path(tmp) / f"fp32{LITERT_SUFFIX}"
        convert_fp32(backbone, fp32_tmp)
        quant = quantize_int8(fp32_tmp, int8_path, calibration_images, spec)
        _, input_name, output_name = _signature(int8_path)
        tensors = np.stack([to_tensor(decode_image(p), spec) for p in calibration_images])
        fp32_model, int8_model = LiteRtBackend(fp32_tmp, options), LiteRtBackend(int8_path, options)
        agree = agreement(_torch_embed(backbone, tensors), embed(int8_model, tensors), backbone)
        latency: dict[str, object] = {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "litert": _version("ai-edge-litert"),
            "threads": options.threads or os.cpu_count(),
        }
        for bs in (1, 8):
            f32 = throughput(fp32_model, tensors[:bs], seconds)
            i8 = throughput(int8_model, tensors[:bs], seconds)
            latency[f"batch{bs}"] = latency_entry(f32, i8, bs)
        fp32_model.close()
        int8_model.close()
        fp32_path: Path | None = None
        if keep_fp32:
            fp32_path = out_dir / f"{name.removesuffix('_int8')}_fp32{LITERT_SUFFIX}"
            shutil.copyfile(fp32_tmp, fp32_path)
    card = write_card(
        int8_path, name, variant, spec, backbone, quant, {**agree, "reference": "torch fp32"},
        latency,
        source={
            "weights": Path(backbone.weights_file).name,
            "variant": variant,
            "converter": f"litert-torch {_version('litert-torch')}",
            "torch": _version("torch"),
        },
        input_name=input_name,
        output_name=output_name,
    )
    return BuildResult(int8_path=int8_path, fp32_path=fp32_path, card=card)
