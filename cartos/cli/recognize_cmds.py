"""``cartos recognize`` and ``cartos calibrate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cartos.catalog.store import CatalogStore
from cartos.cli.inputs import expand_inputs
from cartos.cli.main import db_option, emit_json, reports_errors
from cartos.inference import calibration_service
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.catalogue_model import embedder_for
from cartos.inference.errors import ImageDecodeError
from cartos.inference.preprocess import decode_image
from cartos.inference.recognizer import Recognition, Recognizer


def _row(label: str, rec: Recognition) -> str:
    top = ", ".join(f"{c.sku}:{c.score:.2f}" for c in rec.topk[:3])
    where = rec.sku if rec.level == "sku" else (rec.family or rec.brand or "-")
    return (
        f"{label[-40:]:40s} {rec.decision:9s} {rec.level:7s} {where or '-':24s} "
        f"{rec.confidence:6.3f} {rec.unknown_score:6.3f}  {top}"
    )


@click.command("recognize")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image (JSON lines).")
@click.option("--top-k", default=5, show_default=True, help="Alternatives to list.")
@click.argument("paths", nargs=-1, required=True)
@reports_errors
def recognize_cmd(db: Path, as_json: bool, top_k: int, paths: tuple[str, ...]) -> None:
    """Recognise images (files, directories, or a CSV with an `image` column)."""
    if not db.is_file():
        raise click.BadParameter(f"{db}: no such catalogue", param_hint="--db")
    items = expand_inputs(paths)
    with CatalogStore(db) as store:
        recognizer = Recognizer.from_store(store, embedder_for(store), top_k=top_k)
    if not recognizer.calibration:
        click.echo(
            "warning: catalogue is not calibrated (run `cartos calibrate`); "
            "confidences are uncalibrated and nothing is accepted",
            err=True,
        )
    if not as_json:
        click.echo(
            f"{'image':40s} {'decision':9s} {'level':7s} {'answer':24s} {'conf':>6s} "
            f"{'unk':>6s}  top-3"
        )
    failures = 0
    for item in items:
        try:
            image = decode_image(item.path)
        except ImageDecodeError as exc:
            failures += 1
            click.echo(f"error: {exc}", err=True)
            if as_json:
                emit_json({"image": item.label, "error": str(exc)})
            continue
        rec = recognizer.recognize_images([image])[0]
        if as_json:
            emit_json(rec.to_dict(item.label))
        else:
            click.echo(_row(item.label, rec))
    if failures:
        click.echo(f"error: {failures} of {len(items)} images could not be read", err=True)
        sys.exit(1)


@click.command("calibrate")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the report (default: <db>.calibration/v<version>/).",
)
@click.option("--accept-precision", default=0.995, show_default=True, type=float)
@click.option(
    "--false-unknown-rate",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0.005, 0.2),
    help="Share of known items allowed to be flagged unknown.",
)
@click.option(
    "--holdout-fraction", default=0.08, show_default=True, type=click.FloatRange(0.01, 0.5)
)
@click.option("--seed", default=0, show_default=True)
@reports_errors
def calibrate_cmd(
    manifest: Path,
    db: Path,
    report_dir: Path | None,
    accept_precision: float,
    false_unknown_rate: float,
    holdout_fraction: float,
    seed: int,
) -> None:
    """Fit confidence calibration and thresholds from labelled non-reference images.

    MANIFEST is a CSV with at least `image,sku` (same format as the catalogue
    manifest). Items whose SKU is not in the catalogue count as unknowns.
    """
    targets = CalibrationTargets(
        accept_precision=accept_precision,
        false_unknown_rate=false_unknown_rate,
        holdout_fraction=holdout_fraction,
        seed=seed,
    )
    with CatalogStore(db) as store:
        embedder = embedder_for(store)
        result = calibration_service.calibrate_from_manifest(
            store, embedder, manifest, targets, report_dir
        )
        from cartos.fusion.calibration_service import fit_policy_from_manifest

        policy = fit_policy_from_manifest(store, embedder, manifest)
    for p in result.problems:
        click.echo(f"row {p.line}: {p.image}: {p.message}", err=True)
    m = result.calibration.metrics
    click.echo(
        f"catalogue v{result.catalog_version}: calibrated on {m['known_rows']} known + "
        f"{m['simulated_unknown_rows']} simulated-unknown scores; ECE {m['ece_before']:.3f} -> "
        f"{m['ece_after']:.3f}; unknown FPR {m['unknown_fpr_known_flagged']:.3f} "
        f"FNR {m['unknown_fnr_unknown_missed']:.3f}; report in {result.report_dir}"
    )
    click.echo(
        f"fusion policy (camera x scale x barcode): accept threshold "
        f"{policy.accept_threshold:.3f}, fitted on the same manifest; stored in the catalogue"
    )


def register(root: click.Group) -> None:
    root.add_command(recognize_cmd)
    root.add_command(calibrate_cmd)
