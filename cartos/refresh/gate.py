"""The validation gate: a refreshed backbone ships only if it is better and breaks nothing.

"Better on average" is not enough for a cart. A refresh trained on this month's images
can lift top-1 while one high-value SKU collapses, the confidence stops meaning what the
thresholds assume, or the open-set score flattens; and an INT8 export can disagree with
its own FP32 parent. Each rule below catches one of these, and a rejected refresh lists
every rule it failed, with the numbers, so an operator can see why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cartos.refresh.score import ModelScore


@dataclass(frozen=True)
class GateSettings:
    """What a candidate must show; every number is a share (0.01 = one point)."""

    min_top1_gain: float = 0.0
    """On the historical set the candidate's top-1 must exceed the current one's by more."""
    max_recent_top1_drop: float = 0.01
    """On the recent slice it may not fall by more than this."""
    max_accept_precision_drop: float = 0.005
    max_unknown_auroc_drop: float = 0.02
    max_ece: float = 0.05
    """ECE above this is refused unless the current model's is no better."""
    protected_skus: Sequence[str] = ()
    """High-value SKUs: none may lose more than ``max_protected_drop`` of top-1."""
    max_protected_drop: float = 0.05
    min_int8_agreement: float = 0.99
    """Top-1 agreement of the INT8 export with its FP32 parent."""


@dataclass(frozen=True)
class GateVerdict:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    """One line per failed rule; empty when accepted."""
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "better on every rule"


def _pts(value: float) -> str:
    return f"{100 * value:.1f} %"


def judge(
    current: Mapping[str, ModelScore],
    candidate: Mapping[str, ModelScore],
    settings: GateSettings,
    int8_agreement: float | None = None,
) -> GateVerdict:
    """Compare two models on the same named test sets (``historical``, optionally ``recent``).

    ``int8_agreement`` is the candidate export's INT8-vs-FP32 top-1 agreement; None when
    the candidate is not an INT8 export (then the rule does not apply).
    """
    reasons: list[str] = []
    old, new = current["historical"], candidate["historical"]
    if not new.top1 > old.top1 + settings.min_top1_gain:
        reasons.append(f"historical top-1 {_pts(new.top1)} does not beat the current "
                       f"{_pts(old.top1)}")
    if "recent" in current and "recent" in candidate:
        drop = current["recent"].top1 - candidate["recent"].top1
        if drop > settings.max_recent_top1_drop:
            reasons.append(f"recent top-1 falls {_pts(drop)} ({_pts(current['recent'].top1)} "
                           f"-> {_pts(candidate['recent'].top1)})")
    if old.accept_precision is not None:
        new_precision = new.accept_precision if new.accept_precision is not None else 1.0
        if old.accept_precision - new_precision > settings.max_accept_precision_drop:
            reasons.append(f"accept precision falls from {_pts(old.accept_precision)} to "
                           f"{_pts(new_precision)}")
    if (
        old.unknown_auroc is not None
        and new.unknown_auroc is not None
        and old.unknown_auroc - new.unknown_auroc > settings.max_unknown_auroc_drop
    ):
        reasons.append(f"unknown AUROC falls from {old.unknown_auroc:.3f} to "
                           f"{new.unknown_auroc:.3f}")
    if new.ece > max(settings.max_ece, old.ece):
        reasons.append(f"ECE {new.ece:.3f} above {max(settings.max_ece, old.ece):.3f}")
    for sku in settings.protected_skus:
        if sku in old.per_class and sku in new.per_class:
            drop = old.per_class[sku] - new.per_class[sku]
            if drop > settings.max_protected_drop:
                reasons.append(f"protected SKU {sku} falls {_pts(drop)} "
                               f"({_pts(old.per_class[sku])} -> {_pts(new.per_class[sku])})")
    if int8_agreement is not None and int8_agreement < settings.min_int8_agreement:
        reasons.append(f"INT8 agrees with its FP32 parent on {_pts(int8_agreement)} of top-1 "
                       f"answers, below {_pts(settings.min_int8_agreement)}")
    numbers = {
        "current": {name: _summary(s) for name, s in current.items()},
        "candidate": {name: _summary(s) for name, s in candidate.items()},
        "int8_agreement": int8_agreement,
    }
    return GateVerdict(not reasons, reasons, numbers)


def _summary(s: ModelScore) -> dict[str, Any]:
    out = asdict(s)
    out.pop("per_class")
    return out
