"""Profile validation: every shipped profile loads, every mistake is named by file and key path."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cartos.profiles import DeviceProfile, ProfileError, list_profiles, load_profile
from cartos.profiles.loader import format_validation_error, load_profile_file
from cartos.profiles.schema import (
    BridgeConfig,
    CameraConfig,
    CatalogueConfig,
    HilConfig,
    InferenceConfig,
    MemoryConfig,
    ScaleConfig,
)
from cartos.profiles.schema_doc import profile_json_schema
from cartos.profiles.toml_render import profile_to_toml
from tests.profiles.conftest import (
    SECTIONS,
    SHIPPED,
    WriteProfile,
    add_key,
    replace_line,
    shipped_data,
    shipped_text,
)


def problems(exc: pytest.ExceptionInfo[ProfileError]) -> list[str]:
    return str(exc.value).splitlines()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_validates(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.memory.usable_mib < profile.memory.budget_mib
    assert profile.camera.ring_bytes == (
        profile.camera.ring_frames * profile.camera.width * profile.camera.height * 3
    )


def test_every_file_in_the_folder_is_a_shipped_profile() -> None:
    assert sorted(SHIPPED) == list_profiles()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_matches_the_published_json_schema(name: str) -> None:
    jsonschema.validate(shipped_data(name), profile_json_schema())


@pytest.mark.parametrize("section", [None, *SECTIONS])
def test_unknown_key_is_rejected_with_its_path(
    write_profile: WriteProfile, section: str | None
) -> None:
    path = write_profile("sim", add_key(shipped_text("sim"), section, "colour_depth = 8"))
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    key = "colour_depth" if section is None else f"{section}.colour_depth"
    assert f"sim.toml: {key}: extra inputs are not permitted" in str(exc.value)
    assert len(problems(exc)) == 1


def test_misspelt_key_names_both_the_unknown_and_the_missing_key(
    write_profile: WriteProfile,
) -> None:
    text = replace_line(shipped_text("sim"), "budget_mib = 1024", "budget_mb = 1024")
    path = write_profile("sim", text)
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    lines = problems(exc)
    assert any(line.endswith("memory.budget_mb: extra inputs are not permitted") for line in lines)
    assert any(line.endswith("memory.budget_mib: field required") for line in lines)
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_all_problems_are_reported_at_once(write_profile: WriteProfile) -> None:
    text = shipped_text("sim")
    text = replace_line(text, "threads = 2", 'threads = "2"')
    text = replace_line(text, "headroom = 0.20", "headroom = 1.5")
    text = replace_line(text, 'port = "emulator"', 'port = "COM3"')
    with pytest.raises(ProfileError) as exc:
        load_profile(str(write_profile("sim", text)))
    found = {line.split(": ")[1] for line in problems(exc)}
    assert found == {"inference.threads", "memory.headroom", "bridge"}


def test_name_must_match_the_file_stem(write_profile: WriteProfile) -> None:
    path = write_profile("cart-7", shipped_text("sim"))
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    assert "cart-7.toml: name: 'sim' does not match the file name (expected 'cart-7')" in str(
        exc.value
    )


@pytest.mark.parametrize(
    ("source", "needed"), [("device", "device"), ("file", "path"), ("rtsp", "url")]
)
def test_camera_source_needs_its_address(
    write_profile: WriteProfile, source: str, needed: str
) -> None:
    text = replace_line(shipped_text("sim"), 'source = "replay"', f'source = "{source}"')
    with pytest.raises(ProfileError) as exc:
        load_profile(str(write_profile("sim", text)))
    assert f"camera: source '{source}' needs `{needed}`" in str(exc.value)


def test_camera_address_satisfies_the_source(write_profile: WriteProfile) -> None:
    text = replace_line(shipped_text("sim"), 'source = "replay"', 'source = "rtsp"')
    text = add_key(text, "camera", 'url = "rtsp://10.0.0.5/basket"')
    profile = load_profile(str(write_profile("sim", text)))
    assert profile.camera.url == "rtsp://10.0.0.5/basket"


def test_relative_paths_are_anchored_at_the_profile_file(write_profile: WriteProfile) -> None:
    text = replace_line(shipped_text("sim"), 'source = "replay"', 'source = "file"')
    text = add_key(text, "camera", 'path = "clips/basket.avi"')
    text = add_key(text, "inference", 'model = "models/custom.onnx"')
    path = write_profile("sim", text)
    profile = load_profile(str(path))
    assert profile.camera.path == path.parent / "clips" / "basket.avi"
    assert profile.inference.model == path.parent / "models" / "custom.onnx"


def test_model_suffix_must_suit_the_backend(write_profile: WriteProfile) -> None:
    text = add_key(shipped_text("sim"), "inference", 'model = "/opt/models/backbone.tflite"')
    with pytest.raises(ProfileError, match=r"inference: backend 'onnxruntime' loads \.onnx files"):
        load_profile(str(write_profile("sim", text)))


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("span_counts = 163077", "span_counts = 152340", "scale: span_counts equals zero_counts"),
        ("settle_window_ms = 400", "settle_window_ms = 20", "scale: settle_window_ms 20 holds"),
        ("zero_counts = 152340", "zero_counts = 8388607", "scale.zero_counts: input should be"),
        ("headroom = 0.20", "headroom = 1.0", "memory.headroom: input should be less than 1"),
        ("threads = 2", "threads = 0", "inference.threads: input should be greater than"),
        ('variant = "lite0"', 'variant = "lite9"', "inference.variant: input should be"),
    ],
)
def test_out_of_range_values_are_rejected(
    write_profile: WriteProfile, old: str, new: str, problem: str
) -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile(str(write_profile("sim", replace_line(shipped_text("sim"), old, new))))
    assert problem in str(exc.value)


def test_zero_headroom_is_allowed(write_profile: WriteProfile) -> None:
    text = replace_line(shipped_text("sim"), "headroom = 0.20", "headroom = 0.0")
    assert load_profile(str(write_profile("sim", text))).memory.usable_mib == 1024


def test_invalid_toml_is_reported_with_the_file(write_profile: WriteProfile) -> None:
    path = write_profile("sim", shipped_text("sim") + "\n[memory\n")
    with pytest.raises(ProfileError, match=r"sim\.toml: not valid TOML"):
        load_profile(str(path))


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile("no-such-cart")
    assert "no profile 'no-such-cart'" in str(exc.value)
    assert all(name in str(exc.value) for name in SHIPPED)


def test_profiles_folder_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = replace_line(shipped_text("sim"), 'name = "sim"', 'name = "bench-7"')
    (tmp_path / "bench-7.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("CARTOS_PROFILES", str(tmp_path))
    assert list_profiles() == ["bench-7"]
    assert load_profile("bench-7").name == "bench-7"


@pytest.mark.parametrize("name", SHIPPED)
def test_rendered_toml_loads_back_to_the_same_profile(name: str, tmp_path: Path) -> None:
    profile = load_profile(name)
    path = tmp_path / f"{name}.toml"
    path.write_text(profile_to_toml(profile), encoding="utf-8")
    assert load_profile_file(path) == profile


def test_profile_is_frozen() -> None:
    profile = load_profile("sim")
    with pytest.raises(ValidationError):
        profile.memory.budget_mib = 1  # type: ignore[misc]
    smaller = profile.model_copy(update={"memory": MemoryConfig(budget_mib=64)})
    assert smaller.memory.budget_mib == 64 and profile.memory.budget_mib == 1024


SECTION_MODELS: dict[str | None, type[BaseModel]] = {
    None: DeviceProfile,
    "memory": MemoryConfig,
    "inference": InferenceConfig,
    "catalogue": CatalogueConfig,
    "camera": CameraConfig,
    "bridge": BridgeConfig,
    "scale": ScaleConfig,
    "hil": HilConfig,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    section=st.sampled_from([None, *SECTIONS]),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    value=st.one_of(st.integers(), st.text(max_size=8), st.booleans()),
)
def test_any_unknown_key_anywhere_is_named(section: str | None, key: str, value: Any) -> None:
    assume(key not in SECTION_MODELS[section].model_fields)
    data = tomllib.loads(shipped_text("sim"))
    target = data if section is None else data[section]
    target[key] = value
    with pytest.raises(ValidationError) as exc:
        DeviceProfile.model_validate(data)
    where = key if section is None else f"{section}.{key}"
    message = format_validation_error("sim.toml", exc.value)
    assert f"sim.toml: {where}: extra inputs are not permitted" in message.splitlines()


def test_schema_json_is_serialisable_and_forbids_extras() -> None:
    schema = json.loads(json.dumps(profile_json_schema()))
    assert schema["additionalProperties"] is False
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
    undocumented = [
        f"{model}.{key}"
        for model, d in [("profile", schema), *schema["$defs"].items()]
        for key, prop in d["properties"].items()
        if not re.search(r"\w{3,}", prop.get("description", ""))
    ]
    assert undocumented == []
