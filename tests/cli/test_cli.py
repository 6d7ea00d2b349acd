"""The `cartos` command as a user runs it: real processes, real files."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cartos.catalog.store import CatalogStore
from cartos.inference.calibration_report import RELIABILITY_PNG, REPORT_JSON, REPORT_MD
from cartos.inference.recognizer import CALIBRATION_ARTIFACT
from cartos.synth import SynthConfig, generate_catalogue, split_queries

RECOGNITION_SCHEMA = {
    "type": "object",
    "required": [
        "image",
        "decision",
        "sku",
        "confidence",
        "level",
        "family",
        "brand",
        "unknown_score",
        "topk",
        "latency_ms",
    ],
    "properties": {
        "image": {"type": "string"},
        "decision": {"enum": ["accept", "confirm", "fallback", "unknown"]},
        "sku": {"type": ["string", "null"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "level": {"enum": ["sku", "family", "brand", "none"]},
        "family": {"type": ["string", "null"]},
        "brand": {"type": ["string", "null"]},
        "unknown_score": {"type": "number", "minimum": 0, "maximum": 1},
        "topk": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "score"],
                "properties": {"sku": {"type": "string"}, "score": {"type": "number"}},
            },
        },
        "latency_ms": {"type": "number", "minimum": 0},
    },
}


def cartos(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartos", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    synth = generate_catalogue(
        root / "synth", SynthConfig(n_skus=12, refs_per_sku=3, queries_per_sku=4, n_new=2, seed=3)
    )
    cal, test = split_queries(synth)
    db = root / "c.db"
    out = cartos("catalog", "import", synth.manifest, "--db", db)
    assert out.returncode == 0, out.stderr
    out = cartos("calibrate", cal, "--db", db, "--report-dir", root / "report")
    assert out.returncode == 0, out.stderr
    return {
        "root": root,
        "db": db,
        "test": test,
        "manifest": synth.manifest,
        "new": synth.new_products,
    }


def test_calibration_artefacts_are_written_and_stored(workspace: dict[str, Path]) -> None:
    report = workspace["root"] / "report"
    for name in (REPORT_JSON, REPORT_MD, RELIABILITY_PNG):
        assert (report / name).is_file(), name
    data = json.loads((report / REPORT_JSON).read_text())
    assert {"accept", "confirm", "unknown", "family", "brand"} <= set(data["thresholds"])
    assert {
        "ece_before",
        "ece_after",
        "unknown_fpr_known_flagged",
        "unknown_fnr_unknown_missed",
    } <= set(data["measured"])
    assert (report / RELIABILITY_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with CatalogStore(workspace["db"]) as store:
        assert store.get_artifact(CALIBRATION_ARTIFACT) is not None
        assert store.get_artifact(REPORT_MD) == (report / REPORT_MD).read_bytes()
        assert store.history()[-1].kind == "calibrate"


def test_recognize_json_schema_order_and_corrupt_images(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    with workspace["test"].open() as fh:
        rows = list(csv.DictReader(fh))[:5]
    images = [str(workspace["test"].parent / r["image"]) for r in rows]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    args = [images[0], str(corrupt), *images[1:], str(tmp_path / "missing.png")]
    out = cartos("recognize", "--db", workspace["db"], "--json", *args)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "corrupt.jpg" in out.stderr and "missing.png" in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["image"] for line in lines] == args  # input order, errors in place
    assert "error" in lines[1] and "error" in lines[-1]
    good = [line for line in lines if "error" not in line]
    assert len(good) == 5
    for line in good:
        jsonschema.validate(line, RECOGNITION_SCHEMA)
        if line["level"] == "sku":
            assert line["sku"] == line["topk"][0]["sku"]


def test_recognize_a_csv_and_a_directory_as_a_table(workspace: dict[str, Path]) -> None:
    out = cartos("recognize", "--db", workspace["db"], workspace["test"])
    assert out.returncode == 0, out.stderr
    with workspace["test"].open() as fh:
        n = len(list(csv.DictReader(fh)))
    table = out.stdout.splitlines()
    assert table[0].startswith("image") and len(table) == n + 1
    folder = workspace["root"] / "synth" / "images"
    out = cartos("recognize", "--db", workspace["db"], "--json", folder)
    assert out.returncode == 0
    assert len(out.stdout.splitlines()) == len(list(folder.rglob("*.jpg")))


def test_catalog_add_list_show_discontinue(workspace: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    shutil.copyfile(workspace["db"], db)
    with workspace["new"].open() as fh:
        new = list(csv.DictReader(fh))
    sku = new[0]["sku"]
    imgs = [str(workspace["new"].parent / r["image"]) for r in new if r["sku"] == sku][:2]
    out = cartos(
        "catalog",
        "add",
        "--db",
        db,
        "--sku",
        sku,
        "--name",
        "Fresh thing",
        "--family",
        "fresh",
        "--barcode",
        "4006381333931",
        "--weight-g",
        "250",
        *imgs,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(cartos("catalog", "show", "--db", db, sku).stdout)
    assert shown["barcode"] == "4006381333931" and shown["exemplars"] == 2
    listed = [
        json.loads(x) for x in cartos("catalog", "list", "--db", db, "--json").stdout.splitlines()
    ]
    assert sku in {x["sku"] for x in listed}
    out = cartos("catalog", "discontinue", "--db", db, sku, "--successor", listed[0]["sku"])
    assert out.returncode == 0, out.stderr
    active = cartos("catalog", "list", "--db", db).stdout
    assert sku not in active
    assert sku in cartos("catalog", "list", "--db", db, "--all").stdout
    history = cartos("catalog", "history", "--db", db).stdout
    assert "discontinue" in history and "add" in history


def test_clean_errors_not_tracebacks(workspace: dict[str, Path], tmp_path: Path) -> None:
    out = cartos("catalog", "discontinue", "--db", workspace["db"], "nope")
    assert out.returncode != 0 and "error:" in out.stderr and "Traceback" not in out.stderr
    bad_manifest = tmp_path / "bad.csv"
    bad_manifest.write_text("picture,code\nx.jpg,1\n")
    out = cartos("catalog", "import", bad_manifest, "--db", tmp_path / "n.db")
    assert out.returncode != 0 and "image" in out.stderr and "Traceback" not in out.stderr
    out = cartos("recognize", "--db", tmp_path / "absent.db", "x.jpg")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_model_verify() -> None:
    out = cartos("model", "verify")
    assert out.returncode == 0 and out.stdout.startswith("ok:")


def test_runtime_never_imports_torch(workspace: dict[str, Path]) -> None:
    """Recognition, import and calibration run without torch (a build-time extra only)."""
    code = (
        "import sys\n"
        "from cartos.cli.main import main\n"
        "sys.argv = ['cartos', 'recognize', '--db', sys.argv[1], '--json', sys.argv[2]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('no-torch-ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(workspace["db"]), str(workspace["test"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "no-torch-ok" in out.stdout
