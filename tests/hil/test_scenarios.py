"""Every scenario in tests/scenarios/ on the ``sim`` profile, through a real pty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cartos.hil.errors import ScenarioError
from cartos.hil.runner import run_scenario
from cartos.hil.scenario import load_scenario
from cartos.profiles.loader import load_profile

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.jsonl"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_passes_on_sim(path: Path) -> None:
    result = run_scenario(load_profile("sim"), load_scenario(path), prompt=lambda _m: None)
    failed = [f"{c.expectation.describe()}: {c.detail}" for c in result.checks if not c.passed]
    assert not failed, "\n".join(failed) + f"\nevents: {result.events}"
    assert not result.skipped_inputs


def test_a_wrong_expectation_fails_the_cli(tmp_path: Path) -> None:
    bad = tmp_path / "wrong.jsonl"
    bad.write_text(
        '{"meta": {"duration": 2.5}}\n'
        '{"t": 0.2, "place": 200}\n'
        '{"expect": "settled", "delta": 300}\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "hil", "sim", str(bad), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["passed"] is False
    assert "no settled delta 300" in result["checks"][0]["detail"]
    seen = result["checks"][0]["detail"].split("saw ")[1]
    assert abs(float(seen.split(" g@")[0]) - 200.0) < 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"t": 1, "place": 10}\n{"t": 0.5, "scan": "1"}\n{"expect": "tared"}', "time order"),
        ('{"t": 1, "plaice": 10}\n{"expect": "tared"}', "exactly one of"),
        ('{"t": 1, "place": 10, "speed": 3}\n{"expect": "tared"}', "unknown key(s) speed"),
        ('{"t": 1, "fault": "lightning"}\n{"expect": "tared"}', "unknown fault 'lightning'"),
        ('{"expect": "settled"}', "missing delta"),
        ('{"expect": "settled", "delta": 1, "within": [3, 1]}', "expected [start, end]"),
        ('{"t": 1, "place": 10}', "no expectations"),
        ("not json", "not JSON"),
    ],
)
def test_malformed_scenarios_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert message in str(err.value)
    assert "s.jsonl" in str(err.value)
