"""``cartos synth``: the interface the degradation lab and retailers call."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from cartos.cli.main import cli
from cartos.cli.synth_cmd import register

register(cli)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _synth(out: Path, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["synth", "--skus", "12", "--refs", "3", "--queries", "2",
                                      "--unknown", "3", "--seed", "5", "--out", str(out),
                                      *extra])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.output.strip().splitlines()[-1])
    return summary


def test_synth_writes_references_queries_and_unknown_manifests(tmp_path: Path) -> None:
    summary = _synth(tmp_path / "cat")
    assert summary["images"] == {"references": 36, "queries": 24, "unknown": 6}
    refs = _rows(tmp_path / "cat" / "references.csv")
    queries = _rows(tmp_path / "cat" / "queries.csv")
    unknown = _rows(tmp_path / "cat" / "unknown.csv")
    assert list(refs[0]) == ["image", "sku", "barcode", "name", "brand", "family", "weight_g",
                             "weight_tol_g"]
    assert len({r["sku"] for r in refs}) == 12 and {q["sku"] for q in queries} <= {
        r["sku"] for r in refs}
    assert not {u["sku"] for u in unknown} & {r["sku"] for r in refs}  # truly held out
    for row in refs + queries + unknown:
        assert (tmp_path / "cat" / row["image"]).is_file()
        digits = [int(c) for c in row["barcode"]]
        assert len(digits) == 13
        assert (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits[:12])) % 10) \
            % 10 == digits[12]


def test_synth_is_deterministic_and_the_long_tail_is_honoured(tmp_path: Path) -> None:
    _synth(tmp_path / "a")
    _synth(tmp_path / "b")
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "references.csv").read_bytes() == (b / "references.csv").read_bytes()
    first = _rows(a / "references.csv")[0]["image"]
    assert (a / first).read_bytes() == (b / first).read_bytes()
    _synth(tmp_path / "tail", "--long-tail", "3")
    counts: dict[str, int] = {}
    for row in _rows(tmp_path / "tail" / "references.csv"):
        counts[row["sku"]] = counts.get(row["sku"], 0) + 1
    assert max(counts.values()) == 3 and min(counts.values()) == 1


def test_impossible_settings_are_refused_with_the_option_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["synth", "--skus", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--skus" in result.output
