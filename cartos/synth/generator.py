"""Write a synthetic catalogue to disk: images plus the three CSV manifests.

The output has the same shape as a real store export (reference images with
a manifest, labelled query images, and images of products the store does not
list), so the demo and the tests exercise the real loading code paths.

Determinism is a hard requirement: the same seed and arguments produce
byte-identical files. Every image draws from its own random stream keyed by
(seed, SKU slot, kind, image number), so growing the catalogue or adding
queries never changes an image that already existed.

Loose produce (``n_produce``) is sold by weight and has no barcode, so its
rows leave barcode, brand and weights empty. Its designs, images and
popularity draw from streams of their own and its rows follow the packaged
rows, so the packaged part of the output is the same with or without it.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from cartos.catalog.manifest import KNOWN_COLUMNS
from cartos.synth.design import (
    DOMAIN_IMAGE,
    DOMAIN_PRODUCE_IMAGE,
    DOMAIN_PRODUCE_POPULARITY,
    MAX_CATALOGUE_SKUS,
    MAX_NOVEL_SKUS,
    MAX_PRODUCE_SKUS,
    MAX_VARIANTS_PER_LINE,
    ProduceDesign,
    SkuDesign,
    catalogue_designs,
    derive_rng,
    novel_designs,
    produce_designs,
    reference_counts,
)
from cartos.synth.errors import SynthError
from cartos.synth.render import (
    Image,
    PackImage,
    ShotStyle,
    photograph,
    query_style,
    reference_style,
    render_pack,
)
from cartos.synth.render_produce import photograph_produce

MANIFEST_HEADER: tuple[str, ...] = KNOWN_COLUMNS
IMAGE_FORMATS: tuple[str, ...] = ("jpg", "png")
JPEG_QUALITY = 92
_KIND_REFERENCE = 0
_KIND_QUERY = 1


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults make a small demo store in about a second."""

    n_skus: int = 20
    refs_per_sku: int = 5
    """Reference images of the most popular SKU (all SKUs when long_tail_ratio is 1)."""
    queries_per_sku: int = 3
    n_new: int = 3
    """Held-out SKUs that are never in the catalogue (open-set probes)."""
    new_queries_per_sku: int = 3
    variants_per_line: int = 3
    long_tail_ratio: float = 1.0
    """Reference count of the most popular SKU over that of the least popular."""
    occlusion_rate: float = 0.15
    """Share of query images with a hand over the item (references get a third of it)."""
    seed: int = 0
    image_format: str = "jpg"
    n_produce: int = 0
    """Loose-produce SKUs (sold by weight, no barcode), catalogued after the packaged ones."""
    query_floor: tuple[tuple[int, int], ...] = ()
    """``(first_n, count)`` pairs: the first ``first_n`` packaged SKUs get at least ``count``
    query photos. Photo k of a SKU does not depend on how many are taken, so a benchmark can
    measure a small catalogue on as many queries as a large one without changing any photo
    the large one sees."""

    def queries_for_slot(self, slot: int) -> int:
        """Query photos of the packaged SKU at catalogue position ``slot``."""
        floors = [count for first_n, count in self.query_floor if slot < first_n]
        return max([self.queries_per_sku, *floors])


@dataclass(frozen=True)
class SynthCatalogue:
    """Where a generated catalogue lives and what it contains."""

    root: Path
    manifest: Path
    queries: Path
    new_products: Path
    skus: list[SkuDesign]
    new_skus: list[SkuDesign] = field(default_factory=list)
    produce: list[ProduceDesign] = field(default_factory=list)
    """Loose-produce SKUs; their rows follow the packaged rows in both manifests."""


def validate_config(config: SynthConfig) -> None:
    """Reject impossible settings up front, with the field name in the message."""
    problems: list[str] = []
    if not 1 <= config.n_skus <= MAX_CATALOGUE_SKUS:
        problems.append(f"n_skus must be between 1 and {MAX_CATALOGUE_SKUS}, got {config.n_skus}")
    if config.refs_per_sku < 1:
        problems.append(f"refs_per_sku must be at least 1, got {config.refs_per_sku}")
    if config.queries_per_sku < 0:
        problems.append(f"queries_per_sku must be 0 or more, got {config.queries_per_sku}")
    if not 0 <= config.n_new <= MAX_NOVEL_SKUS:
        problems.append(f"n_new must be between 0 and {MAX_NOVEL_SKUS}, got {config.n_new}")
    if config.n_new > 0 and config.new_queries_per_sku < 1:
        problems.append(
            f"new_queries_per_sku must be at least 1 when n_new > 0, "
            f"got {config.new_queries_per_sku}"
        )
    if not 1 <= config.variants_per_line <= MAX_VARIANTS_PER_LINE:
        problems.append(
            f"variants_per_line must be between 1 and {MAX_VARIANTS_PER_LINE}, "
            f"got {config.variants_per_line}"
        )
    ratio = config.long_tail_ratio
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 1.0:
        problems.append(f"long_tail_ratio must be a finite number >= 1, got {ratio}")
    rate = config.occlusion_rate
    if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        problems.append(f"occlusion_rate must be between 0 and 1, got {rate}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        problems.append(f"seed must be a non-negative integer, got {config.seed!r}")
    n_produce = config.n_produce
    if (
        isinstance(n_produce, bool)
        or not isinstance(n_produce, int)
        or not 0 <= n_produce <= MAX_PRODUCE_SKUS
    ):
        problems.append(
            f"n_produce must be an integer between 0 and {MAX_PRODUCE_SKUS}, got {n_produce!r}"
        )
    for pair in config.query_floor:
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                 for v in pair):
            problems.append(f"query_floor entries must be (first_n, count) >= 0, got {pair!r}")
    if config.image_format not in IMAGE_FORMATS:
        problems.append(
            f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {config.image_format!r}"
        )
    if problems:
        raise SynthError("invalid synthetic catalogue config: " + "; ".join(problems))


def _encode(image: Image, image_format: str) -> bytes:
    if image_format == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(f".{image_format}", image, params)
    if not ok:  # pragma: no cover - only on a broken OpenCV build
        raise SynthError(f"OpenCV could not encode a {image_format} image")
    return bytes(buf.tobytes())


def _write_shots(
    root: Path,
    folder: Path,
    stem: str,
    count: int,
    shot: Callable[[int], Image],
    config: SynthConfig,
) -> list[str]:
    """Write ``shot(0..count-1)``; returns their paths relative to ``root``."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    for index in range(count):
        relative = folder / f"{stem}_{index:02d}.{config.image_format}"
        (root / relative).write_bytes(_encode(shot(index), config.image_format))
        paths.append(relative.as_posix())
    return paths


def _shoot(
    root: Path,
    folder: Path,
    stem: str,
    count: int,
    sku: SkuDesign,
    pack: PackImage,
    style: ShotStyle,
    config: SynthConfig,
    kind: int,
) -> list[str]:
    """Write ``count`` photographs of one packaged SKU; returns their relative paths."""

    def shot(index: int) -> Image:
        rng = derive_rng(config.seed, DOMAIN_IMAGE, sku.slot, kind, index)
        return photograph(pack, rng, style)

    return _write_shots(root, folder, stem, count, shot, config)


def _shoot_produce(
    root: Path,
    folder: Path,
    stem: str,
    count: int,
    design: ProduceDesign,
    style: ShotStyle,
    config: SynthConfig,
    kind: int,
) -> list[str]:
    """Write ``count`` photographs of one produce SKU, each of a freshly piled heap."""

    def shot(index: int) -> Image:
        keys = (config.seed, DOMAIN_PRODUCE_IMAGE, design.slot, kind, index)
        return photograph_produce(design, derive_rng(*keys, 0), derive_rng(*keys, 1), style)

    return _write_shots(root, folder, stem, count, shot, config)


def _produce_row(image: str, design: ProduceDesign) -> list[str]:
    """Barcode, brand and weights stay empty: produce is weighed and priced by the kilo."""
    return [image, design.sku_id, "", design.name, "", design.family, "", ""]


def _row(image: str, sku: SkuDesign) -> list[str]:
    return [
        image,
        sku.sku_id,
        sku.barcode,
        sku.name,
        sku.brand.name,
        sku.family.name,
        str(sku.weight_g),
        str(sku.weight_tol_g),
    ]


def _write_csv(path: Path, rows: Sequence[list[str]]) -> None:
    """Plain comma CSV with ``\\n`` line ends, so the bytes do not depend on the platform."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        writer.writerows(rows)


def _prepare_output(root: Path) -> None:
    """Create the output folder, refusing to mix with unrelated files.

    A folder holding a previous synthetic catalogue (it has ``manifest.csv``)
    has its ``images/`` replaced, so stale SKUs from a larger earlier run
    cannot linger next to the new manifests.
    """
    if root.exists() and not root.is_dir():
        raise SynthError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / "manifest.csv").is_file():
            raise SynthError(
                f"{root}: folder is not empty and holds no synthetic catalogue; "
                "choose an empty or new folder"
            )
        shutil.rmtree(root / "images", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


DEFAULT_CONFIG = SynthConfig()


def generate_catalogue(out_dir: str | Path, config: SynthConfig = DEFAULT_CONFIG) -> SynthCatalogue:
    """Generate and write a synthetic catalogue; see the module docstring for the layout.

    Layout under ``out_dir``: ``images/<sku>/ref_NN.<ext>`` and
    ``images/<sku>/query_NN.<ext>`` for catalogue SKUs (packaged, then produce),
    ``images/new/<sku>/query_NN.<ext>`` for held-out SKUs, and the CSVs
    ``manifest.csv`` (references), ``queries.csv`` and ``new_products.csv``.
    """
    validate_config(config)
    root = Path(out_dir)
    _prepare_output(root)

    skus = catalogue_designs(config.seed, config.n_skus, config.variants_per_line)
    new_skus = novel_designs(config.seed, config.n_new)
    ref_counts = reference_counts(config.seed, skus, config.refs_per_sku, config.long_tail_ratio)
    ref_style = reference_style(config.occlusion_rate)
    qry_style = query_style(config.occlusion_rate)

    ref_rows: list[list[str]] = []
    query_rows: list[list[str]] = []
    for position, (sku, n_refs) in enumerate(zip(skus, ref_counts, strict=True)):
        pack = render_pack(sku)
        folder = Path("images") / sku.sku_id
        refs = _shoot(root, folder, "ref", n_refs, sku, pack, ref_style, config, _KIND_REFERENCE)
        ref_rows += [_row(p, sku) for p in refs]
        n_queries = config.queries_for_slot(position)
        queries = _shoot(
            root, folder, "query", n_queries, sku, pack, qry_style, config, _KIND_QUERY
        )
        query_rows += [_row(p, sku) for p in queries]

    produce = produce_designs(config.seed, config.n_produce)
    produce_refs = reference_counts(
        config.seed,
        produce,
        config.refs_per_sku,
        config.long_tail_ratio,
        domain=DOMAIN_PRODUCE_POPULARITY,
    )
    for design, n_refs in zip(produce, produce_refs, strict=True):
        folder = Path("images") / design.sku_id
        refs = _shoot_produce(
            root, folder, "ref", n_refs, design, ref_style, config, _KIND_REFERENCE
        )
        ref_rows += [_produce_row(p, design) for p in refs]
        queries = _shoot_produce(
            root, folder, "query", config.queries_per_sku, design, qry_style, config, _KIND_QUERY
        )
        query_rows += [_produce_row(p, design) for p in queries]

    new_rows: list[list[str]] = []
    for sku in new_skus:
        folder = Path("images") / "new" / sku.sku_id
        shots = _shoot(
            root,
            folder,
            "query",
            config.new_queries_per_sku,
            sku,
            render_pack(sku),
            qry_style,
            config,
            _KIND_QUERY,
        )
        new_rows += [_row(p, sku) for p in shots]

    catalogue = SynthCatalogue(
        root=root,
        manifest=root / "manifest.csv",
        queries=root / "queries.csv",
        new_products=root / "new_products.csv",
        skus=skus,
        new_skus=new_skus,
        produce=produce,
    )
    _write_csv(catalogue.manifest, ref_rows)
    _write_csv(catalogue.queries, query_rows)
    _write_csv(catalogue.new_products, new_rows)
    return catalogue


def split_queries(catalogue: SynthCatalogue) -> tuple[Path, Path]:
    """Split the labelled queries into ``calibration.csv`` (even rows) and ``test.csv`` (odd).

    Both are written next to ``queries.csv`` so their relative image paths stay valid;
    neither half contains a reference image, which is what ``cartos calibrate`` needs.
    """
    with catalogue.queries.open(newline="") as fh:
        body = list(csv.reader(fh))[1:]
    cal, test = catalogue.root / "calibration.csv", catalogue.root / "test.csv"
    for path, part in ((cal, body[0::2]), (test, body[1::2])):
        _write_csv(path, part)
    return cal, test
