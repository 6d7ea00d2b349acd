"""``cartos bench refresh``: the refreshed backbone against the shipped one on real images.

GroZi-120's reference crops train the refresh and form the catalogue; its query crops
(a different video of each product) calibrate (even rows) and test (odd rows). The last
``holdout`` SKUs are kept out of the catalogue and out of training, so their queries are
unknown items: the test set measures unknown AUROC too, and the refresh cannot have seen
them. Both models are judged by the same code, in the same run, by the validation gate.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cartos.bench.data import load_rows, write_manifest
from cartos.refresh.gate import GateSettings
from cartos.refresh.job import refresh
from cartos.refresh.train import TrainSettings

LogFn = Callable[[str], None]


def prepare(work: Path, dataset: str, holdout: int) -> tuple[Path, Path, dict[str, Any]]:
    """references.csv and calibration.csv for one data set; returns them and their sizes."""
    rows = load_rows(dataset)
    skus = sorted({r.sku for r in rows})
    if holdout >= len(skus) - 2:
        raise ValueError(f"{dataset} has {len(skus)} SKUs; hold out fewer than {len(skus) - 2}")
    unknown = set(skus[len(skus) - holdout:]) if holdout else set()
    refs = [r for r in rows if r.split == "reference" and r.sku not in unknown]
    queries = sorted((r for r in rows if r.split == "query"), key=lambda r: (r.sku, r.crop_no))
    return (
        write_manifest(work / "references.csv", refs),
        write_manifest(work / "calibration.csv", queries),
        {"dataset": dataset, "skus": len(skus) - len(unknown), "unknown_skus": len(unknown),
         "reference_images": len(refs), "query_images": len(queries)},
    )


def run(work: Path, dataset: str, holdout: int, settings: TrainSettings,
        log: LogFn = print) -> dict[str, Any]:
    start = time.monotonic()
    references, calibration, sizes = prepare(work, dataset, holdout)
    result = refresh(references, calibration, work / "model", settings, GateSettings(), log=log)
    report = result.report
    return {
        "data": sizes,
        **result.summary(),
        "reasons": report["reasons"],
        "numbers": report["numbers"],
        "training": report["training"],
        "test_set": report["test_set"],
        "total_seconds": round(time.monotonic() - start, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
    }
