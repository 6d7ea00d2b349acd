"""Canary rollout: a release goes to a few carts first, and is halted automatically on regressions.

What a release can break is the carts' recognition, and the carts report both
symptoms the hub can see without trusting anything but their own signed-off
behaviour:

* **a failed install**: a canary cart's retained state says its last bundle of
  the candidate's version was ``rolled_back`` (its health check refused the
  new catalogue), ``unhealthy`` or ``failed``;
* **more shoppers correcting the cart**: the share of item events that are
  corrections on canary carts, since the candidate went out, above the share
  on the other carts by more than ``max_correction_increase`` (once the canary
  carts have seen ``min_events`` events).

Either one halts the candidate (:meth:`cartos.hub.release.Releaser.halt`): the
manifest goes back to the stable release only, canary carts are told to roll
back, and no release goes out until an operator resumes. A candidate that the
canary carts adopted and that survived ``soak_s`` without either symptom is
promoted to every cart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

BAD_OUTCOMES = frozenset({"rolled_back", "unhealthy", "failed"})


@dataclass(frozen=True)
class CanaryPolicy:
    carts: tuple[str, ...] = ()
    """Explicit canary carts; empty: ``fraction`` of the carts the hub knows."""
    fraction: float = 0.1
    min_carts: int = 1
    soak_s: float = 600.0
    """How long the candidate must run on the canary carts before promotion."""
    min_adopted: float = 0.5
    """Share of canary carts that must hold the candidate before it can be promoted."""
    min_events: int = 50
    max_correction_increase: float = 0.05
    """Halt when canary carts' correction share exceeds the others' by more than this."""

    def choose(self, known: Iterable[str]) -> list[str]:
        """The canary carts: the explicit list, or a stable pseudo-random share (by hash, so
        the same carts are chosen every time and a cart's turn does not depend on timing)."""
        if self.carts:
            return sorted(self.carts)
        ranked = sorted(set(known), key=lambda c: hashlib.sha256(c.encode()).hexdigest())
        n = max(self.min_carts, round(self.fraction * len(ranked)))
        return sorted(ranked[:n])


@dataclass
class Activity:
    """Item events and corrections per cart committed since the candidate went out."""

    events: dict[str, int] = field(default_factory=dict)
    corrections: dict[str, int] = field(default_factory=dict)

    def count(self, cart: str, stream: str) -> None:
        if stream == "events":
            self.events[cart] = self.events.get(cart, 0) + 1
        elif stream == "corrections":
            self.corrections[cart] = self.corrections.get(cart, 0) + 1

    def share(self, carts: Iterable[str], *, exclude: bool = False) -> tuple[float, int]:
        """Correction share and event count of ``carts`` (or of every other cart)."""
        chosen = set(carts)
        keys = set(self.events) | set(self.corrections)
        group = [c for c in keys if (c in chosen) != exclude]
        corrections = sum(self.corrections.get(c, 0) for c in group)
        total = corrections + sum(self.events.get(c, 0) for c in group)
        return (corrections / total if total else 0.0), total


@dataclass(frozen=True)
class Verdict:
    action: Literal["wait", "promote", "halt"]
    reason: str = ""


def evaluate(policy: CanaryPolicy, candidate: Mapping[str, Any],
             states: Mapping[str, Mapping[str, Any]], activity: Activity,
             now: float) -> Verdict:
    """What to do with the candidate ``{"version", "carts", "started_at"}`` now."""
    version, carts = int(candidate["version"]), list(candidate["carts"])
    adopted = 0
    for cart in carts:
        state = states.get(cart) or {}
        last = state.get("last_bundle") or {}
        if (last.get("type") == "catalogue" and last.get("version") == version
                and last.get("status") in BAD_OUTCOMES):
            return Verdict("halt", f"{cart}: {last.get('status')} ({last.get('reason')})")
        held = [b for b in state.get("bundles") or [] if b.get("type") == "catalogue"]
        adopted += any(int(b.get("version", 0)) >= version for b in held)
    canary_share, canary_events = activity.share(carts)
    control_share, _ = activity.share(carts, exclude=True)
    if (canary_events >= policy.min_events
            and canary_share - control_share > policy.max_correction_increase):
        return Verdict("halt", f"correction share {canary_share:.1%} on canary carts vs "
                               f"{control_share:.1%} on the others")
    soaked = now - float(candidate["started_at"]) >= policy.soak_s
    if soaked and adopted >= policy.min_adopted * len(carts):
        return Verdict("promote", f"{adopted}/{len(carts)} canary carts ran it for "
                                  f"{policy.soak_s:.0f} s")
    return Verdict("wait", f"{adopted}/{len(carts)} adopted")
