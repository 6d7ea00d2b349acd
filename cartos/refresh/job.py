"""``cartos model refresh``: fine-tune, export INT8, and let the gate decide.

One run, in this order, so that nothing half-made can be shipped:

1. fine-tune the backbone on the reference images (:mod:`cartos.refresh.train`) within
   the time budget;
2. export it to ONNX and quantise it to INT8 with a sample of the references, exactly
   as ``cartos model build`` does, and write its model card;
3. judge it (:mod:`cartos.refresh.gate`) against the current model: both build a
   catalogue from the same references, calibrate on the calibration manifest's even rows
   and answer its odd rows, the fixed historical test set (its image list is hashed into
   the report, so a later refresh can show it was judged on the same set); the INT8
   export must also agree with its own FP32 parent on the answers.

``MODEL_DIR/refresh.json`` records the verdict with every number; a rejected model stays
in MODEL_DIR for inspection but is marked so, and nothing ships it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cartos.catalog.manifest import ManifestRow, read_manifest
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.embedder import Embedder
from cartos.inference.preprocess import InputSpec, decode_image, to_tensor
from cartos.refresh.errors import RefreshError
from cartos.refresh.gate import GateSettings, GateVerdict, judge
from cartos.refresh.score import LabelledVectors, ModelScore, build_recognizer, score
from cartos.refresh.train import TrainReport, TrainSettings, fine_tune

LogFn = Callable[[str], None]
REPORT = "refresh.json"
QUANTISATION_IMAGES = 64
MAX_SIDE = 320
"""Decoded training images are shrunk to this longest side: crops of it still cover 224."""


@dataclass(frozen=True)
class RefreshResult:
    accepted: bool
    reason: str
    top1_before: float
    top1_after: float
    wall_s: float
    model: Path
    verdict: GateVerdict
    training: TrainReport
    report: dict[str, Any]
    """What ``MODEL_DIR/refresh.json`` holds."""

    def summary(self) -> dict[str, Any]:
        """The command's JSON line."""
        keys = ("accepted", "reason", "top1_before", "top1_after", "wall_s", "model")
        return {k: self.report[k] for k in keys}


def _shrink(image: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    factor = MAX_SIDE / max(h, w)
    if factor >= 1:
        return image
    return cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def _decoded(rows: Sequence[ManifestRow]) -> tuple[list[np.ndarray], list[ManifestRow]]:
    images, kept = [], []
    for row in rows:
        try:
            images.append(_shrink(decode_image(row.image)))
            kept.append(row)
        except Exception:  # a broken image is left out, as an import leaves it out
            continue
    return images, kept


def test_set_digest(rows: Sequence[ManifestRow]) -> str:
    """sha256 over the test set's (image name, SKU) pairs: its composition, recorded."""
    text = "\n".join(f"{Path(r.image_text).as_posix()}\t{r.sku.sku}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def _embed(embedder: Embedder, rows: Sequence[ManifestRow]) -> LabelledVectors:
    result = embedder.embed_paths([r.image for r in rows])
    ok = result.ok_index
    return LabelledVectors(result.vectors, [rows[i].sku.sku for i in ok])


def judge_models(
    current: Embedder,
    candidate: Embedder,
    references: Sequence[ManifestRow],
    calibration: Sequence[ManifestRow],
    test: Sequence[ManifestRow],
    candidate_fp32: Embedder | None = None,
) -> tuple[dict[str, ModelScore], dict[str, ModelScore], float | None]:
    """Both models scored on the same sets, and the candidate's INT8-vs-FP32 agreement."""
    records = list({r.sku.sku: r.sku for r in references}.values())
    targets = CalibrationTargets()
    scores = []
    answers = []
    for embedder in (current, candidate, candidate_fp32):
        if embedder is None:
            continue
        recognizer = build_recognizer(records, _embed(embedder, references),
                                      _embed(embedder, calibration), targets)
        test_vectors = _embed(embedder, test)
        scores.append({"historical": score(recognizer, test_vectors)})
        answers.append([a.sku for a in recognizer.recognize_vectors(test_vectors.vectors)])
    agreement = None
    if candidate_fp32 is not None:
        agreement = float(np.mean([a == b for a, b in zip(answers[1], answers[2], strict=True)]))
    return scores[0], scores[1], agreement


def refresh(
    references: Path,
    calibration: Path,
    out_dir: Path,
    settings: TrainSettings,
    gate: GateSettings,
    current_model: Path | None = None,
    log: LogFn = print,
) -> RefreshResult:
    """The whole refresh; see the module docstring."""
    from cartos.modelbuild.build import agreement as embedding_agreement
    from cartos.modelbuild.build import embed_tensors, ort_session, write_card
    from cartos.modelbuild.export import export_fp32, load_backbone
    from cartos.modelbuild.quantize import quantize_int8

    wall = time.monotonic()
    refs = read_manifest(references).rows
    cal_rows = read_manifest(calibration).rows
    if len({r.sku.sku for r in refs}) < 2:
        raise RefreshError(f"{references}: a refresh needs references of at least two SKUs")
    cal, test = cal_rows[0::2], cal_rows[1::2]
    if not test:
        raise RefreshError(f"{calibration}: needs at least two rows (calibration and test)")
    log(f"decoding {len(refs)} reference images ...")
    images, kept = _decoded(refs)
    skus = sorted({r.sku.sku for r in kept})
    column = {s: i for i, s in enumerate(skus)}
    backbone = load_backbone("lite0")
    log(f"fine-tuning on {len(images)} images of {len(skus)} SKUs "
        f"({settings.time_budget_s / 60:.1f} min budget) ...")
    training = fine_tune(backbone, images, [column[r.sku.sku] for r in kept], settings, log)

    out_dir.mkdir(parents=True, exist_ok=True)
    name = "efficientnet_lite0_refreshed_int8"
    int8_path = out_dir / f"{name}.onnx"
    spec = InputSpec(size=backbone.input_size)
    sample = [r.image for r in kept[:: max(1, len(kept) // QUANTISATION_IMAGES)]]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "refreshed_fp32.onnx"
        log("exporting and quantising ...")
        export_fp32(backbone, fp32_path)
        quant = quantize_int8(fp32_path, int8_path, sample, spec)
        tensors = np.stack([to_tensor(decode_image(p), spec) for p in sample])
        agree = embedding_agreement(embed_tensors(ort_session(fp32_path), tensors),
                                    embed_tensors(ort_session(int8_path), tensors))
        card = write_card(
            int8_path, name, "lite0", spec, backbone, quant, agree,
            {"machine": platform.machine()},
            source={"refreshed_from": Path(backbone.weights_file).name,
                    "references": references.name, "training": json.dumps(asdict(training))},
        )
        log("judging against the current model ...")
        current = Embedder(current_model)
        candidate = Embedder(int8_path, card=card)
        fp32 = Embedder(fp32_path, card=card, verify=False)
        try:
            before, after, int8_agreement = judge_models(current, candidate, kept, cal, test,
                                                         fp32)
        finally:
            for e in (current, candidate, fp32):
                e.close()
    verdict = judge(before, after, gate, int8_agreement)
    wall_s = round(time.monotonic() - wall, 1)
    summary = {
        "accepted": verdict.accepted, "reason": verdict.reason,
        "top1_before": round(before["historical"].top1, 4),
        "top1_after": round(after["historical"].top1, 4),
        "wall_s": wall_s, "model": str(int8_path),
    }
    report = {
        **summary,
        "reasons": verdict.reasons,
        "numbers": verdict.numbers,
        "training": asdict(training),
        "test_set": {"rows": len(test), "sha256": test_set_digest(test)},
        "gate": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(gate).items()},
        "model_sha256": card.sha256,
    }
    (out_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    result = RefreshResult(
        accepted=verdict.accepted,
        reason=verdict.reason,
        top1_before=before["historical"].top1,
        top1_after=after["historical"].top1,
        wall_s=wall_s,
        model=int8_path,
        verdict=verdict,
        training=training,
        report=report,
    )
    return result
