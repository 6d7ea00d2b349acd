"""Shopping-trip scenario files: what the shopper does, what breaks, and the exact outcome.

A trip scenario is a TOML file (``tests/scenarios/trips/*.toml``) played by
:func:`play` through the real runtime, the emulated board on a pty and the
shipped INT8 model, against the generated catalogue of a
:class:`~cartos.runtime.simulation.SimulatedStore`. Products are named by
role, not by SKU, so a file does not depend on what the generator draws:
``known:N`` is the N-th catalogue product (sorted by SKU), ``unknown:N`` the
N-th product in no catalogue, ``produce:N`` the N-th loose produce item.

    description = "A scanned item, then a label switched onto another"
    camera = true          # optional (default true): the basket camera is on
    model = "shipped"      # optional: "missing" points the profile at no model file
    step_s = 3.5           # optional: seconds between shopper actions

    [[steps]]
    put = "known:3"        # or take = "known:3"
    scan = true            # optional: scanned before it goes in
    scan_as = "known:7"    # optional: a switched label is scanned instead
    count = 1              # optional: identical items at once
    grams = 640            # optional: measured weight (produce, sold by weight)

    [[faults]]             # optional
    at_s = 8.0
    kind = "unplug"        # or "adc_disconnect"
    duration_s = 1.0

    [expect]               # every key optional; each given one is compared exactly
    items = { "known:3" = 1 }
    alerts = ["ticket_switch"]            # sorted alert kinds in the basket
    review = 1                            # review-queue items
    decisions = ["add:accept", "scan_answer:accept"]   # kind:decision, in order
    modes = ["full", "camera_only", "full"]            # every mode change, in order
    modes_in_order = ["vision_barcode", "full"]        # these, in this order, among them
    pending_prompts = 0

The scripted shopper answers every prompt truthfully, scanning the item when
asked to (see :func:`cartos.runtime.simulation.run_trip`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartos.errors import CartosError
from cartos.profiles.loader import load_profile
from cartos.runtime.simulation import Product, SimulatedStore, Step, TripResult, run_trip

ROLES = ("known", "unknown", "produce")
STEP_KEYS = {"put", "take", "scan", "scan_as", "count", "grams"}
FAULT_KEYS = {"at_s", "kind", "duration_s"}
EXPECT_KEYS = {"items", "alerts", "review", "decisions", "modes", "modes_in_order",
               "pending_prompts"}
TOP_KEYS = {"description", "camera", "model", "step_s", "steps", "faults", "expect"}


class TripScenarioError(CartosError):
    """A trip scenario file that cannot be played (the message names the file and entry)."""


@dataclass(frozen=True)
class TripScenario:
    """A parsed scenario file; product references are still role names."""

    path: Path
    description: str
    steps: list[dict[str, Any]]
    faults: list[tuple[float, str, float]] = field(default_factory=list)
    expect: dict[str, Any] = field(default_factory=dict)
    camera: bool = True
    model: str = "shipped"
    step_s: float = 3.5


def _unknown_keys(where: str, given: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise TripScenarioError(f"{where}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def load(path: Path) -> TripScenario:
    """Parse and check a scenario file (unknown keys and malformed entries are errors)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TripScenarioError(f"{path}: {exc}") from exc
    _unknown_keys(str(path), data, TOP_KEYS)
    steps = data.get("steps", [])
    if not steps:
        raise TripScenarioError(f"{path}: a trip needs at least one [[steps]] entry")
    for i, step in enumerate(steps):
        where = f"{path}: steps[{i}]"
        _unknown_keys(where, step, STEP_KEYS)
        if ("put" in step) == ("take" in step):
            raise TripScenarioError(f"{where}: give exactly one of put / take")
    faults = []
    for i, fault in enumerate(data.get("faults", [])):
        _unknown_keys(f"{path}: faults[{i}]", fault, FAULT_KEYS)
        faults.append((float(fault["at_s"]), str(fault["kind"]), float(fault["duration_s"])))
    expect = data.get("expect", {})
    _unknown_keys(f"{path}: expect", expect, EXPECT_KEYS)
    model = str(data.get("model", "shipped"))
    if model not in ("shipped", "missing"):
        raise TripScenarioError(f"{path}: model must be 'shipped' or 'missing', got {model!r}")
    return TripScenario(path, str(data.get("description", "")), steps, faults, expect,
                        bool(data.get("camera", True)), model, float(data.get("step_s", 3.5)))


def product(store: SimulatedStore, ref: str) -> Product:
    """The product a role name (``known:3``) stands for in ``store``."""
    role, _, index = ref.partition(":")
    pools = {"known": store.known, "unknown": store.unknown, "produce": store.produce}
    if role not in pools or not index.isdigit():
        raise TripScenarioError(f"product {ref!r}: expected one of {ROLES} ':' index")
    ordered = sorted(pools[role].values(), key=lambda p: p.sku)
    if int(index) >= len(ordered):
        raise TripScenarioError(f"product {ref!r}: the store has {len(ordered)} {role} products")
    return ordered[int(index)]


def steps_of(scenario: TripScenario, store: SimulatedStore) -> list[Step]:
    out = []
    for step in scenario.steps:
        action = "put" if "put" in step else "take"
        scan_as = step.get("scan_as")
        grams = step.get("grams")
        out.append(Step(action, product(store, str(step[action])), scan=bool(step.get("scan")),
                        count=int(step.get("count", 1)),
                        scan_as=product(store, str(scan_as)) if scan_as else None,
                        grams=float(grams) if grams is not None else None))
    return out


def outcome(result: TripResult, store: SimulatedStore, scenario: TripScenario) -> dict[str, Any]:
    """What the trip ended with, in the scenario's own terms (role names for SKUs)."""
    names = {p.sku: f"{role}:{i}" for role, pool in
             (("known", store.known), ("unknown", store.unknown), ("produce", store.produce))
             for i, p in enumerate(sorted(pool.values(), key=lambda p: p.sku))}
    basket = result.basket
    return {
        "items": {names.get(i["sku"], i["sku"]): int(i["qty"]) for i in basket["items"]},
        "alerts": sorted(a["kind"] for a in basket["alerts"]),
        "review": int(basket["review"]),
        "decisions": [f"{d['kind']}:{d['decision']}" for d in result.decisions],
        "modes": [m for _t, m in result.modes],
        "pending_prompts": len(basket["pending_prompts"]),
    }


def mismatches(scenario: TripScenario, got: dict[str, Any]) -> list[str]:
    """Each expected key whose value differs, as ``key: expected X, got Y``."""
    out = []
    for key, want in scenario.expect.items():
        if key == "modes_in_order":
            seen = iter(got["modes"])
            if not all(mode in seen for mode in want):  # an ordered subsequence
                out.append(f"modes: expected {want!r} in this order, got {got['modes']!r}")
            continue
        value = got[key]
        if key == "alerts":
            want = sorted(want)
        if value != want:
            out.append(f"{key}: expected {want!r}, got {value!r}")
    return out


def play(scenario: TripScenario, store: SimulatedStore, workdir: Path,
         seed: int = 0) -> tuple[dict[str, Any], list[str], TripResult]:
    """Play the scenario; returns the outcome, the mismatches with ``expect`` and the trip."""
    profile = load_profile("sim")
    if scenario.model == "missing":
        profile = profile.model_copy(update={"inference": profile.inference.model_copy(
            update={"model": workdir / "missing.onnx"})})
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_trip(store, steps_of(scenario, store), workdir, profile=profile, seed=seed,
                      step_s=scenario.step_s, camera_on=scenario.camera,
                      faults=scenario.faults)
    got = outcome(result, store, scenario)
    return got, mismatches(scenario, got), result
