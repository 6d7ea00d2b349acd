"""``cartos profile …`` as a user runs it: real processes, real files, a real measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from cartos.cli.profile_cmds import profile
from cartos.profiles import MemoryConfig, load_profile
from cartos.profiles.schema_doc import DOC_BEGIN, DOC_END, schema_markdown
from cartos.profiles.toml_render import profile_to_toml
from tests.profiles.conftest import SECTIONS, SHIPPED, WriteProfile, replace_line, shipped_text

COMPONENTS = (
    "process_baseline",
    "model_weights",
    "inference_arena",
    "centroid_table",
    "frame_ring",
    "transient_peak",
)
LABELS = ("process baseline", "model weights", "inference arena", "centroid table", "frame ring")
CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["profile", "file", "arch", "backend", "model", "footprint", "fits", "notes"],
    "properties": {
        "profile": {"type": "string"},
        "fits": {"type": "boolean"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "backend": {
            "type": "object",
            "required": ["name", "available", "available_backends", "threads", "max_batch"],
            "properties": {"available": {"const": True}},
        },
        "model": {
            "type": "object",
            "required": ["path", "variant", "verified", "sha256", "embedding_size"],
            "properties": {
                "verified": {"const": True},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "embedding_size": {"type": "integer", "minimum": 1},
            },
        },
        "footprint": {
            "type": "object",
            "required": [
                "components_mib",
                "total_mib",
                "budget_mib",
                "headroom",
                "usable_mib",
                "free_fraction",
                "fits",
                "embedding_dim",
                "measured_on",
            ],
            "properties": {
                "components_mib": {
                    "type": "object",
                    "required": list(COMPONENTS),
                    "additionalProperties": False,
                    "patternProperties": {".*": {"type": "number", "minimum": 0}},
                },
                "total_mib": {"type": "number", "exclusiveMinimum": 0},
                "free_fraction": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    },
}


def cartos(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartos", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def sim_check() -> dict[str, Any]:
    out = cartos("profile", "check", "sim", "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_check_sim_json_follows_the_schema(sim_check: dict[str, Any]) -> None:
    jsonschema.validate(sim_check, CHECK_SCHEMA)
    fp = sim_check["footprint"]
    assert sim_check["fits"] is True and fp["fits"] is True
    assert fp["total_mib"] <= fp["usable_mib"]
    assert fp["total_mib"] == pytest.approx(sum(fp["components_mib"].values()), abs=0.1)


def test_check_measures_what_the_profile_implies(sim_check: dict[str, Any]) -> None:
    profile = load_profile("sim")
    fp = sim_check["footprint"]
    cat = profile.catalogue
    rows = cat.max_skus * (1 + cat.exemplars_per_sku) + cat.family_count + cat.brand_count
    table_mib = rows * fp["embedding_dim"] * 4 / 2**20
    assert fp["components_mib"]["centroid_table"] == pytest.approx(table_mib, rel=0.15)
    assert fp["components_mib"]["frame_ring"] == pytest.approx(
        profile.camera.ring_bytes / 2**20, abs=0.01
    )
    # The runtime cannot import numpy, OpenCV and ONNX Runtime in less than this.
    assert fp["components_mib"]["process_baseline"] > 30
    assert fp["components_mib"]["model_weights"] > 1


def test_check_sim_prints_the_table_and_exits_0() -> None:
    out = cartos("profile", "check", "sim")
    assert out.returncode == 0, out.stderr
    for label in (*LABELS, "total", "usable"):
        assert label in out.stdout
    assert "ok: fits" in out.stdout


def test_check_over_budget_exits_nonzero_naming_the_components(
    write_profile: WriteProfile,
) -> None:
    sim = load_profile("sim")
    tiny = sim.model_copy(update={"name": "tiny", "memory": MemoryConfig(budget_mib=64)})
    out = cartos("profile", "check", write_profile("tiny", profile_to_toml(tiny)))
    assert out.returncode == 3, out.stderr
    assert "Traceback" not in out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: profile tiny: footprint ")
    assert "exceeds the 80% usable share of a 64 MiB budget" in error
    for label in LABELS:
        assert label in error
    assert "centroid table" in out.stdout  # the table is still printed


def test_check_invalid_profile_exits_2_naming_the_key(write_profile: WriteProfile) -> None:
    text = replace_line(shipped_text("sim"), "max_batch = 8", "max_batch = 8\nbatch = 4")
    out = CliRunner().invoke(profile, ["check", str(write_profile("sim", text))])
    assert out.exit_code == 2
    assert "sim.toml: inference.batch: extra inputs are not permitted" in out.stderr


def test_check_with_a_missing_backend_exits_2() -> None:
    from cartos.inference.backend import available

    if "litert" in available():
        pytest.skip("LiteRT is installed here")
    out = cartos("profile", "check", "rpi5")
    assert out.returncode == 2
    assert "inference backend 'litert' is not available" in out.stderr


def test_list_shows_every_profile_and_flags_invalid_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = CliRunner().invoke(profile, ["list", "--json"])
    assert out.exit_code == 0, out.output
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(p["name"] for p in listed) == sorted(SHIPPED)
    assert all(p["valid"] for p in listed)

    (tmp_path / "broken.toml").write_text('name = "broken"\n', encoding="utf-8")
    monkeypatch.setenv("CARTOS_PROFILES", str(tmp_path))
    out = CliRunner().invoke(profile, ["list"])
    assert out.exit_code == 2
    assert "broken" in out.stdout and "INVALID" in out.stdout


def test_show_prints_a_profile_that_loads_back(tmp_path: Path) -> None:
    out = CliRunner().invoke(profile, ["show", "jetson-nano"])
    assert out.exit_code == 0, out.output
    copy = tmp_path / "jetson-nano.toml"
    copy.write_text(out.stdout, encoding="utf-8")
    out_json = CliRunner().invoke(profile, ["show", str(copy), "--json"])
    assert out_json.exit_code == 0, out_json.output
    shown = json.loads(out_json.stdout)
    assert shown["resolved"]["file"] == str(copy.resolve())
    del shown["resolved"]
    assert shown == load_profile("jetson-nano").model_dump(mode="json")


def test_schema_command_prints_the_json_schema() -> None:
    out = CliRunner().invoke(profile, ["schema"])
    assert out.exit_code == 0, out.output
    schema = json.loads(out.stdout)
    assert set(schema["properties"]) >= {*SECTIONS, "name", "description", "arch"}
    markdown = CliRunner().invoke(profile, ["schema", "--markdown"])
    assert markdown.stdout == schema_markdown()


def test_readme_field_tables_are_generated_from_the_schema() -> None:
    readme = (Path(__file__).resolve().parents[2] / "device_profiles" / "README.md").read_text(
        encoding="utf-8"
    )
    generated = readme.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].strip()
    assert generated == schema_markdown().strip(), (
        "device_profiles/README.md is stale: regenerate with `cartos profile schema --markdown`"
    )
