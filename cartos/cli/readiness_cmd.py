"""``cartos readiness``: the seven pre-deployment checks of a catalogue on a device profile.

Exit codes, for deployment scripts: 0 when every check that could be measured is ok
(``not_measured`` checks do not fail the run; the report says why each was not measured),
1 when any check is a concern, 78 (EX_CONFIG) when an input is unusable — including a
mistyped option, so a script never reads a usage error as a finding.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cartos.cli.main import emit_json
from cartos.errors import CartosError
from cartos.readiness.errors import EXIT_BAD_INPUT

# The readiness modules (numpy, OpenCV, the recogniser) are imported inside the command: every
# `cartos` invocation imports this module, and most never run a readiness report.


class _BadUsage(click.UsageError):
    """A usage error (missing option, bad value) that exits 78 like every other bad input."""

    exit_code = EXIT_BAD_INPUT


class _ReadinessCommand(click.Command):
    """A click command whose usage errors exit 78 instead of click's 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _BadUsage(exc.format_message(), ctx=exc.ctx) from exc


_EPILOG = (
    "Exit codes: 0 every measured check ok; 1 at least one concern; 78 unusable input "
    "(catalogue, profile, manifest, history, thresholds or options). See docs/readiness.md."
)


@click.command("readiness", cls=_ReadinessCommand, epilog=_EPILOG)
@click.option("--db", "db", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Catalogue SQLite file to assess (never created or changed).")
@click.option("--profile", "profile", required=True, metavar="PROFILE",
              help="Device profile: a name in device_profiles/ (e.g. sim) or a .toml path.")
@click.option("--validation", type=click.Path(path_type=Path), default=None,
              help="Labelled validation manifest (CSV: image,sku,...) of non-reference images.")
@click.option("--unknown", type=click.Path(path_type=Path), default=None,
              help="Held-out products in no catalogue: a CSV with an image column, or a folder.")
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Change history: another catalogue file or a JSON export "
                   "(default: this catalogue's own version history).")
@click.option("--thresholds", "thresholds_file", type=click.Path(path_type=Path), default=None,
              help="TOML file overriding thresholds; unknown keys are refused.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: <db>.readiness/v<version>/).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the checks as one JSON line (the last line of stdout).")
def readiness_cmd(
    db: Path,
    profile: str,
    validation: Path | None,
    unknown: Path | None,
    history: Path | None,
    thresholds_file: Path | None,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    """Check a catalogue before it goes to the carts: reference imbalance, prototype
    separation, catalogue change rate, memory headroom on PROFILE, unknown-item detection,
    per-SKU accuracy spread and calibration error, each with value, threshold and verdict.

    Writes readiness.md, readiness.json and the plots (inter-class distance histogram,
    reliability diagram) into --out.
    """
    from cartos.readiness.checks import Thresholds, load_thresholds
    from cartos.readiness.report import (
        ReadinessInputs,
        assess,
        default_out_dir,
        format_value,
        threshold_text,
        write_report,
    )

    def log(message: str) -> None:
        click.echo(message, err=True)

    try:
        thresholds = load_thresholds(thresholds_file) if thresholds_file else Thresholds()
        report = assess(
            ReadinessInputs(
                db=db,
                profile=profile,
                validation=validation,
                unknown=unknown,
                history=history,
                thresholds=thresholds,
            ),
            log=log,
        )
        target = out_dir or default_out_dir(db, int(report.catalogue["version"]))
        paths = write_report(report, target)
    except (CartosError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        payload: dict[str, Any] = {
            "checks": [c.to_dict() for c in report.checks],
            "exit_code": report.exit_code,
            "report_dir": str(target),
        }
        emit_json(payload)
    else:
        click.echo(f"{'check':<27}{'value':>12}  {'threshold':>14}  verdict")
        for c in report.checks:
            click.echo(f"{c.name:<27}{format_value(c.value, c.unit):>12}  "
                       f"{threshold_text(c):>14}  {c.verdict}")
        for c in report.checks:
            click.echo(f"- {c.name}: {c.summary}")
        click.echo(f"report: {', '.join(str(p) for p in paths)}")
    sys.exit(report.exit_code)


def register(root: click.Group) -> None:
    root.add_command(readiness_cmd)
