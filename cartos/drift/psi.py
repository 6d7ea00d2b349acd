"""Population Stability Index: how far a window's distribution moved from a reference one.

PSI = Σ (pᵢ − qᵢ) · ln(pᵢ / qᵢ) over bins fixed by the reference window's quantiles, so each
reference bin holds the same share and a shift in any part of the distribution shows. Empty
bins get a small floor (``EPSILON``): without it one empty bin makes the index infinite. The
usual reading: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 a shift worth acting on.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from cartos.drift.errors import DriftError

EPSILON: Final = 1e-4
DEFAULT_BINS: Final = 10


def bin_edges(reference: npt.ArrayLike, bins: int = DEFAULT_BINS) -> npt.NDArray[np.float64]:
    """Inner edges at the reference's quantiles (``bins - 1`` of them, duplicates dropped:
    a feature that is often exactly the same value gets fewer, wider bins)."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < bins:
        raise DriftError(f"a reference window needs at least {bins} values, got {values.size}")
    inner = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def shares(values: npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Share of ``values`` in each bin the edges define (non-finite values are ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
    total = counts.sum()
    if total == 0:
        raise DriftError("a window with no finite value has no distribution")
    return np.asarray(counts / total, dtype=np.float64)


def psi(reference_shares: npt.NDArray[np.float64],
        window_shares: npt.NDArray[np.float64]) -> float:
    p = np.maximum(window_shares, EPSILON)
    q = np.maximum(reference_shares, EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))
