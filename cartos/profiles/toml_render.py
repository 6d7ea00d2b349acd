"""Write a validated profile back out as TOML, defaults filled in.

``cartos profile show`` prints what the runtime will actually use: every default made explicit
and every relative path resolved. The output is itself a valid profile file (it loads back to an
equal profile), so it can be saved as the starting point of a new target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cartos.profiles.schema import DeviceProfile


def profile_to_toml(profile: DeviceProfile) -> str:
    """TOML text of ``profile``: top-level keys, then one table per section; unset keys omitted."""
    lines: list[str] = []
    tables: list[tuple[str, BaseModel]] = []
    for key in type(profile).model_fields:
        value = getattr(profile, key)
        if isinstance(value, BaseModel):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    for key, section in tables:
        lines.extend(["", f"[{key}]"])
        for field in type(section).model_fields:
            value = getattr(section, field)
            if value is not None:
                lines.append(f"{field} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One scalar as TOML; JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    raise TypeError(f"no TOML form for {type(value).__name__}")
