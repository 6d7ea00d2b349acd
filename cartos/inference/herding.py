"""Herding: pick the few exemplars whose mean best stands in for all of them.

A SKU's prototype is the mean of its exemplars, so when a bounded memory must
drop some, the ones to keep are those whose mean stays closest to the mean of
everything seen. Herding (Welling 2009, as used for iCaRL's exemplar sets)
does this greedily: each step adds the candidate that brings the running mean
nearest the target, so its error falls like 1/k instead of the 1/sqrt(k) of a
random subset.

Greedy herding is myopic when ``k`` is close to ``n``, which is exactly the
case of a full memory that must drop one exemplar for a new one: it spends
its first picks on the points nearest the mean and is left with the outliers,
so dropping the *best* point to drop is out of reach, and it can do worse than
a random subset. The greedy picks are therefore refined by swaps (exchange a
kept and a dropped row while that brings the mean closer), which never makes
the error worse and makes the one-drop case exact.

Deterministic (ties go to the lowest index) and pure, arrays in and indices
out, so it can be tested on random clouds without a catalogue.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Swaps must gain at least this fraction of the residual's squared norm, so
# float noise cannot make two near-equal subsets swap back and forth forever.
_MIN_RELATIVE_GAIN = 1e-9


def herding_select(
    vectors: npt.ArrayLike,
    k: int,
    *,
    anchors: npt.ArrayLike | None = None,
    target: npt.ArrayLike | None = None,
    refine: bool = True,
) -> npt.NDArray[np.int64]:
    """Indices (ascending) of ``k`` rows of ``vectors`` whose mean best matches the target.

    The target is the mean of all rows together with ``anchors``, if given.
    ``anchors`` are rows kept whatever happens, such as a SKU's reference
    images: they count towards the kept mean from the start, so the picks make
    up for what the anchors alone get wrong. ``target`` replaces the default
    target, for a caller that remembers the mean of rows it no longer holds
    (a bounded memory that already evicted some). ``refine=False`` skips the swaps
    and returns plain greedy herding. With ``k`` at least the number of rows
    every index is returned.
    """
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    candidates = np.asarray(vectors, dtype=np.float64)
    if candidates.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (n, d) array, got shape {candidates.shape}")
    n, dim = candidates.shape
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    fixed = (
        np.zeros((0, dim), dtype=np.float64)
        if anchors is None
        else np.asarray(anchors, dtype=np.float64).reshape(-1, dim)
    )
    total = fixed.shape[0] + k
    # Work with sums: the kept set is right when its sum equals total * target.
    mean = (
        np.concatenate([fixed, candidates]).mean(axis=0)
        if target is None
        else np.asarray(target, dtype=np.float64).reshape(dim)
    )
    goal = mean * total
    chosen = _greedy(candidates, k, fixed.sum(axis=0), fixed.shape[0], mean)
    if refine:
        chosen = _refine_by_swaps(candidates, chosen, goal - fixed.sum(axis=0))
    return np.sort(chosen)


def _greedy(
    candidates: npt.NDArray[np.float64],
    k: int,
    running: npt.NDArray[np.float64],
    count: int,
    target: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Welling's herding: add the row that brings the running mean nearest ``target``."""
    running = running.copy()
    available = np.ones(candidates.shape[0], dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        gap = (running + candidates) / (count + step + 1) - target
        error = np.einsum("ij,ij->i", gap, gap)
        error[~available] = np.inf
        pick = int(np.argmin(error))
        chosen[step] = pick
        available[pick] = False
        running += candidates[pick]
    return chosen


def _refine_by_swaps(
    candidates: npt.NDArray[np.float64],
    chosen: npt.NDArray[np.int64],
    wanted_sum: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Best-improvement swaps between kept and dropped rows until none helps.

    With residual ``r = wanted_sum - sum(kept)``, swapping kept ``a`` for dropped
    ``b`` leaves ``|r + a - b|^2``; all pairs are scored at once per pass.
    """
    n = candidates.shape[0]
    kept = chosen.copy()
    for _ in range(n * len(kept)):  # each swap strictly lowers the error: bounded anyway
        dropped = np.setdiff1d(np.arange(n), kept)
        if dropped.size == 0:
            break
        residual = wanted_sum - candidates[kept].sum(axis=0)
        now = float(residual @ residual)
        out_rows = residual + candidates[kept]  # r + a, one row per kept a
        in_rows = candidates[dropped]
        after = (
            np.einsum("ij,ij->i", out_rows, out_rows)[:, None]
            - 2.0 * out_rows @ in_rows.T
            + np.einsum("ij,ij->i", in_rows, in_rows)[None, :]
        )
        best = int(np.argmin(after))
        i, j = divmod(best, dropped.size)
        if now - after[i, j] <= _MIN_RELATIVE_GAIN * max(now, 1e-300):
            break
        kept[i] = dropped[j]
    return kept


def mean_error(vectors: npt.ArrayLike, subset: npt.ArrayLike) -> float:
    """Distance between the mean of all rows and the mean of the rows in ``subset``."""
    rows = np.asarray(vectors, dtype=np.float64)
    picked = rows[np.asarray(subset, dtype=np.int64)]
    if picked.shape[0] == 0:
        raise ValueError("an empty subset has no mean")
    return float(np.linalg.norm(rows.mean(axis=0) - picked.mean(axis=0)))
