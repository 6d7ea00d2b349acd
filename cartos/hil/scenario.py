"""Hardware-in-the-loop scenarios: timed inputs plus the outputs they must produce.

A scenario is a JSON Lines file, one object per line, so a recorded session or
a hand-written test reads the same way. Lines with ``"t"`` are **inputs** at
that many seconds after the start; lines with ``"expect"`` are
**expectations** checked against what the sensors side reported; a ``"meta"``
line names the scenario and how long it runs. Every mistake in a file is
reported with its line number before anything runs. The format is documented
in ``docs/hil.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartos.hil.errors import ScenarioError

# input kind -> (required keys, optional keys)
INPUTS: dict[str, tuple[set[str], set[str]]] = {
    "place": ({"grams"}, set()),
    "remove": ({"grams"}, set()),
    "bump": ({"grams"}, {"duration"}),
    "rolling": ({"grams"}, set()),
    "drift": ({"grams_per_min"}, set()),
    "scan": ({"code"}, set()),
    "frame": ({"image"}, set()),
    "tare": (set(), set()),
    "fault": ({"fault"}, {"duration", "rate", "bytes", "direction"}),
}
FAULTS = {"garbage", "ber", "drop", "stall", "unplug", "reboot", "adc_disconnect", "overload"}

# expectation kind -> (required keys, optional keys)
EXPECTS: dict[str, tuple[set[str], set[str]]] = {
    "settled": ({"delta"}, {"tol", "within", "weight"}),
    "no_settled": ({"between"}, set()),
    "count": ({"event", "equals"}, {"between"}),
    "scan": ({"code"}, {"valid", "symbology", "lookup_key", "reason", "within"}),
    "state": ({"state"}, {"within"}),
    "tared": (set(), {"within"}),
    "frames": ({"at_least"}, set()),
    "change": ({"between"}, {"min_area"}),
    "link": (set(), {"reconnects_at_least", "max_corrupt", "state"}),
}
EVENT_KINDS = {"settled", "scan", "state", "tared"}


@dataclass(frozen=True)
class Step:
    """One timed input."""

    t: float
    kind: str
    args: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Expectation:
    kind: str
    args: dict[str, Any]
    line: int

    def describe(self) -> str:
        detail = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"line {self.line}: expect {self.kind} {detail}".rstrip()


@dataclass
class Scenario:
    name: str
    path: Path
    duration: float
    description: str = ""
    steps: list[Step] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)


def _window(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) for v in value)
        or value[0] > value[1]
    ):
        raise ScenarioError(f"{where}: expected [start, end] seconds, got {value!r}")
    return float(value[0]), float(value[1])


def _check_keys(obj: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing = required - obj.keys()
    unknown = obj.keys() - required - optional
    if missing:
        raise ScenarioError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def load_scenario(path: Path) -> Scenario:
    """Parse and validate a scenario file; raises ScenarioError naming the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from exc
    scenario = Scenario(name=path.stem, path=path, duration=0.0)
    last_t = 0.0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path.name}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise ScenarioError(f"{where}: each line must be a JSON object")
        if "meta" in obj:
            meta = obj["meta"]
            if not isinstance(meta, dict):
                raise ScenarioError(f"{where}: meta must be an object")
            _check_keys(meta, {"duration"}, {"name", "description"}, where)
            scenario.duration = float(meta["duration"])
            scenario.name = str(meta.get("name", scenario.name))
            scenario.description = str(meta.get("description", ""))
        elif "t" in obj:
            t = obj.pop("t")
            if not isinstance(t, int | float) or t < 0:
                raise ScenarioError(f"{where}: t must be a non-negative number of seconds")
            kinds = [k for k in obj if k in INPUTS]
            if len(kinds) != 1:
                raise ScenarioError(
                    f"{where}: an input line needs exactly one of {', '.join(sorted(INPUTS))}"
                )
            kind = kinds[0]
            required, optional = INPUTS[kind]
            args = dict(obj)
            value = args.pop(kind)
            if kind == "fault":
                if value not in FAULTS:
                    raise ScenarioError(
                        f"{where}: unknown fault {value!r}; one of {', '.join(sorted(FAULTS))}")
                args["fault"] = value
            elif required:
                args[next(iter(required))] = value
            _check_keys(args, required, optional, where)
            if kind == "frame":
                image = path.parent / str(args["image"])
                args["image"] = image
            if t < last_t:
                raise ScenarioError(f"{where}: inputs must be in time order ({t} < {last_t})")
            last_t = float(t)
            scenario.steps.append(Step(float(t), kind, args, lineno))
        elif "expect" in obj:
            kind = obj.pop("expect")
            if kind not in EXPECTS:
                raise ScenarioError(
                    f"{where}: unknown expectation {kind!r}; one of {', '.join(sorted(EXPECTS))}")
            required, optional = EXPECTS[kind]
            _check_keys(obj, required, optional, where)
            for key in ("within", "between"):
                if key in obj:
                    obj[key] = _window(obj[key], f"{where}: {key}")
            if kind == "count" and obj["event"] not in EVENT_KINDS:
                raise ScenarioError(f"{where}: count event must be one of {sorted(EVENT_KINDS)}")
            scenario.expectations.append(Expectation(kind, obj, lineno))
        else:
            raise ScenarioError(f"{where}: a line needs 't' (input), 'expect' or 'meta'")
    if scenario.duration <= 0:
        scenario.duration = last_t + 3.0
    if not scenario.expectations:
        raise ScenarioError(f"{path.name}: no expectations: a scenario must be able to fail")
    return scenario
