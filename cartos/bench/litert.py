"""``cartos bench litert``: the shipped LiteRT INT8 model against the ONNX Runtime INT8 model.

A device profile may move a cart from ONNX Runtime to LiteRT. That is safe only
if both shipped models put a crop at nearly the same place in embedding space
(a catalogue enrolled on one is queried on the other), and worth it only if
LiteRT is not slower. This bench measures both on real GroZi-120 query crops:
embedding cosine between the formats (and against the FP32 torch parent when
the build extra is installed), and per-image latency through the registry
backends in interleaved rounds, so background load hits both alike.

The ONNX model is embedded twice. As the runtime runs it, QDQ pairs are fused
into integer kernels whose accuracy depends on the CPU: without VNNI, x86
kernels multiply u8 by s8 with 16-bit intermediate sums that can saturate. As
written (graph optimisations off), every QDQ pair is evaluated exactly, which
is the quantised model itself and the reference the LiteRT model is held to.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cartos.bench.data import load_rows
from cartos.inference.backend import BackendOptions, InferenceBackend, create
from cartos.inference.model_card import LITERT_SUFFIX, shipped_model_path, verify_model
from cartos.inference.preprocess import decode_image, to_tensor

LogFn = Callable[[str], None]


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two embedding sets: mean, 1st percentile and minimum."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_p01": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
    }


def embed(backend: InferenceBackend, tensors: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate(
        [backend.run(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
    )


def onnx_as_written(model_path: Path, tensors: np.ndarray, batch: int = 8) -> np.ndarray:
    """Embeddings of a QDQ model with every quantise/dequantise evaluated as written."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    parts = [
        session.run(None, {name: tensors[i : i + batch]})[0] for i in range(0, len(tensors), batch)
    ]
    return np.asarray(np.concatenate(parts), dtype=np.float32)


def _torch_fp32(tensors: np.ndarray, log: LogFn) -> np.ndarray | None:
    try:
        import torch

        from cartos.modelbuild.export import load_backbone

        backbone = load_backbone("lite0")
    except Exception as exc:  # build extra missing
        log(f"FP32 comparison skipped: {exc}")
        return None
    with torch.no_grad():
        parts = [
            backbone.module(torch.from_numpy(tensors[i : i + 8])).numpy()
            for i in range(0, len(tensors), 8)
        ]
    return np.asarray(np.concatenate(parts), dtype=np.float32)


def latency_side_by_side(
    models: dict[str, tuple[str, Path]],
    images: np.ndarray,
    threads: int,
    batch_sizes: Sequence[int] = (1, 8),
    rounds: int = 7,
    seconds: float = 1.5,
) -> dict[str, Any]:
    """Milliseconds per image for each ``name -> (backend, model)``, interleaved rounds."""
    backends = {
        name: create(kind, path, BackendOptions(threads=threads))
        for name, (kind, path) in models.items()
    }
    out: dict[str, Any] = {}
    try:
        for bs in batch_sizes:
            batch = images[:bs]
            ms: dict[str, list[float]] = {name: [] for name in backends}
            for backend in backends.values():
                backend.run(batch)  # warm-up (and, for LiteRT, the resize to this batch)
            for _ in range(rounds):
                for name, backend in backends.items():
                    runs = 0
                    start = time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        backend.run(batch)
                        runs += 1
                    ms[name].append(1000 * (time.perf_counter() - start) / (runs * bs))
            out[f"batch{bs}"] = {
                name: {
                    "ms_per_image_median": round(float(np.median(v)), 2),
                    "ms_per_image_best": round(float(np.min(v)), 2),
                }
                for name, v in ms.items()
            }
    finally:
        for backend in backends.values():
            backend.close()
    return out


def run(
    n_images: int = 512,
    rounds: int = 7,
    seconds: float = 1.5,
    threads: Sequence[int] = (1, 2),
    log: LogFn = print,
) -> dict[str, Any]:
    """Agreement on ``n_images`` GroZi-120 query crops, then latency at each thread count."""
    onnx_path = shipped_model_path()
    litert_path = shipped_model_path(suffix=LITERT_SUFFIX)
    spec = verify_model(onnx_path).input_spec
    if verify_model(litert_path).input_spec != spec:
        raise ValueError("the ONNX and LiteRT models expect different preprocessing")
    queries = [r.image for r in load_rows("grozi120") if r.split == "query"]
    step = max(1, len(queries) // n_images)
    picked = queries[::step][:n_images]
    log(f"embedding {len(picked)} GroZi-120 query crops with both models")
    tensors = np.stack([to_tensor(decode_image(p), spec) for p in picked])
    litert = create("litert", litert_path)
    onnx_runtime = create("onnxruntime", onnx_path)
    lite = embed(litert, tensors)
    ort_fused = embed(onnx_runtime, tensors)
    litert.close()
    onnx_runtime.close()
    ort_written = onnx_as_written(onnx_path, tensors)
    agreement: dict[str, Any] = {
        "images": len(picked),
        "litert_vs_onnx_as_written": cosine_stats(lite, ort_written),
        "litert_vs_onnxruntime_backend": cosine_stats(lite, ort_fused),
        "onnx_as_written_vs_onnxruntime_backend": cosine_stats(ort_written, ort_fused),
    }
    fp32 = _torch_fp32(tensors, log)
    if fp32 is not None:
        agreement["litert_vs_fp32"] = cosine_stats(lite, fp32)
        agreement["onnx_as_written_vs_fp32"] = cosine_stats(ort_written, fp32)
        agreement["onnxruntime_backend_vs_fp32"] = cosine_stats(ort_fused, fp32)
    models = {
        "onnxruntime_int8": ("onnxruntime", onnx_path),
        "litert_int8": ("litert", litert_path),
    }
    latency = {}
    for t in threads:
        log(f"latency with {t} thread(s)")
        latency[f"threads{t}"] = latency_side_by_side(
            models, tensors, t, rounds=rounds, seconds=seconds
        )
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "versions": {"onnxruntime": ort.__version__, "litert": _litert_version()},
        "agreement": agreement,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "latency": latency,
    }


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for package in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            continue
    return "unknown"
