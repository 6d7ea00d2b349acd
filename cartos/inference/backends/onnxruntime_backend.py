"""ONNX Runtime backend: the default on x86 and ARM carts (CPU provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from cartos.inference.backend import BackendOptions, InferenceBackend, register
from cartos.inference.errors import ModelIntegrityError


@register
class OnnxRuntimeBackend(InferenceBackend):
    """CPU inference through an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if options.threads > 0:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if options.spin_wait else "0"
        )
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types
            raise ModelIntegrityError(f"{model_path}: ONNX Runtime cannot load it ({exc})") from exc
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        self._input = inp.name
        self._output = out.name
        dim = out.shape[-1]
        if not isinstance(dim, int):
            raise ModelIntegrityError(f"{model_path}: embedding size is not static ({dim})")
        self._dim = dim

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run([self._output], {self._input: batch.astype(np.float32, copy=False)})
        return np.asarray(out[0], dtype=np.float32)

    @property
    def output_dim(self) -> int:
        return self._dim
