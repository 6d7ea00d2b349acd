"""``cartos catalog …``: import, add, correct, discontinue, rebuild, list, show, history."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from cartos.catalog.errors import UnknownSkuError
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.cli.main import db_option, emit_json, reports_errors
from cartos.inference import corrections, enrolment
from cartos.inference.catalogue_model import check_signature, embedder_for


def _print_report(report: enrolment.ImportReport) -> None:
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    for p in report.problems:
        click.echo(f"row {p.line}: {p.image}: {p.message}", err=True)
    click.echo(
        f"catalogue v{report.catalog_version}: {report.skus_added} SKUs added, "
        f"{report.skus_updated} updated, {report.exemplars_added} images added, "
        f"{report.exemplars_skipped} already present, {len(report.problems)} rows skipped"
        + (" (projection fitted)" if report.projection_fitted else "")
    )


@click.group("catalog")
def catalog() -> None:
    """Manage the store catalogue (SKUs, reference embeddings, prototypes)."""


@catalog.command("import")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="Backbone to embed with: a model file or a folder holding one with its card "
                   "(`cartos model build/refresh --out`). Recorded in the catalogue, so "
                   "`calibrate` and `recognize` use it too. [default: the model the catalogue "
                   "was built with, else the shipped one]")
@reports_errors
def import_cmd(manifest: Path, db: Path, model: Path | None) -> None:
    """Import a retailer manifest (CSV: image,sku,barcode,name,brand,family,weight_g,weight_tol_g).

    Idempotent: images already in the catalogue are skipped. Broken or missing
    images are reported by row and skipped; the rest is applied atomically.
    """
    with CatalogStore(db) as store:
        embedder = embedder_for(store, model)
        report = enrolment.import_manifest(store, embedder, manifest, progress=sys.stderr.isatty())
    _print_report(report)
    if report.problems:
        sys.exit(1)


@catalog.command("add")
@db_option
@click.option("--sku", required=True, help="SKU code to register or extend.")
@click.option("--name", default="", help="Product name.")
@click.option("--brand", default=None)
@click.option("--family", default=None)
@click.option("--barcode", default=None, help="GTIN/EAN/UPC digits (kept as text).")
@click.option("--weight-g", type=float, default=None, help="Nominal weight in grams.")
@click.option("--weight-tol-g", type=float, default=None, help="Weight tolerance in grams.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@reports_errors
def add_cmd(
    db: Path,
    sku: str,
    name: str,
    brand: str | None,
    family: str | None,
    barcode: str | None,
    weight_g: float | None,
    weight_tol_g: float | None,
    images: tuple[Path, ...],
) -> None:
    """Register (or extend) one SKU from 1-50 reference images; no retraining."""
    if barcode is not None and not barcode.isdigit():
        raise click.BadParameter("barcode must be digits", param_hint="--barcode")
    record = SkuRecord(
        sku=sku,
        name=name,
        barcode=barcode,
        brand=brand,
        family=family,
        weight_g=weight_g,
        weight_tol_g=weight_tol_g,
    )
    with CatalogStore(db) as store:
        report = enrolment.add_sku(store, embedder_for(store), record, list(images))
    _print_report(report)


@catalog.command("correct")
@db_option
@click.option("--sku", required=True, help="The SKU the item really is.")
@click.option("--id", "correction_id", required=True, help="Correction id; re-applying is a no-op.")
@click.option(
    "--memory-per-sku",
    type=click.IntRange(min=1),
    default=corrections.DEFAULT_MEMORY_PER_SKU,
    show_default=True,
    help="Exemplars kept per SKU; older corrections beyond it are thinned by herding.",
)
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def correct_cmd(db: Path, sku: str, correction_id: str, memory_per_sku: int, image: Path) -> None:
    """Teach this catalogue that IMAGE shows SKU (a confirmed answer from this cart)."""
    with CatalogStore(db) as store:
        result = corrections.apply_correction(
            store, embedder_for(store), sku, image, correction_id, memory_per_sku=memory_per_sku
        )
    if not result.applied:
        click.echo(f"catalogue v{result.catalog_version}: {correction_id} was already applied")
        return
    click.echo(
        f"catalogue v{result.catalog_version}: {sku} corrected by {correction_id}, "
        f"{result.corrections}/{result.slots} corrections kept next to "
        f"{result.references} references, {len(result.evicted)} evicted"
    )


@catalog.command("discontinue")
@db_option
@click.argument("sku")
@click.option("--successor", default=None, help="SKU that replaces it.")
@reports_errors
def discontinue_cmd(db: Path, sku: str, successor: str | None) -> None:
    """Remove a SKU from recognition and record its successor."""
    with CatalogStore(db) as store:
        version = enrolment.discontinue(store, sku, successor)
    click.echo(
        f"catalogue v{version}: {sku} discontinued"
        + (f", successor {successor}" if successor else "")
    )


@catalog.command("rebuild")
@db_option
@reports_errors
def rebuild_cmd(db: Path) -> None:
    """Refit the shared projection and all prototypes (then re-run `cartos calibrate`)."""
    with CatalogStore(db) as store:
        version = enrolment.rebuild(store)
    click.echo(f"catalogue v{version}: rebuilt; calibration is stale until recalibrated")


@catalog.command("list")
@db_option
@click.option("--all", "show_all", is_flag=True, help="Include discontinued SKUs.")
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def list_cmd(db: Path, show_all: bool, as_json: bool) -> None:
    """List SKUs with their reference-image counts."""
    with CatalogStore(db) as store:
        records = store.list_skus(status=None if show_all else "active")
        counts = store.exemplar_counts()
    for r in records:
        if as_json:
            emit_json({**asdict(r), "exemplars": counts.get(r.sku, 0)})
        else:
            click.echo(
                f"{r.sku:20s} {r.status:12s} {counts.get(r.sku, 0):4d} img  "
                f"{(r.brand or '-')[:18]:18s} {(r.family or '-')[:18]:18s} {r.name}"
            )


@catalog.command("show")
@db_option
@click.argument("sku")
@reports_errors
def show_cmd(db: Path, sku: str) -> None:
    """Show one SKU as JSON."""
    with CatalogStore(db) as store:
        rec = store.get_sku(sku)
        if rec is None:
            raise UnknownSkuError(f"no SKU {sku!r} in {db}")
        ex = store.exemplars(skus=[sku])
        emit_json({**asdict(rec), "exemplars": len(ex), "sources": ex.sources[:10]})


@catalog.command("history")
@db_option
@reports_errors
def history_cmd(db: Path) -> None:
    """Catalogue versions, oldest first."""
    with CatalogStore(db) as store:
        for row in store.history():
            click.echo(f"v{row.version:<5d} {row.created_at}  {row.kind:12s} {row.summary}")


@catalog.command("plan-add")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.option("--collision-percentile", type=click.FloatRange(50, 100), default=95.0,
              show_default=True,
              help="A new SKU this close to an existing one (percentile of existing SKUs' "
                   "nearest-neighbour similarity) is a predicted collision.")
@click.option("--min-references", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@reports_errors
def plan_add_cmd(manifest: Path, db: Path, collision_percentile: float, min_references: int,
                 as_json: bool) -> None:
    """Before new SKUs go live: predicted collisions with existing SKUs, the accuracy impact
    on their neighbours, and which need more reference images. The catalogue is only read."""
    import numpy as np

    from cartos.catalog.manifest import read_manifest
    from cartos.inference.expansion import PlanSettings, plan_expansion
    from cartos.inference.index import CatalogueSnapshot

    parsed = read_manifest(manifest)
    for problem in parsed.problems:
        click.echo(f"row {problem.line}: {problem.image}: {problem.message}", err=True)
    with CatalogStore(db) as store:
        embedder = embedder_for(store)
        check_signature(store, embedder)
        snapshot = CatalogueSnapshot.from_store(store)
    items = [(i, row.image, row.image_text) for i, row in enumerate(parsed.rows)]
    vectors, problems = enrolment.embed_items(embedder, items, progress=sys.stderr.isatty())
    for p in problems:
        click.echo(f"{p.image}: {p.message}", err=True)
    by_sku: dict[str, list[np.ndarray]] = {}
    for i, row in enumerate(parsed.rows):
        if i in vectors:
            by_sku.setdefault(row.sku.sku, []).append(vectors[i])
    records = [r for r in parsed.skus if r.sku in by_sku]
    plan = plan_expansion(snapshot, records, {s: np.stack(v) for s, v in by_sku.items()},
                          PlanSettings(collision_percentile=collision_percentile,
                                       min_references=min_references))
    if as_json:
        emit_json(plan.to_dict())
        return
    click.echo("| new SKU | refs | nearest existing | similarity (percentile) | collision | "
               "own refs recognised | needs more references |")
    click.echo("|---|---|---|---|---|---|---|")
    for n in plan.new:
        click.echo(f"| {n.sku} | {n.references} | {n.nearest} | {n.similarity:.3f} "
                   f"({n.similarity_percentile:.0f}) | {'yes' if n.collision else 'no'} | "
                   f"{n.self_recognised:.0%} | {'; '.join(n.needs_more_references) or '-'} |")
    click.echo("\n| existing SKU | near new | own refs recognised before → after |")
    click.echo("|---|---|---|")
    for m in plan.neighbours:
        click.echo(f"| {m.sku} | {', '.join(m.near)} | {m.self_recognised_before:.0%} → "
                   f"{m.self_recognised_after:.0%} |")


def register(root: click.Group) -> None:
    root.add_command(catalog)
