"""``cartos demo``: the whole recognition core on a generated catalogue, no data needed.

Generates packaged products, imports their reference shots into a real SQLite
catalogue with the shipped INT8 model, calibrates on half of the labelled
query shots, then recognises the other half plus products that are in no
catalogue, and prints every decision next to the truth.
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from pathlib import Path

import click

from cartos.catalog.store import CatalogStore
from cartos.cli.main import reports_errors
from cartos.inference import enrolment
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder
from cartos.inference.recognizer import Recognizer
from cartos.synth import SynthConfig, generate_catalogue, split_queries


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the generated catalogue, database and report here (default: a temp folder).",
)
@click.option("--skus", default=24, show_default=True, help="SKUs to generate.")
@click.option("--seed", default=0, show_default=True)
@reports_errors
def demo_cmd(out: Path | None, skus: int, seed: int) -> None:
    """Generate a catalogue, import, calibrate, recognise, and print the answers."""
    with tempfile.TemporaryDirectory(prefix="cartos-demo-") as tmp:
        root = out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        click.echo(f"generating {skus} SKUs into {root} ...")
        synth = generate_catalogue(
            root / "catalogue",
            SynthConfig(n_skus=skus, refs_per_sku=6, queries_per_sku=6, n_new=4, seed=seed),
        )
        cal_manifest, test_manifest = split_queries(synth)
        with test_manifest.open(newline="") as fh:
            test_rows = list(csv.DictReader(fh))
        embedder = Embedder()
        db = root / "catalogue.db"
        db.unlink(missing_ok=True)
        with CatalogStore(db) as store:
            report = enrolment.import_manifest(store, embedder, synth.manifest)
            click.echo(
                f"imported {report.exemplars_added} reference images of {report.skus_added} "
                f"SKUs -> catalogue v{report.catalog_version}"
            )
            cal = calibrate_from_manifest(
                store,
                embedder,
                cal_manifest,
                CalibrationTargets(holdout_fraction=0.15),
                root / "calibration-report",
            )
            m = cal.calibration.metrics
            click.echo(
                f"calibrated: ECE {m['ece_before']:.3f} -> {m['ece_after']:.3f}, report in "
                f"{cal.report_dir}"
            )
            recognizer = Recognizer.from_store(store, embedder)
        with synth.new_products.open(newline="") as fh:
            new_rows = list(csv.DictReader(fh))
        base = synth.queries.parent
        items = [(r, True) for r in test_rows] + [(r, False) for r in new_rows]
        paths = [(base if known else synth.new_products.parent) / r["image"] for r, known in items]
        vectors = embedder.embed_paths(paths).vectors
        answers = recognizer.recognize_vectors(vectors)
        click.echo("")
        click.echo(
            f"{'truth':12s} {'in catalogue':12s} {'decision':9s} {'level':7s} "
            f"{'answer':12s} {'conf':>5s} {'unk':>5s}"
        )
        tally: Counter[str] = Counter()
        for (row, known), ans in zip(items, answers, strict=True):
            where = ans.sku if ans.level == "sku" else (ans.family or ans.brand or "-")
            ok = (ans.sku == row["sku"]) if known else ans.decision not in ("accept", "confirm")
            tally[f"{'known' if known else 'new'}:{ans.decision}"] += 1
            tally["right" if ok else "wrong"] += 1
            click.echo(
                f"{row['sku']:12s} {'yes' if known else 'no':12s} {ans.decision:9s} "
                f"{ans.level:7s} {where or '-':12s} {ans.confidence:5.2f} "
                f"{ans.unknown_score:5.2f}{'' if ok else '   <- needs a person'}"
            )
        click.echo("")
        known_n = len(test_rows)
        click.echo(
            "known items: "
            + ", ".join(
                f"{k.split(':')[1]} {v}" for k, v in sorted(tally.items()) if k.startswith("known:")
            )
            + f" (of {known_n})"
        )
        click.echo(
            "never-seen items: "
            + ", ".join(
                f"{k.split(':')[1]} {v}" for k, v in sorted(tally.items()) if k.startswith("new:")
            )
            + f" (of {len(new_rows)})"
        )
        click.echo(f"right answer or safe hand-off: {tally['right']} of {len(items)}")


def register(root: click.Group) -> None:
    root.add_command(demo_cmd)
