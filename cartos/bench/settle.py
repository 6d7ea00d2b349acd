"""``cartos bench settle``: how fast the scale reports a real change, and how rarely a false one.

The two numbers pull against each other: a shorter stability window reports
placements sooner but gives knocks, resting hands and a rolling cart more
chances to look "settled" at a wrong value, and every false ``Settled`` change
becomes a phantom item on the host. So the benchmark runs the real
:class:`firmware_bridge.scale.Scale` (the code the microcontroller runs) under
several parameterisations side by side over the same generated traces
(:mod:`firmware_bridge.emulator.traces`):

* **placements**: single items of 20 g - 2 kg (log-uniform) put in or taken
  out of a basket already holding 0-4 kg, with the cart standing still or
  being pushed while it happens (it stops 0.5-4 s later). Scored: latency
  from the change to the emission of ``Settled``, missed changes, deltas off
  by more than the tolerance, and extra ``Settled`` events;
* **soak**: hours of shopping with knocks, resting hands and rolling but no
  load change at all; every ``Settled`` after the boot one is false.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from firmware_bridge.emulator.traces import (
    DEFAULT_RATE_HZ,
    Trace,
    placement_trace,
    shopping_without_changes,
)
from firmware_bridge.scale import Calibration, Scale, Settled

LogFn = Callable[[str], None]

# The emulated board's load cells: 100 counts per gram, 84,000 counts at zero.
CALIBRATION = Calibration(84_000, 1_084_000, 10_000_000)
CAPACITY_MG = 30_000_000
SCENARIOS = ("place, standing", "remove, standing", "place, rolling", "remove, rolling")
SOAK_CHUNK_S = 600.0
# A settle emitted this long before the true change belongs to the state before it.
EARLY_MATCH_MS = 300


@dataclass(frozen=True)
class Parameterisation:
    """One set of ``Scale`` settings under test."""

    name: str
    window_ms: int
    tolerance_mg: int = 2000
    min_delta_mg: int = 2000
    smooth_samples: int = 8

    def scale(self) -> Scale:
        return Scale(
            CALIBRATION,
            capacity_mg=CAPACITY_MG,
            tolerance_mg=self.tolerance_mg,
            window_ms=self.window_ms,
            min_delta_mg=self.min_delta_mg,
            smooth_samples=self.smooth_samples,
        )


DEFAULT = Parameterisation("window 500 ms (default)", window_ms=500)
PARAMETERISATIONS = (
    Parameterisation("window 300 ms", window_ms=300),
    DEFAULT,
    Parameterisation("window 800 ms", window_ms=800),
)


@dataclass(frozen=True)
class Emitted:
    """A ``Settled`` event and the sample time at which the scale emitted it."""

    emitted_ms: int
    stamp_ms: int
    weight_mg: int
    delta_mg: int


def _settled_events(
    scale: Scale, samples: Iterable[tuple[int | None, int]], states: list[int] | None = None
) -> list[Emitted]:
    out: list[Emitted] = []
    for counts, t_ms in samples:
        for ev in scale.update(counts, t_ms):
            if isinstance(ev, Settled):
                out.append(Emitted(t_ms, ev.t_ms, ev.weight_mg, ev.delta_mg))
            elif states is not None and ev.kind == "state":
                states.append(t_ms)
    return out


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


@dataclass
class _Case:
    scenario: str
    trace: Trace
    samples: list[tuple[int | None, int]]
    quiet_from_ms: int


def _placement_cases(seed: int, trials: int) -> list[_Case]:
    rng = np.random.default_rng([seed, 3])
    cases = []
    for k, scenario in enumerate(SCENARIOS):
        for i in range(trials):
            grams = float(np.exp(rng.uniform(np.log(20.0), np.log(2000.0))))
            trace, quiet_ms = placement_trace(
                seed * 100_000 + k * 1000 + i,
                grams,
                removal=scenario.startswith("remove"),
                rolling=scenario.endswith("rolling"),
            )
            cases.append(_Case(scenario, trace, list(trace.samples(CALIBRATION)), quiet_ms))
    return cases


def score_placements(params: Parameterisation, cases: list[_Case]) -> dict[str, Any]:
    """Latency, misses, wrong deltas and extra events per scenario for one parameterisation."""
    rows: dict[str, dict[str, Any]] = {}
    for scenario in (*SCENARIOS, "all"):
        rows[scenario] = {
            "trials": 0,
            "missed": 0,
            "wrong_delta": 0,
            "extra_settled": 0,
            "_latency": [],
            "_after_quiet": [],
            "_stamp": [],
            "_err": [],
        }
    for case in cases:
        (truth,) = case.trace.placements
        events = _settled_events(params.scale(), case.samples)
        # The boot settle reports the load already in the basket; it is not scored.
        if events and events[0].emitted_ms < truth.t_ms - 1000:
            events = events[1:]
        match = next((e for e in events if e.emitted_ms >= truth.t_ms - EARLY_MATCH_MS), None)
        for key in (case.scenario, "all"):
            row = rows[key]
            row["trials"] += 1
            row["extra_settled"] += len(events) - (match is not None)
            if match is None:
                row["missed"] += 1
                continue
            err = match.delta_mg - truth.delta_mg
            row["wrong_delta"] += abs(err) > params.tolerance_mg
            row["_latency"].append(match.emitted_ms - truth.t_ms)
            row["_after_quiet"].append(match.emitted_ms - max(truth.t_ms, case.quiet_from_ms))
            row["_stamp"].append(match.stamp_ms - truth.t_ms)
            row["_err"].append(abs(err))
    for row in rows.values():
        row["latency_ms"] = _stats(row.pop("_latency"))
        row["latency_after_cart_stops_ms"] = _stats(row.pop("_after_quiet"))
        row["event_stamp_minus_change_ms"] = _stats(row.pop("_stamp"))
        row["abs_delta_error_mg"] = _stats(row.pop("_err"))
    return rows


def soak(
    parameterisations: tuple[Parameterisation, ...], hours: float, seed: int
) -> dict[str, dict[str, Any]]:
    """False ``Settled`` events per hour without load changes; all parameterisations, one trace."""
    scales = [p.scale() for p in parameterisations]
    false_events: list[list[Emitted]] = [[] for _ in parameterisations]
    states: list[list[int]] = [[] for _ in parameterisations]
    total_s = hours * 3600.0
    chunks = max(1, round(total_s / SOAK_CHUNK_S))
    disturbances = {"bump": 0, "hand": 0, "rolling": 0}
    rolling_ms = 0
    # One temperature drift for the whole soak, so the chunks join up.
    drift_g_per_hour = float(np.random.default_rng([seed, 5]).uniform(-3.0, 3.0))
    for c in range(chunks):
        chunk_s = total_s / chunks
        trace = shopping_without_changes(
            seed * 1000 + c,
            chunk_s,
            start_ms=round(c * chunk_s * 1000),
            load_g=2500.0,
            drift_g_per_hour=drift_g_per_hour,
        )
        for d in trace.disturbances:
            disturbances[d.kind] += 1
            if d.kind == "rolling":
                rolling_ms += d.duration_ms
        samples = list(trace.samples(CALIBRATION))
        for k, scale in enumerate(scales):
            false_events[k].extend(_settled_events(scale, samples, states[k]))
    out = {}
    for k, params in enumerate(parameterisations):
        events = false_events[k][1:]  # the first one is the boot settle of the 2.5 kg load
        out[params.name] = {
            "hours": hours,
            "false_settled": len(events),
            "false_settled_per_hour": len(events) / hours,
            "false_deltas_mg": [e.delta_mg for e in events[:20]],
            "state_changes_per_hour": len(states[k]) / hours,
        }
    out["_disturbances"] = {
        **{f"{k}s": v for k, v in disturbances.items()},
        "zero_drift_g_per_hour": drift_g_per_hour,
        "rolling_share": rolling_ms / (total_s * 1000.0),
    }
    return out


def run(
    hours: float,
    seed: int,
    log: LogFn,
    trials: int = 50,
    parameterisations: tuple[Parameterisation, ...] = PARAMETERISATIONS,
) -> dict[str, Any]:
    """The whole benchmark; logs a table and returns the JSON-ready results."""
    started = time.perf_counter()
    cases = _placement_cases(seed, trials)
    log(f"{len(cases)} placement traces generated ({time.perf_counter() - started:.1f} s)")
    placements = {p.name: score_placements(p, cases) for p in parameterisations}
    log(f"placements scored ({time.perf_counter() - started:.1f} s); soak of {hours:g} h …")
    soaked = soak(parameterisations, hours, seed)
    elapsed = time.perf_counter() - started
    results: dict[str, Any] = {
        "benchmark": "settle",
        "seed": seed,
        "hours": hours,
        "rate_hz": DEFAULT_RATE_HZ,
        "trials_per_scenario": trials,
        "item_grams": [20, 2000],
        "calibration": repr(CALIBRATION),
        "capacity_mg": CAPACITY_MG,
        "soak_disturbances": soaked.pop("_disturbances"),
        "parameterisations": [
            {
                "params": asdict(p),
                "placements": placements[p.name],
                "soak": soaked[p.name],
            }
            for p in parameterisations
        ],
        "elapsed_s": round(elapsed, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
    }
    for line in table(results):
        log(line)
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(results: dict[str, Any]) -> list[str]:
    """The human-readable summary of :func:`run`'s results."""
    lines = [
        "",
        f"{'parameterisation':<24} {'scenario':<17} {'n':>3} {'miss':>4} {'bad Δ':>5} "
        f"{'extra':>5} {'lat med':>7} {'p95':>5} {'max':>5} {'stop→ med':>9} {'p95':>5}",
    ]
    for entry in results["parameterisations"]:
        name = entry["params"]["name"]
        for scenario, row in entry["placements"].items():
            lat, quiet = row["latency_ms"], row["latency_after_cart_stops_ms"]
            lines.append(
                f"{name:<24} {scenario:<17} {row['trials']:>3} {row['missed']:>4} "
                f"{row['wrong_delta']:>5} {row['extra_settled']:>5} {_fmt(lat['median']):>7} "
                f"{_fmt(lat['p95']):>5} {_fmt(lat['max']):>5} {_fmt(quiet['median']):>9} "
                f"{_fmt(quiet['p95']):>5}"
            )
    d = results["soak_disturbances"]
    lines += [
        "",
        f"soak {results['hours']:g} h without load changes: {d['bumps']} knocks, "
        f"{d['hands']} resting hands, rolling {100 * d['rolling_share']:.0f} % of the time",
        f"{'parameterisation':<24} {'false settled':>13} {'per hour':>9} {'state changes/h':>16}",
    ]
    for entry in results["parameterisations"]:
        s = entry["soak"]
        lines.append(
            f"{entry['params']['name']:<24} {s['false_settled']:>13} "
            f"{s['false_settled_per_hour']:>9.2f} {s['state_changes_per_hour']:>16.0f}"
        )
    lines.append(
        f"latencies in ms from the true change to the emission of Settled; "
        f"'stop→' from the later of change and cart stop ({results['elapsed_s']} s)"
    )
    return lines
