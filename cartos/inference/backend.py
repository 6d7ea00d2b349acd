"""The small interface every inference backend implements, and its registry.

Backends live one per file in ``cartos/inference/backends/`` and register
themselves on import. A backend whose runtime library is not installed (say
LiteRT on an x86 dev box) is skipped with a log line instead of crashing the
process, so one package serves every device profile.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cartos.inference.errors import BackendUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendOptions:
    """Runtime knobs a device profile may set."""

    threads: int = 0  # 0 = let the runtime choose
    allow_fallback: bool = True
    spin_wait: bool = False
    """Idle intra-op threads busy-wait for work. Off by default: on a cart the cores are
    shared with the camera, change detection and fusion, and a spinning pool takes them."""


class InferenceBackend(ABC):
    """Runs one model file: NCHW float32 batch in, (N, D) float32 embeddings out."""

    name: str = "abstract"

    @abstractmethod
    def __init__(self, model_path: Path, options: BackendOptions) -> None: ...

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch shaped (N, 3, H, W)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Embedding size the model produces."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release the runtime session (default: nothing to release)."""


BackendFactory = Callable[[Path, BackendOptions], InferenceBackend]
_REGISTRY: dict[str, type[InferenceBackend]] = {}
_SKIPPED: dict[str, str] = {}
_discovered = False


def register(cls: type[InferenceBackend]) -> type[InferenceBackend]:
    """Class decorator: make a backend available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def discover() -> None:
    """Import every module in ``cartos.inference.backends`` once.

    Import failures of optional runtimes are expected on some devices; they
    are remembered and logged, never raised here.
    """
    global _discovered
    if _discovered:
        return
    from cartos.inference import backends as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        module = f"{pkg.__name__}.{info.name}"
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _SKIPPED[info.name] = str(exc)
            log.info("inference backend %s skipped: %s", info.name, exc)
    _discovered = True


def available() -> list[str]:
    discover()
    return sorted(_REGISTRY)


def skipped() -> dict[str, str]:
    discover()
    return dict(_SKIPPED)


def create(name: str, model_path: Path, options: BackendOptions | None = None) -> InferenceBackend:
    """Instantiate backend ``name`` for ``model_path``."""
    discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        why = _SKIPPED.get(name)
        detail = f" (not installed: {why})" if why else ""
        raise BackendUnavailableError(
            f"inference backend {name!r} unavailable{detail}; available: {available()}"
        )
    return cls(model_path, options or BackendOptions())
