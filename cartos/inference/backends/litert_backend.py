"""LiteRT (formerly TensorFlow Lite) backend: the CPU runtime of choice on ARM carts.

On Cortex-A boards LiteRT's XNNPACK kernels run the INT8 backbone faster and
in less memory than ONNX Runtime, so ARM device profiles select it. The
backend keeps the registry's contract of every backend (float32 NCHW batch
in, (N, D) float32 embeddings out) whatever the ``.tflite`` file looks like
inside: channels-last inputs are transposed, full-integer inputs and outputs
are quantised and dequantised with the tensor's own scale and zero point, and
a model exported with a fixed batch is resized to the batch at hand, or fed
in chunks of its own batch when it cannot be resized.

The runtime comes from ``ai-edge-litert`` or, on boards with only the older
wheel, ``tflite-runtime``; with neither installed the import fails and the
registry skips this backend with a log line.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError as exc:
        raise ImportError(
            "LiteRT runtime missing: neither ai_edge_litert (pip install ai-edge-litert) "
            "nor tflite_runtime (pip install tflite-runtime) can be imported"
        ) from exc

from cartos.inference.backend import BackendOptions, InferenceBackend, register
from cartos.inference.errors import BackendUnavailableError, ModelIntegrityError

Layout = Literal["NCHW", "NHWC"]
_INTEGER_TYPES = (np.int8, np.uint8, np.int16)


def input_layout(shape: tuple[int, ...]) -> Layout:
    """Whether a 4-D image input is channels-first or channels-last (3 colour channels)."""
    if len(shape) != 4:
        raise ModelIntegrityError(f"model input is not a 4-D image batch: shape {list(shape)}")
    if shape[1] == 3:
        return "NCHW"
    if shape[3] == 3:
        return "NHWC"
    raise ModelIntegrityError(f"model input has no 3-channel axis: shape {list(shape)}")


@dataclass(frozen=True)
class TensorQuantisation:
    """Affine quantisation of one model input or output (``real = scale * (q - zero_point)``).

    A float tensor has ``dtype`` float32 and nothing to convert.
    """

    dtype: np.dtype[Any]
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorQuantisation:
        dtype = np.dtype(details["dtype"])
        if dtype == np.float32:
            return cls(dtype)
        if dtype not in [np.dtype(t) for t in _INTEGER_TYPES]:
            raise ModelIntegrityError(f"tensor {details['name']!r}: unsupported type {dtype}")
        params = details.get("quantization_parameters", {})
        scales = np.asarray(params.get("scales", []), dtype=np.float64)
        if scales.size > 1:
            raise ModelIntegrityError(
                f"tensor {details['name']!r}: per-channel quantised model inputs and outputs "
                "are not supported"
            )
        scale, zero_point = details["quantization"]
        if not scale > 0:
            raise ModelIntegrityError(f"tensor {details['name']!r}: {dtype} without a scale")
        return cls(dtype, float(scale), int(zero_point))

    @property
    def is_float(self) -> bool:
        return self.dtype == np.float32

    def quantise(self, values: np.ndarray) -> np.ndarray:
        """Float values to the tensor's type (round to nearest, saturate at its range)."""
        if self.is_float:
            return np.asarray(values, dtype=np.float32)
        info = np.iinfo(self.dtype)
        q = np.rint(np.asarray(values, dtype=np.float32) / np.float32(self.scale))
        q += self.zero_point
        return np.asarray(np.clip(q, info.min, info.max), dtype=self.dtype)

    def dequantise(self, values: np.ndarray) -> np.ndarray:
        if self.is_float:
            return np.asarray(values, dtype=np.float32)
        real = (np.asarray(values, dtype=np.float32) - np.float32(self.zero_point)) * np.float32(
            self.scale
        )
        return np.asarray(real, dtype=np.float32)


def default_threads() -> int:
    """Threads for ``BackendOptions.threads == 0``: every core, as ONNX Runtime does.

    LiteRT's own default is a single thread, which would make switching a profile from
    ONNX Runtime to LiteRT silently several times slower on a four-core board.
    """
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on, not all of them
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@register
class LiteRtBackend(InferenceBackend):
    """CPU inference through a LiteRT ``Interpreter`` (XNNPACK kernels)."""

    name = "litert"

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        threads = options.threads if options.threads > 0 else default_threads()
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelIntegrityError(f"{model_path}: LiteRT cannot load it ({exc})") from exc
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelIntegrityError(
                f"{model_path}: expected one input and one output, "
                f"found {len(inputs)} and {len(outputs)}"
            )
        self._path = model_path
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])
        self._input_shape = tuple(int(d) for d in inputs[0]["shape"])
        self._layout = input_layout(self._input_shape)
        self._input_q = TensorQuantisation.from_details(inputs[0])
        self._output_q = TensorQuantisation.from_details(outputs[0])
        out_shape = [int(d) for d in outputs[0]["shape"]]
        if len(out_shape) < 2 or out_shape[-1] <= 0:
            raise ModelIntegrityError(f"{model_path}: output is not an embedding ({out_shape})")
        self._dim = out_shape[-1]
        self._model_batch = self._input_shape[0]
        self._batch = self._model_batch
        self._resizable = True
        self._lock = threading.Lock()  # one Interpreter must not run two batches at once

    @property
    def output_dim(self) -> int:
        return self._dim

    @property
    def layout(self) -> Layout:
        """Layout of the model's own input; ``run`` always takes NCHW."""
        return self._layout

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        expected = self._nchw_image_shape()
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"expected a (N, {shape}) float32 batch, got {x.shape}")
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            if self._interpreter is None:
                raise BackendUnavailableError(f"LiteRT backend for {self._path} was closed")
            if self._resize_to(n):
                return self._invoke(x)
            return self._run_in_model_batches(x)

    def close(self) -> None:
        with self._lock:
            self._interpreter = None

    def _nchw_image_shape(self) -> tuple[int, int, int]:
        _, a, b, c = self._input_shape
        return (a, b, c) if self._layout == "NCHW" else (c, a, b)

    def _model_input_shape(self, n: int) -> list[int]:
        return [n, *self._input_shape[1:]]

    def _resize_to(self, n: int) -> bool:
        """Make the interpreter take ``n`` images at once; False where the graph cannot."""
        if n == self._batch:
            return True
        if not self._resizable:
            return False
        try:
            self._interpreter.resize_tensor_input(self._input_index, self._model_input_shape(n))
            self._interpreter.allocate_tensors()
            out_shape = self._interpreter.get_output_details()[0]["shape"]
            resized = int(out_shape[0]) == n
        except (ValueError, RuntimeError):
            resized = False
        if resized:
            self._batch = n
            return True
        # A graph with the batch baked into a reshape: go back to its own batch for good.
        self._resizable = False
        self._interpreter.resize_tensor_input(
            self._input_index, self._model_input_shape(self._model_batch)
        )
        self._interpreter.allocate_tensors()
        self._batch = self._model_batch
        return False

    def _run_in_model_batches(self, x: np.ndarray) -> np.ndarray:
        """Chunks of the model's fixed batch, the last one padded with zeros."""
        size = self._model_batch
        parts = []
        for start in range(0, x.shape[0], size):
            chunk = x[start : start + size]
            real = chunk.shape[0]
            if real < size:
                pad = np.zeros((size - real, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            parts.append(self._invoke(chunk)[:real])
        return np.concatenate(parts)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if self._layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        tensor = np.ascontiguousarray(self._input_q.quantise(x))
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        out = self._output_q.dequantise(self._interpreter.get_tensor(self._output_index))
        return out.reshape(x.shape[0], self._dim)
