"""``cartos basket …``: look into a cart's basket file without touching it.

Both commands open the file read-only, so they are safe to run next to the
live runtime (WAL lets them read while it writes) and on a file copied off a
cart for a support case.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cartos.basket.store import BasketStore
from cartos.basket.view import render_text
from cartos.cli.main import emit_json, reports_errors

F = TypeVar("F", bound=Callable[..., Any])


def _basket_db_option(func: F) -> F:
    return click.option(
        "--db",
        "db",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Basket SQLite file.",
    )(func)


@click.group("basket")
def basket() -> None:
    """Inspect the durable basket (sessions, items, prompts, alerts, outbox)."""


@basket.command("show")
@_basket_db_option
@click.option("--session", "session_id", default=None, help="Session id (default: open/latest).")
@click.option("--json", "as_json", is_flag=True, help="The view as one JSON object.")
@reports_errors
def show_cmd(db: Path, session_id: str | None, as_json: bool) -> None:
    """The basket of the open (or latest) session, as a table or JSON."""
    with BasketStore(db, read_only=True) as store:
        view = store.view(session_id)
        stats = store.outbox_stats()
    if as_json:
        emit_json(view)
        return
    click.echo(render_text(view))
    pending = ", ".join(f"{name} {info.pending}" for name, info in stats.items())
    click.echo(f"  outbox pending: {pending}")


@basket.command("check")
@_basket_db_option
@click.option("--json", "as_json", is_flag=True, help="Problems as a JSON object.")
@reports_errors
def check_cmd(db: Path, as_json: bool) -> None:
    """PRAGMA integrity_check plus the basket invariants; exit 1 when anything is wrong."""
    with BasketStore(db, read_only=True) as store:
        problems = store.check()
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems}))
    elif problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
    else:
        click.echo("ok")
    if problems:
        sys.exit(1)


def register(root: click.Group) -> None:
    root.add_command(basket)
