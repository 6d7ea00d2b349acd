"""``cartos synth``: a synthetic catalogue, its query set and held-out unknown products."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click

from cartos.cli.main import reports_errors


@click.command("synth")
@click.option("--skus", type=click.IntRange(1), required=True, help="Catalogue SKUs.")
@click.option("--refs", type=click.IntRange(1), default=5, show_default=True,
              help="Reference images of the most popular SKU (all of them with --long-tail 1).")
@click.option("--queries", type=click.IntRange(0), default=3, show_default=True,
              help="Query images per catalogue SKU (and per unknown product).")
@click.option("--unknown", type=click.IntRange(0), default=10, show_default=True,
              help="Held-out products in no catalogue (the open-set probes).")
@click.option("--long-tail", "long_tail", type=click.FloatRange(1.0), default=1.0,
              show_default=True,
              help="Reference count of the most popular SKU over the least popular one's.")
@click.option("--variants", type=click.IntRange(1), default=3, show_default=True,
              help="Flavour/size variants per product line (near-duplicates sharing a layout).")
@click.option("--produce", type=click.IntRange(0), default=0, show_default=True,
              help="Loose-produce SKUs sold by weight.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (replaced if it holds an earlier catalogue).")
@reports_errors
def synth_cmd(skus: int, refs: int, queries: int, unknown: int, long_tail: float,
              variants: int, produce: int, seed: int, out_dir: Path) -> None:
    """Render a deterministic synthetic catalogue: packs in brand palettes, families of
    near-duplicates, valid EAN-13 barcodes, weights, long-tail reference counts, and photos
    with perspective, light, blur, noise, hands and basket mesh.

    Writes DIR/references.csv, DIR/queries.csv and DIR/unknown.csv in the catalogue manifest
    format (plus the images), ready for `cartos catalog import DIR/references.csv`.
    """
    from cartos.synth.generator import SynthConfig, generate_catalogue

    config = SynthConfig(n_skus=skus, refs_per_sku=refs, queries_per_sku=queries,
                         n_new=unknown, new_queries_per_sku=max(1, queries),
                         variants_per_line=variants, long_tail_ratio=long_tail,
                         n_produce=produce, seed=seed)
    start = time.perf_counter()
    catalogue = generate_catalogue(out_dir, config)
    references, unknown_csv = out_dir / "references.csv", out_dir / "unknown.csv"
    shutil.copyfile(catalogue.manifest, references)
    shutil.copyfile(catalogue.new_products, unknown_csv)
    rows = {name: sum(1 for _ in path.open()) - 1
            for name, path in (("references", references), ("queries", catalogue.queries),
                               ("unknown", unknown_csv))}
    click.echo(json.dumps({"out": str(out_dir), "skus": skus + produce, "images": rows,
                           "seconds": round(time.perf_counter() - start, 1)}))


def register(root: click.Group) -> None:
    root.add_command(synth_cmd)
