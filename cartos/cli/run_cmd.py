"""``cartos run --profile PROFILE --catalogue DB``: the cart process (a systemd service)."""

from __future__ import annotations

from pathlib import Path

import click

from cartos.cli.main import reports_errors


@click.command("run")
@click.option("--profile", "profile", required=True, help="Device profile name or TOML path.")
@click.option("--catalogue", "catalogue", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Catalogue SQLite file.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Basket, review crops (default: $STATE_DIRECTORY or /var/lib/cartos).")
@click.option("--api-port", type=int, default=8420, show_default=True,
              help="Local API port on 127.0.0.1 (0: any free port).")
@click.option("--no-api", is_flag=True, help="Do not serve the local API and kiosk page.")
@click.option("--replay", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Replay this folder of frames as the basket camera.")
@click.option("--seconds", type=float, default=None, help="Stop after this long (tests, demos).")
@click.option("--port", default=None,
              help="Serial device of the microcontroller, overriding the profile's (bring-up "
                   "on another tty, or 'emulator').")
@reports_errors
def run_cmd(profile: str, catalogue: Path, state_dir: Path | None, api_port: int, no_api: bool,
            replay: Path | None, seconds: float | None, port: str | None) -> None:
    """Run the cart: sensors, recognition, fusion, durable basket, local API, watchdog."""
    from cartos.runtime.service import run_service

    raise SystemExit(run_service(profile, catalogue, state_dir, None if no_api else api_port,
                                 replay, seconds, announce=lambda m: click.echo(m, err=True),
                                 port=port))


def register(root: click.Group) -> None:
    root.add_command(run_cmd)
