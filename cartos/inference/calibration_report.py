"""The calibration report: JSON + Markdown + a reliability-diagram PNG.

The report is stored in the catalogue next to the calibration it documents
(same catalogue version) and written to disk for people, so that any claim of
"calibrated confidence" can be traced to the thresholds and error rates that
back it.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cartos.inference.calibration import Calibration

REPORT_JSON = "calibration_report.json"
REPORT_MD = "calibration_report.md"
RELIABILITY_PNG = "reliability.png"


def reliability_png(bins_before: list[dict[str, Any]], bins_after: list[dict[str, Any]]) -> bytes:
    """Draw accuracy vs confidence per bin (before: grey, after: blue) as PNG bytes."""
    size, pad = 480, 50
    img = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)

    def xy(conf: float, acc: float) -> tuple[int, int]:
        return int(pad + conf * size), int(pad + (1 - acc) * size)

    cv2.rectangle(img, (pad, pad), (pad + size, pad + size), (0, 0, 0), 1)
    for t in np.linspace(0, 1, 6):
        x, y = xy(float(t), float(t))
        cv2.line(img, (x, pad + size), (x, pad + size + 5), (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (x - 12, pad + size + 20), 0, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (pad - 35, y + 4), 0, 0.4, (0, 0, 0), 1)
    cv2.line(img, xy(0, 0), xy(1, 1), (160, 160, 160), 1, cv2.LINE_AA)
    for bins, colour in ((bins_before, (150, 150, 150)), (bins_after, (200, 80, 0))):
        pts = [
            xy(b["confidence"], b["accuracy"])
            for b in bins
            if b["count"] and not math.isnan(b["confidence"])
        ]
        for a, b in itertools.pairwise(pts):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
    cv2.putText(img, "confidence", (pad + size // 2 - 40, pad + size + 40), 0, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "accuracy", (5, pad - 15), 0, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "before (softmax)", (pad + 10, pad + 20), 0, 0.5, (150, 150, 150), 1)
    cv2.putText(img, "after (calibrated)", (pad + 10, pad + 40), 0, 0.5, (200, 80, 0), 1)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - PNG encoding of a plain array does not fail
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())


def report_dict(cal: Calibration) -> dict[str, Any]:
    m = cal.metrics
    return {
        "catalog_version": cal.catalog_version,
        "thresholds": {
            "accept": cal.accept_threshold,
            "confirm": cal.confirm_threshold,
            "unknown": cal.unknown_threshold,
            "family": cal.family_threshold,
            "brand": cal.brand_threshold,
            "per_sku_accept": cal.class_accept_thresholds,
        },
        "temperature": cal.temperature,
        "targets": cal.targets,
        "measured": {k: v for k, v in m.items() if not k.startswith("reliability")},
        "reliability": {
            "before": m.get("reliability_before", []),
            "after": m.get("reliability_after", []),
        },
    }


def report_markdown(cal: Calibration) -> str:
    m = cal.metrics
    t = cal.targets
    lines = [
        f"# Calibration report — catalogue version {cal.catalog_version}",
        "",
        f"Fitted on {m['known_rows']} known-item scores and {m['simulated_unknown_rows']} "
        f"simulated-unknown scores ({m['folds']} folds, {m['held_out_skus_per_fold']} SKUs "
        "held out per fold).",
        "",
        "| threshold | value |",
        "|---|---|",
        f"| accept (global; target precision {t['accept_precision']}) | "
        f"{cal.accept_threshold:.4f} |",
        f"| confirm (target precision {t['confirm_precision']}) | {cal.confirm_threshold:.4f} |",
        f"| unknown (target false-unknown rate {t['false_unknown_rate']}) | "
        f"{cal.unknown_threshold:.4f} |",
        f"| family fallback (target precision {t['group_precision']}) | "
        f"{cal.family_threshold:.4f} |",
        f"| brand fallback | {cal.brand_threshold:.4f} |",
        f"| SKUs with a raised accept threshold | {len(cal.class_accept_thresholds)} |",
        f"| softmax temperature | {cal.temperature:.4f} |",
        "",
        "| measured on the calibration set | value |",
        "|---|---|",
        f"| top-1 on known items | {m['top1_known']:.4f} |",
        f"| ECE before (softmax top-1) | {m['ece_before']:.4f} |",
        f"| ECE after (calibrated confidence) | {m['ece_after']:.4f} |",
        f"| unknown FPR (known items flagged unknown) | {m['unknown_fpr_known_flagged']:.4f} |",
        f"| unknown FNR (held-out items not flagged) | {m['unknown_fnr_unknown_missed']:.4f} |",
        f"| accept rate on known items | {m['accept_rate_known']:.4f} |",
        f"| accept precision | {m['accept_precision']:.4f} |",
        f"| held-out items accepted | {m['unknown_accepted_rate']:.4f} |",
        "",
        f"![reliability diagram]({RELIABILITY_PNG})",
        "",
    ]
    return "\n".join(lines)


def report_files(cal: Calibration) -> dict[str, bytes]:
    """The same three files as bytes, for storage in the catalogue."""
    return {
        REPORT_JSON: (json.dumps(report_dict(cal), indent=2, sort_keys=True) + "\n").encode(),
        REPORT_MD: report_markdown(cal).encode(),
        RELIABILITY_PNG: reliability_png(
            cal.metrics.get("reliability_before", []), cal.metrics.get("reliability_after", [])
        ),
    }


def write_report(cal: Calibration, out_dir: Path) -> list[Path]:
    """Write the three report files into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in report_files(cal).items():
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths
