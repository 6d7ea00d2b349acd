"""Profile + /etc overrides merged before validation; secrets only from credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cartos.profiles.loader import load_profile, profiles_dir
from cartos.service.config import Credentials, load_service_config
from cartos.service.errors import EXIT_CONFIG, ConfigError, CredentialError


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_without_overrides_the_profile_is_loaded_unchanged(tmp_path: Path) -> None:
    config = load_service_config("sim", overlay_dir=tmp_path / "absent", environ={})
    assert config.profile == load_profile("sim")
    assert config.overlays == ()
    assert config.profile_path == profiles_dir() / "sim.toml"


def test_overrides_merge_in_name_order(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    _write(etc, "20-cart.toml", '[bridge]\nport = "/dev/ttyACM0"\n')
    _write(etc, "10-site.toml", '[bridge]\nport = "/dev/ttyUSB0"\nbaud = 57600\n')
    _write(etc, "README", "not toml, ignored\n")
    config = load_service_config("sim", overlay_dir=etc, environ={})
    assert [p.name for p in config.overlays] == ["10-site.toml", "20-cart.toml"]
    bridge = config.profile.bridge
    assert bridge.port == "/dev/ttyACM0"  # the later file wins
    assert bridge.baud == 57600  # the earlier file's other key stays
    shipped = load_profile("sim")
    assert bridge.clock_sync_interval_s == shipped.bridge.clock_sync_interval_s
    assert config.profile.scale == shipped.scale


def test_config_dir_from_the_environment(tmp_path: Path) -> None:
    etc = tmp_path / "conf"
    _write(etc, "site.toml", "[inference]\nthreads = 1\n")
    config = load_service_config("sim", environ={"CARTOS_CONFIG_DIR": str(etc)})
    assert config.profile.inference.threads == 1


def test_an_unknown_key_names_the_override_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    bad = _write(etc, "50-site.toml", "[camera]\nexposure = 3\n")
    with pytest.raises(ConfigError) as info:
        load_service_config("sim", overlay_dir=etc, environ={})
    message = str(info.value)
    assert f"{bad}: camera.exposure: extra inputs are not permitted" in message
    assert info.value.exit_code == EXIT_CONFIG


def test_a_bad_value_names_the_file_that_set_it(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    _write(etc, "10-ok.toml", "[inference]\nthreads = 1\n")
    bad = _write(etc, "20-bad.toml", '[memory]\nbudget_mib = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_service_config("sim", overlay_dir=etc, environ={})
    lines = str(info.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{bad}: memory.budget_mib: ")
    assert "'lots'" in lines[0]


def test_a_table_check_names_every_file_involved(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    bad = _write(etc, "10-camera.toml", '[camera]\nsource = "device"\n')  # device index missing
    with pytest.raises(ConfigError) as info:
        load_service_config("sim", overlay_dir=etc, environ={})
    message = str(info.value)
    assert "sim.toml + " in message
    assert f"{bad}: camera: source 'device' needs `device`" in message


def test_a_password_in_toml_points_to_credentials(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    _write(etc, "mqtt.toml", 'mqtt_password = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"mqtt_password: extra inputs.*LoadCredential="):
        load_service_config("sim", overlay_dir=etc, environ={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    bad = _write(etc, "broken.toml", "[bridge\n")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: not valid TOML")):
        load_service_config("sim", overlay_dir=etc, environ={})


def test_a_missing_profile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no profile 'nope'") as info:
        load_service_config("nope", overlay_dir=tmp_path, environ={})
    assert info.value.exit_code == EXIT_CONFIG


def test_credentials_are_read_from_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    _write(creds, "mqtt-password", "s3cret\n")
    (creds / "hub-signing-keys").write_bytes(b"\x01\x02\n")
    config = load_service_config(
        "sim", overlay_dir=tmp_path / "absent", environ={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert config.credentials.read_text("mqtt-password") == "s3cret"
    assert config.credentials.read_bytes("hub-signing-keys") == b"\x01\x02\n"
    assert config.credentials.has("mqtt-password")
    assert not config.credentials.has("absent")


def test_a_missing_credential_is_named(tmp_path: Path) -> None:
    creds = Credentials.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    with pytest.raises(CredentialError) as info:
        creds.read_text("mqtt-password")
    message = str(info.value)
    assert "credential 'mqtt-password' is missing" in message
    assert str(tmp_path) in message
    assert "LoadCredential=mqtt-password:" in message
    assert info.value.exit_code == EXIT_CONFIG


def test_no_credentials_outside_systemd() -> None:
    creds = Credentials.from_env({})
    assert creds.directory is None
    assert not creds.has("mqtt-password")
    with pytest.raises(CredentialError, match=r"'mqtt-password' is missing: \$CREDENTIALS"):
        creds.read_text("mqtt-password")


@pytest.mark.parametrize("name", ["../etc/shadow", "a/b", ""])
def test_credential_names_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(CredentialError, match="invalid credential name"):
        Credentials(tmp_path).read_bytes(name)


def test_an_empty_text_credential_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "mqtt-password", "\n")
    with pytest.raises(CredentialError, match="'mqtt-password' is empty"):
        Credentials(tmp_path).read_text("mqtt-password")
