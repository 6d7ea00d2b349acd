"""The canary verdict: promote what canary carts ran cleanly, halt on a failed install or on
more corrections than the rest of the fleet."""

from __future__ import annotations

from typing import Any

from cartos.hub.canary import Activity, CanaryPolicy, evaluate

CANDIDATE = {"version": 7, "carts": ["c1", "c2"], "started_at": 1000.0}
POLICY = CanaryPolicy(soak_s=60, min_events=20, max_correction_increase=0.05)


def _state(version: int, last: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"bundles": [{"type": "catalogue", "version": version}]}
    if last is not None:
        state["last_bundle"] = last
    return state


def _activity(canary: tuple[int, int], control: tuple[int, int]) -> Activity:
    """(events, corrections) on canary carts and on the others."""
    act = Activity()
    act.events = {"c1": canary[0], "x1": control[0]}
    act.corrections = {"c1": canary[1], "x1": control[1]}
    return act


def test_promoted_after_the_soak_once_canary_carts_adopted_it() -> None:
    states = {"c1": _state(7), "c2": _state(7)}
    assert evaluate(POLICY, CANDIDATE, states, Activity(), 1030.0).action == "wait"
    assert evaluate(POLICY, CANDIDATE, states, Activity(), 1061.0).action == "promote"


def test_not_promoted_while_too_few_canary_carts_hold_it() -> None:
    states = {"c1": _state(6)}
    verdict = evaluate(POLICY, CANDIDATE, states, Activity(), 5000.0)
    assert verdict.action == "wait" and "0/2" in verdict.reason


def test_a_canary_cart_that_rolled_the_release_back_halts_it() -> None:
    states = {"c1": _state(7), "c2": _state(6, {"type": "catalogue", "version": 7,
                                                "status": "rolled_back",
                                                "reason": "health_check"})}
    verdict = evaluate(POLICY, CANDIDATE, states, Activity(), 1001.0)
    assert verdict.action == "halt" and "c2" in verdict.reason and "rolled_back" in verdict.reason


def test_an_old_failure_of_another_version_does_not_halt() -> None:
    states = {"c1": _state(7, {"type": "catalogue", "version": 5, "status": "failed",
                               "reason": "apply_failed"}), "c2": _state(7)}
    assert evaluate(POLICY, CANDIDATE, states, Activity(), 1061.0).action == "promote"


def test_more_corrections_on_canary_carts_halts() -> None:
    states = {"c1": _state(7), "c2": _state(7)}
    worse = _activity(canary=(80, 20), control=(950, 50))  # 20 % vs 5 %
    verdict = evaluate(POLICY, CANDIDATE, states, worse, 1061.0)
    assert verdict.action == "halt" and "correction share" in verdict.reason
    same = _activity(canary=(95, 5), control=(950, 50))
    assert evaluate(POLICY, CANDIDATE, states, same, 1061.0).action == "promote"
    too_few = _activity(canary=(8, 4), control=(950, 50))  # below min_events: no verdict yet
    assert evaluate(POLICY, CANDIDATE, states, too_few, 1061.0).action == "promote"


def test_canary_carts_are_chosen_stably() -> None:
    carts = [f"cart-{i:03d}" for i in range(50)]
    policy = CanaryPolicy(fraction=0.1)
    chosen = policy.choose(carts)
    assert len(chosen) == 5 and chosen == policy.choose(reversed(carts))
    assert CanaryPolicy(carts=("b", "a")).choose(carts) == ["a", "b"]
    assert len(CanaryPolicy(fraction=0.0, min_carts=1).choose(carts)) == 1
