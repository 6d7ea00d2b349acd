"""``cartos demo``: a whole simulated shopping trip on the ``sim`` profile, no data needed.

By default it generates a catalogue of packaged products, imports and
calibrates it with the shipped INT8 model, starts the emulated
microcontroller on a pseudo-terminal and a replayed basket camera, and plays
a trip (scanned and unscanned items, a removal, an item in no catalogue)
through the real cart runtime, printing every decision, prompt and alert as
it happens and the final basket. ``--recognition-only`` shows the
recognition core alone: every query shot recognised and printed next to the
truth.
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
@click.option("--json", "as_json", is_flag=True,
              help="Last line: the final basket as JSON (items and alerts).")
@click.option("--recognition-only", is_flag=True,
              help="Only the recognition core: recognise every query shot and print it.")
@reports_errors
def demo_cmd(out: Path | None, skus: int, seed: int, as_json: bool,
             recognition_only: bool) -> None:
    """A simulated shopping trip: catalogue, emulated board, camera replay, the real runtime."""
    if recognition_only:
        _recognition_demo(out, skus, seed)
    else:
        _trip_demo(out, min(skus, 16), seed, as_json)


def _trip_demo(out: Path | None, skus: int, seed: int, as_json: bool) -> None:
    import json

    from cartos.runtime.decider import Decision
    from cartos.runtime.simulation import simulated_trip

    def said(decision: Decision) -> None:
        d = decision.to_dict()
        what = f"{d['quantity']} x {d['sku']}" if d["sku"] else "?"
        line = f"  [{d['kind']:6s}] {d['decision']:8s} {what:18s} conf {d['confidence']:.3f}"
        if d["alerts"]:
            line += f"  ALERT {', '.join(d['alerts'])}"
        if d["prompt"]:
            line += "  -> asks the shopper"
        click.echo(line, err=as_json)
        click.echo(f"           {d['reason']}", err=as_json)

    def answered(prompt: str, answer: str) -> None:
        click.echo(f"           shopper answers: {answer}", err=as_json)

    log = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = simulated_trip(skus=skus, seed=seed, log=log, on_decision=said,
                            on_answer=answered, keep=out)
    basket = result.basket
    final = {
        "items": [{"sku": i["sku"], "qty": i["qty"]} for i in basket["items"]],
        "alerts": [{"kind": a["kind"], "message": a["evidence"].get("message", "")}
                   for a in basket["alerts"]],
        "review": basket["review"],
        "mode": result.mode,
    }
    if as_json:
        click.echo(json.dumps(final))
        return
    click.echo("")
    click.echo(f"basket ({result.mode} mode):")
    for item in final["items"]:
        click.echo(f"  {item['qty']} x {item['sku']}")
    for alert in final["alerts"]:
        click.echo(f"  alert: {alert['kind']}: {alert['message']}")
    click.echo(f"  review queue: {final['review']} item(s)")


def _recognition_demo(out: Path | None, skus: int, seed: int) -> None:
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
