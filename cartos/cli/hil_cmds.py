"""``cartos hil PROFILE SCENARIO…``: scenario files against the emulator or a real board."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cartos.cli.main import reports_errors


@click.command("hil")
@click.argument("profile")
@click.argument(
    "scenarios", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="One JSON result per scenario on stdout.")
@reports_errors
def hil(profile: str, scenarios: tuple[Path, ...], as_json: bool) -> None:
    """Play SCENARIO files (JSON Lines; a directory means every *.jsonl in it) on PROFILE.

    Exit status 0 when every expectation of every scenario holds, 1 otherwise.
    """
    from cartos.hil.runner import run_scenario
    from cartos.hil.scenario import load_scenario
    from cartos.profiles.loader import load_profile

    prof = load_profile(profile)
    files: list[Path] = []
    for path in scenarios:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    loaded = [load_scenario(f) for f in files]  # every file validated before anything runs
    failed = 0
    for scenario in loaded:
        result = run_scenario(prof, scenario, prompt=lambda m: click.echo(m, err=True))
        failed += not result.passed
        if as_json:
            click.echo(json.dumps(result.to_dict()))
            continue
        mark = "PASS" if result.passed else "FAIL"
        click.echo(f"{mark} {scenario.name} ({len(result.checks)} checks, "
                   f"{result.elapsed_s:.1f} s, link: {result.link.get('retransmitted', 0)} "
                   f"resent, {result.link.get('reconnects', 0)} reconnects)")
        for check in result.checks:
            if not check.passed:
                click.echo(f"    {check.expectation.describe()}: {check.detail}")
        for note in result.skipped_inputs:
            click.echo(f"    skipped {note}")
    click.echo(f"{len(loaded) - failed}/{len(loaded)} scenarios passed on profile {prof.name}",
               err=True)
    sys.exit(1 if failed else 0)


def register(root: click.Group) -> None:
    root.add_command(hil)
