"""``cartos profile …``: list, show, check and document device profiles.

``check`` is what a deployment runs before trusting a cart with a profile: exit 0 when the
backend is installed, the model verifies and the measured footprint fits the budget; exit 2 when
the profile is broken or cannot run here; exit 3 when it runs but does not fit.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from cartos.cli.main import emit_json, reports_errors

if TYPE_CHECKING:
    from cartos.profiles.check import ProfileCheck
    from cartos.profiles.schema import DeviceProfile

# The profile modules (pydantic, the inference registry) are imported inside the commands: every
# `cartos` invocation imports this module, and most never touch a profile.

PROFILE_ARG_HELP = "PROFILE is a name in device_profiles/ (e.g. sim) or a path to a .toml file."


@click.group("profile")
def profile() -> None:
    """Device profiles: one TOML file per hardware target (device_profiles/)."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per profile.")
@reports_errors
def list_cmd(as_json: bool) -> None:
    """List the shipped profiles; invalid ones are flagged and make the command exit 2."""
    from cartos.profiles.errors import ProfileError
    from cartos.profiles.loader import display_path, list_profiles, load_profile, profiles_dir

    names = list_profiles()
    if not names:
        raise ProfileError(f"no profiles in {display_path(profiles_dir())}")
    invalid = 0
    for name in names:
        try:
            prof = load_profile(name)
        except ProfileError as exc:
            invalid += 1
            first_problem = str(exc).splitlines()[0]
            if as_json:
                emit_json({"name": name, "valid": False, "error": str(exc)})
            else:
                click.echo(f"{name:<20} INVALID  {first_problem}")
            continue
        if as_json:
            emit_json({"name": name, "valid": True, **_summary(prof)})
        else:
            runtime = f"{prof.inference.backend}/{prof.inference.variant}"
            click.echo(
                f"{name:<20} {prof.arch:<8} {runtime:<18} {prof.memory.budget_mib:>6} MiB  "
                f"{prof.description}"
            )
    if invalid:
        sys.exit(2)


def _summary(prof: DeviceProfile) -> dict[str, object]:
    return {
        "description": prof.description,
        "arch": prof.arch,
        "backend": prof.inference.backend,
        "variant": prof.inference.variant,
        "budget_mib": prof.memory.budget_mib,
    }


@profile.command("show", epilog=PROFILE_ARG_HELP)
@click.argument("name_or_path", metavar="PROFILE")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@reports_errors
def show_cmd(name_or_path: str, as_json: bool) -> None:
    """Print a validated profile with every default filled in (valid TOML)."""
    from cartos.profiles.loader import display_path, load_profile_file, locate_profile
    from cartos.profiles.model_file import model_file_for
    from cartos.profiles.toml_render import profile_to_toml

    path = locate_profile(name_or_path)
    prof = load_profile_file(path)
    model = model_file_for(prof.inference)
    if as_json:
        data = prof.model_dump(mode="json")
        data["resolved"] = {"file": str(path.resolve()), "model": str(model)}
        emit_json(data)
        return
    click.echo(f"# {display_path(path)}")
    click.echo(f"# model file: {model}{'' if model.is_file() else ' (missing)'}")
    click.echo(profile_to_toml(prof), nl=False)


@profile.command("check", epilog=PROFILE_ARG_HELP)
@click.argument("name_or_path", metavar="PROFILE")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as JSON.")
@reports_errors
def check_cmd(name_or_path: str, as_json: bool) -> None:
    """Validate, check backend and model, and measure the real memory footprint.

    The footprint is measured in a fresh process (RSS after imports, model load, warm-up at
    max_batch and the centroid table); the frame ring is computed. Exit 0 when it fits the
    budget minus headroom, 3 when it does not, 2 when the profile cannot run here.
    """
    from cartos.profiles.check import check_profile
    from cartos.profiles.errors import FootprintExceededError
    from cartos.profiles.footprint import over_budget_message
    from cartos.profiles.loader import load_profile_file, locate_profile

    path = locate_profile(name_or_path)
    prof = load_profile_file(path)
    result = check_profile(prof, path.resolve())
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_check(result)
    if not result.footprint.fits:
        raise FootprintExceededError(over_budget_message(prof, result.footprint))


def _print_check(result: ProfileCheck) -> None:
    from cartos.profiles.loader import display_path

    prof, fp = result.profile, result.footprint
    inf = prof.inference
    click.echo(
        f"profile {prof.name} ({display_path(result.source)}): {inf.backend} {inf.variant}, "
        f"{inf.threads} threads, batch {inf.max_batch}; measured on {fp.measured_on} "
        f"in {fp.seconds:.1f} s"
    )
    dim = result.card.embedding_size
    click.echo(f"model   {display_path(result.model_path)} (card verified, {dim}-d)")
    click.echo(f"{'component':<18}{'MiB':>9}  how")
    for comp in fp.components:
        click.echo(f"{comp.label:<18}{comp.mib:>9.1f}  {comp.how}")
    click.echo(f"{'total':<18}{fp.total_mib:>9.1f}")
    click.echo(
        f"{'usable':<18}{fp.usable_mib:>9.1f}  = {fp.budget_mib} MiB budget x "
        f"(1 - {fp.headroom:g} headroom)"
    )
    for note in result.notes:
        click.echo(f"note: {note}")
    if fp.fits:
        click.echo(
            f"ok: fits with {fp.usable_mib - fp.total_mib:.0f} MiB to spare "
            f"({fp.free_fraction:.0%} of the budget free, {fp.headroom:.0%} required)"
        )


@profile.command("schema")
@click.option("--markdown", is_flag=True, help="The field tables of device_profiles/README.md.")
def schema_cmd(markdown: bool) -> None:
    """Print the JSON schema of a profile file (or its Markdown field tables)."""
    from cartos.profiles.schema_doc import profile_json_schema, schema_markdown

    if markdown:
        click.echo(schema_markdown(), nl=False)
    else:
        click.echo(json.dumps(profile_json_schema(), indent=2))


def register(root: click.Group) -> None:
    root.add_command(profile)
