"""The GroZi-120 evaluation protocol, written down once.

* 12 SKUs, chosen by a fixed seed, are held out as *unknown*: never enrolled,
  their query crops must not be accepted as anything.
* For every other SKU the reference side is split by block, never per image:
  the leading block (``calibration_fraction`` of its reference crops, in crop
  order) is the calibration slice, the rest is the catalogue. The leading
  block is separated from the query side by the whole catalogue block, so
  calibration images are at least as far from their nearest references as the
  queries are; a trailing slice would sit next to the catalogue and make the
  calibration optimistic.
* Queries are the query side of all 120 SKUs; the query side is never used
  for anything but measurement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from cartos.bench.data import DataRow, load_rows

UNKNOWN_SKUS = 12
CALIBRATION_FRACTION = 0.4


@dataclass
class GroziSplit:
    catalogue: list[DataRow]
    calibration: list[DataRow]
    queries_known: list[DataRow]
    queries_unknown: list[DataRow]
    unknown_skus: list[str]
    unknown_references: list[DataRow]


def grozi_split(
    seed: int = 0,
    unknown: int = UNKNOWN_SKUS,
    calibration_fraction: float = CALIBRATION_FRACTION,
) -> GroziSplit:
    rows = load_rows("grozi120")
    skus = sorted({r.sku for r in rows})
    held = set(np.random.default_rng(seed).choice(skus, unknown, replace=False).tolist())
    refs: dict[str, list[DataRow]] = defaultdict(list)
    for r in rows:
        if r.split == "reference":
            refs[r.sku].append(r)
    catalogue: list[DataRow] = []
    calibration: list[DataRow] = []
    for sku in skus:
        if sku in held:
            continue
        ordered = sorted(refs[sku], key=lambda r: r.crop_no)
        cut = round(len(ordered) * calibration_fraction)
        calibration.extend(ordered[:cut])
        catalogue.extend(ordered[cut:])
    return GroziSplit(
        catalogue=catalogue,
        calibration=calibration,
        queries_known=[r for r in rows if r.split == "query" and r.sku not in held],
        queries_unknown=[r for r in rows if r.split == "query" and r.sku in held],
        unknown_skus=sorted(held),
        unknown_references=sorted(
            (r for r in rows if r.split == "reference" and r.sku in held),
            key=lambda r: (r.sku, r.crop_no),
        ),
    )
