"""The service's configuration: a device profile, site overrides from /etc, secrets as credentials.

The profile (``device_profiles/<name>.toml``) describes the hardware and ships with cartos;
a store adapts it without editing shipped files by dropping TOML files into ``/etc/cartos/``
(``$CARTOS_CONFIG_DIR`` elsewhere), for example the serial port's by-id path or a recalibrated
scale. Those files are merged in name order (``10-site.toml`` before ``20-cart.toml``) onto the
profile's TOML *before* validation, so the merged result obeys exactly the profile schema:
unknown keys are still rejected, and every problem names the file that introduced it.

Secrets never sit in these TOML files, which are world-readable and end up in backups and
support bundles: the MQTT password and, later, the hub's signing-key pins come from systemd
credentials (``LoadCredential=`` in the unit), read from ``$CREDENTIALS_DIRECTORY/<name>``,
a private tmpfs only this service can read.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cartos.profiles.errors import ProfileError
from cartos.profiles.loader import describe_error, display_path, load_profile_file, locate_profile
from cartos.profiles.schema import FILE_STEM_CONTEXT, PROFILE_DIR_CONTEXT, DeviceProfile
from cartos.service.errors import ConfigError, CredentialError

CONFIG_DIR_ENV = "CARTOS_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path("/etc/cartos")
CREDENTIALS_DIR_ENV = "CREDENTIALS_DIRECTORY"
OVERLAY_SUFFIX = ".toml"

# Key names that look like secrets: an unknown key with such a name gets a pointer to
# credentials instead of only "extra inputs are not permitted".
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|private_?key|api_?key)", re.IGNORECASE)
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ServiceConfig:
    """The validated profile and where its values came from."""

    profile: DeviceProfile
    profile_path: Path
    overlays: tuple[Path, ...]
    credentials: Credentials


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Folder of the site overrides: ``$CARTOS_CONFIG_DIR`` or ``/etc/cartos``."""
    env = os.environ if environ is None else environ
    override = env.get(CONFIG_DIR_ENV)
    return Path(override).expanduser() if override else DEFAULT_CONFIG_DIR


def overlay_files(folder: Path) -> tuple[Path, ...]:
    """The ``*.toml`` files of ``folder`` in name order; none when the folder does not exist."""
    if not folder.exists():
        return ()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: the configuration directory is not a directory")
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot list ({exc.strerror or exc})") from exc
    return tuple(p for p in entries if p.suffix == OVERLAY_SUFFIX and p.is_file())


def load_service_config(
    profile: str | Path,
    *,
    overlay_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """Load the profile, apply the site overrides, validate, and attach the credentials.

    Every failure is a :class:`ConfigError` (exit code 78), so the unit stops restarting a cart
    whose configuration is broken.
    """
    folder = config_dir(environ) if overlay_dir is None else overlay_dir
    try:
        path = locate_profile(profile)
        overlays = overlay_files(folder)
        validated = _load_with_overlays(path, overlays) if overlays else load_profile_file(path)
    except ProfileError as exc:
        raise ConfigError(str(exc)) from exc
    return ServiceConfig(
        profile=validated,
        profile_path=path,
        overlays=overlays,
        credentials=Credentials.from_env(environ),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    label = display_path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror or exc})") from exc


class _Provenance:
    """Which file set each key: leaves belong to their last writer, tables to their creator."""

    def __init__(self) -> None:
        self.leaf: dict[KeyPath, str] = {}
        self.table: dict[KeyPath, str] = {}
        self.touched: dict[KeyPath, list[str]] = {}

    def record(self, path: KeyPath, label: str, *, is_table: bool) -> None:
        if is_table:
            self.table.setdefault(path, label)
        else:
            self.leaf[path] = label
        for depth in range(len(path)):
            writers = self.touched.setdefault(path[:depth], [])
            if label not in writers:
                writers.append(label)

    def source_of(self, loc: KeyPath, fallback: str) -> str:
        """The file to blame for a problem at ``loc``."""
        for depth in range(len(loc), -1, -1):
            prefix = loc[:depth]
            if prefix in self.leaf:
                return self.leaf[prefix]
            if prefix in self.table:
                if depth == len(loc):
                    # A table-level check (a model validator) sees values from every file
                    # that wrote into the table.
                    return " + ".join(self.touched.get(prefix, [self.table[prefix]]))
                return self.table[prefix]
        return fallback


def _merge(
    base: dict[str, Any],
    overlay: Mapping[str, Any],
    label: str,
    provenance: _Provenance,
    prefix: KeyPath = (),
) -> None:
    """Merge ``overlay`` into ``base`` in place: tables merge key by key, other values replace."""
    for key, value in overlay.items():
        path = (*prefix, key)
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            provenance.record(path, label, is_table=True)
            _merge(current, value, label, provenance, path)
        else:
            base[key] = value
            _record_tree(path, value, label, provenance)


def _record_tree(path: KeyPath, value: Any, label: str, provenance: _Provenance) -> None:
    if isinstance(value, dict):
        provenance.table.pop(path, None)
        provenance.record(path, label, is_table=True)
        for key, inner in value.items():
            _record_tree((*path, key), inner, label, provenance)
    else:
        provenance.record(path, label, is_table=False)


def _load_with_overlays(path: Path, overlays: tuple[Path, ...]) -> DeviceProfile:
    provenance = _Provenance()
    profile_label = display_path(path)
    data: dict[str, Any] = {}
    _merge(data, _read_toml(path), profile_label, provenance)
    for overlay in overlays:
        _merge(data, _read_toml(overlay), display_path(overlay), provenance)
    context = {PROFILE_DIR_CONTEXT: path.resolve().parent, FILE_STEM_CONTEXT: path.stem}
    try:
        return DeviceProfile.model_validate(data, context=context)
    except ValidationError as exc:
        lines = [
            _describe_with_source(err, provenance, profile_label)
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError("\n".join(lines)) from exc


def _describe_with_source(err: ErrorDetails, provenance: _Provenance, fallback: str) -> str:
    label = provenance.source_of(tuple(err["loc"]), fallback)
    line = f"{label}: {describe_error(err)}"
    last = err["loc"][-1] if err["loc"] else ""
    if err["type"] == "extra_forbidden" and _SECRET_KEY.search(str(last)):
        line += (
            f" (secrets are not read from TOML: load it with LoadCredential={last}:... "
            f"and it is read from ${CREDENTIALS_DIR_ENV}/{last})"
        )
    return line


class Credentials:
    """Secrets handed over by systemd (``LoadCredential=``) in ``$CREDENTIALS_DIRECTORY``."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Credentials of this process; none available when systemd passed none."""
        env = os.environ if environ is None else environ
        raw = env.get(CREDENTIALS_DIR_ENV)
        return cls(Path(raw) if raw else None)

    @property
    def directory(self) -> Path | None:
        """The credentials folder, or None outside a unit with credentials."""
        return self._directory

    def path(self, name: str) -> Path:
        """Where credential ``name`` must be; raises CredentialError when it is not there."""
        if not _CREDENTIAL_NAME.match(name):
            raise CredentialError(f"invalid credential name {name!r}")
        if self._directory is None:
            raise CredentialError(
                f"credential {name!r} is missing: ${CREDENTIALS_DIR_ENV} is not set; add "
                f"LoadCredential={name}:/etc/cartos/credentials/{name} to the unit (or set "
                f"${CREDENTIALS_DIR_ENV} to a folder holding a file {name!r} outside systemd)"
            )
        path = self._directory / name
        if not path.is_file():
            raise CredentialError(
                f"credential {name!r} is missing: no file {name!r} in "
                f"${CREDENTIALS_DIR_ENV} ({self._directory}); add "
                f"LoadCredential={name}:/etc/cartos/credentials/{name} to the unit"
            )
        return path

    def read_bytes(self, name: str) -> bytes:
        """The credential's exact bytes (keys, certificates)."""
        path = self.path(name)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CredentialError(
                f"credential {name!r}: cannot read {path} ({exc.strerror or exc})"
            ) from exc

    def read_text(self, name: str) -> str:
        """A text credential (a password) without its trailing newline; empty is an error."""
        raw = self.read_bytes(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CredentialError(f"credential {name!r} is not UTF-8 text") from exc
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise CredentialError(f"credential {name!r} is empty")
        return text

    def has(self, name: str) -> bool:
        """True when credential ``name`` was passed (for optional secrets)."""
        return (
            self._directory is not None
            and bool(_CREDENTIAL_NAME.match(name))
            and (self._directory / name).is_file()
        )
