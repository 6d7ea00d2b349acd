"""The ``cartos`` command line: one entry point for every job on and off the cart.

Expected failures (bad input, missing files, refused catalogue changes) are
:class:`CartosError` subclasses and become one ``error:`` line and a non-zero
exit code; a traceback means a bug.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from cartos import __version__
from cartos.errors import CartosError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn expected errors into a clean message and exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CartosError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (OSError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def db_option(func: F) -> F:
    return click.option(
        "--db",
        "db",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Catalogue SQLite file (created if missing).",
    )(func)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cartos")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """cartos: knows what is in the basket."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point."""
    from cartos.cli import (
        basket_cmds,
        bench_cmds,
        catalog_cmds,
        demo_cmd,
        hil_cmds,
        hub_cmd,
        model_cmds,
        profile_cmds,
        readiness_cmd,
        recognize_cmds,
        run_cmd,
        sensors_cmds,
        synth_cmd,
    )

    for module in (
        catalog_cmds,
        model_cmds,
        recognize_cmds,
        bench_cmds,
        demo_cmd,
        profile_cmds,
        hil_cmds,
        sensors_cmds,
        basket_cmds,
        run_cmd,
        hub_cmd,
        synth_cmd,
        readiness_cmd,
    ):
        module.register(cli)
    cli()
