"""``cartos bench …``: long measurements, kept out of the test suite."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cartos.cli.main import reports_errors


@click.group("bench")
def bench() -> None:
    """Benchmarks on the real product-image data sets (../shared/data or $CARTOS_DATA)."""


@bench.command("recognition")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/bench/recognition.json"),
    show_default=True,
    help="Where to write the JSON results.",
)
@click.option("--no-fp32", is_flag=True, help="Skip the FP32 comparison (needs the build extra).")
@reports_errors
def recognition_cmd(out: Path, no_fp32: bool) -> None:
    """GroZi-120 protocol: accuracy, accept precision, unknowns, ECE, INT8 vs FP32, add, snacks."""
    from cartos.bench.recognition import run

    results = run(out, log=lambda m: click.echo(m, err=True), with_fp32=not no_fp32)
    click.echo(json.dumps(results, indent=2, default=float))


def register(root: click.Group) -> None:
    root.add_command(bench)
