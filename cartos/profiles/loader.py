"""Find, read and validate device profiles.

Profiles are TOML files in ``device_profiles/`` at the repository root (or ``$CARTOS_PROFILES``):
a bare name such as ``rpi5`` means ``device_profiles/rpi5.toml``, anything that looks like a path
is read as given. Every validation problem of a file is reported at once, each prefixed with the
file and the dotted key path (``device_profiles/x.toml: memory.budget_mb: extra inputs are not
permitted``), so one run of ``cartos profile check`` lists everything there is to fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

import cartos
from cartos.profiles.errors import ProfileError, ProfileNotFoundError
from cartos.profiles.schema import FILE_STEM_CONTEXT, PROFILE_DIR_CONTEXT, DeviceProfile

PROFILES_ENV = "CARTOS_PROFILES"
PROFILE_SUFFIX = ".toml"
_BARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Error types whose offending input adds nothing to the message (it is absent, or it is the
# whole unexpected value of an unknown key).
_NO_INPUT_ECHO = {"missing", "extra_forbidden"}


def profiles_dir() -> Path:
    """Folder of the shipped profiles: ``$CARTOS_PROFILES`` or ``device_profiles/`` at the root."""
    override = os.environ.get(PROFILES_ENV)
    if override:
        return Path(override).expanduser()
    return Path(cartos.__file__).resolve().parent.parent / "device_profiles"


def list_profiles() -> list[str]:
    """Names of the profiles in :func:`profiles_dir`, sorted."""
    folder = profiles_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{PROFILE_SUFFIX}") if p.is_file())


def is_bare_name(name_or_path: str) -> bool:
    """A bare name (``rpi5``) is looked up in the profiles folder; anything else is a path."""
    return bool(_BARE_NAME.match(name_or_path)) and not name_or_path.endswith(PROFILE_SUFFIX)


def locate_profile(name_or_path: str | Path) -> Path:
    """The file a profile name or path refers to; raises ProfileNotFoundError if it is absent."""
    text = str(name_or_path)
    if isinstance(name_or_path, str) and is_bare_name(text):
        path = profiles_dir() / f"{text}{PROFILE_SUFFIX}"
        if not path.is_file():
            known = ", ".join(list_profiles()) or "none"
            raise ProfileNotFoundError(
                f"no profile {text!r} in {display_path(profiles_dir())} (available: {known})"
            )
        return path
    path = Path(text).expanduser()
    if not path.is_file():
        raise ProfileNotFoundError(f"{display_path(path)}: no such profile file")
    return path


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Read and validate one profile by name (``device_profiles/<name>.toml``) or path."""
    return load_profile_file(locate_profile(name_or_path))


def load_profile_file(path: Path) -> DeviceProfile:
    """Validate ``path``: name must equal the file stem, relative paths anchor at its folder."""
    label = display_path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{label}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ProfileError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    context = {PROFILE_DIR_CONTEXT: path.resolve().parent, FILE_STEM_CONTEXT: path.stem}
    try:
        return DeviceProfile.model_validate(data, context=context)
    except ValidationError as exc:
        raise ProfileError(format_validation_error(label, exc)) from exc


def format_validation_error(label: str, exc: ValidationError) -> str:
    """One line per problem: ``<file>: <dotted.key.path>: <what is wrong>``."""
    return "\n".join(f"{label}: {describe_error(err)}" for err in exc.errors(include_url=False))


def describe_error(err: ErrorDetails) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "value_error":
        message = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        message = _lower_first(err["msg"])
        if err["type"] not in _NO_INPUT_ECHO and not isinstance(err["input"], dict):
            message += f" (got {_show_input(err['input'])})"
    return f"{where}: {message}"


def _lower_first(text: str) -> str:
    """'Field required' -> 'field required', leaving acronyms such as 'URL ...' alone."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _show_input(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it, else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)
