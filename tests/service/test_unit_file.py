"""The shipped unit file: the directives the runtime relies on, hardening, and systemd's verdict."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "cartos@.service"
MAX_EXPOSURE = 2.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def _directives() -> dict[str, list[str]]:
    """``Key=value`` lines of the unit (comments skipped, repeated keys kept in order)."""
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_the_runtime_contract_is_in_the_unit() -> None:
    unit = _directives()
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["10"],
        "Restart": ["on-failure"],
        "RestartSec": ["2"],
        "TimeoutStartSec": ["120"],
        "User": ["cartos"],
        "StateDirectory": ["cartos"],
        "RuntimeDirectory": ["cartos"],
        "ExecStart": ["/usr/bin/cartos run --profile %i"],
        "RestartPreventExitStatus": ["78"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert set(unit["SupplementaryGroups"][0].split()) == {"dialout", "video"}
    allowed = {entry.split()[0] for entry in unit["DeviceAllow"]}
    assert {"char-usb_serial", "char-video4linux"} <= allowed


def test_the_config_exit_code_matches_the_unit() -> None:
    from cartos.service.errors import ConfigError

    assert _directives()["RestartPreventExitStatus"] == [str(ConfigError.exit_code)]


@needs_systemd_analyze
def test_security_exposure_is_low() -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure level in the output:\n{result.stdout}\n{result.stderr}"
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_systemd_analyze
def test_systemd_verify_accepts_the_unit(tmp_path: Path) -> None:
    """``verify`` insists ExecStart= exists; check a copy naming an executable stand-in.

    Everything else in the copy is the shipped file, and warnings (unknown keys, values that
    do not parse) count as failures although ``verify`` still exits 0 on them.
    """
    assert SYSTEMD_ANALYZE is not None
    stand_in = tmp_path / "cartos"
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/bin/cartos ") == 1
    instance = tmp_path / "cartos@sim.service"
    instance.write_text(text.replace("ExecStart=/usr/bin/cartos ", f"ExecStart={stand_in} "))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(instance)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output
