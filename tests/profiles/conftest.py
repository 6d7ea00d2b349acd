"""Profile test helpers: the shipped profiles as text, edited copies written to real files."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cartos.profiles.loader import profiles_dir

SHIPPED = ("sim", "x86-dev", "rpi5", "jetson-orin-nano", "jetson-nano")
SECTIONS = ("memory", "inference", "catalogue", "camera", "bridge", "scale", "hil")


def shipped_text(name: str) -> str:
    return (profiles_dir() / f"{name}.toml").read_text(encoding="utf-8")


def shipped_data(name: str) -> dict[str, Any]:
    return tomllib.loads(shipped_text(name))


def add_key(text: str, section: str | None, line: str) -> str:
    """Insert ``line`` at the top level (before the first table) or as the first key of a table."""
    lines = text.splitlines()
    if section is None:
        at = next(i for i, raw in enumerate(lines) if raw.startswith("["))
    else:
        at = lines.index(f"[{section}]") + 1
    lines.insert(at, line)
    return "\n".join(lines) + "\n"


def replace_line(text: str, old: str, new: str) -> str:
    """Replace the one line that is exactly ``old``; fails loudly if the profile changed."""
    lines = text.splitlines()
    assert lines.count(old) == 1, f"{old!r} not exactly once in the profile"
    lines[lines.index(old)] = new
    return "\n".join(lines) + "\n"


WriteProfile = Callable[[str, str], Path]


@pytest.fixture
def write_profile(tmp_path: Path) -> WriteProfile:
    """Write profile text as ``<tmp>/<stem>.toml`` and return the path."""

    def write(stem: str, text: str) -> Path:
        path = tmp_path / f"{stem}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
