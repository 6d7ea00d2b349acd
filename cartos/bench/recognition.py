"""``cartos bench recognition``: the recognition core measured on real grocery photos.

Runs the GroZi-120 protocol (:mod:`cartos.bench.protocol`) end to end through
the product code — manifest import into a real SQLite catalogue, ``calibrate``,
recognition with the shipped INT8 model — then measures INT8 against FP32 side
by side, few-shot ``catalog add``, and 1-shot registration on the snacks set.
Prints a table and writes everything as JSON.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from cartos.bench.data import DataMissingError, load_rows, write_manifest
from cartos.bench.protocol import GroziSplit, grozi_split
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference import enrolment
from cartos.inference.calibration import (
    POSTERIOR_TOP_K,
    CalibrationTargets,
    expected_calibration_error,
)
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder
from cartos.inference.index import RecognitionIndex
from cartos.inference.model_card import ModelCard, card_path_for, shipped_model_path
from cartos.inference.preprocess import decode_image, to_tensor
from cartos.inference.recognizer import Recognition, Recognizer

LogFn = Callable[[str], None]


def _embed(embedder: Embedder, rows: list[Any]) -> np.ndarray:
    result = embedder.embed_paths([r.image for r in rows])
    if result.errors:
        raise RuntimeError(f"unreadable benchmark images: {list(result.errors.values())[:3]}")
    return result.vectors


def decision_metrics(
    known: list[Recognition], truth: list[str], unknown: list[Recognition]
) -> dict[str, Any]:
    """The issue's acceptance numbers for one set of answers."""
    correct = np.array([r.sku == t for r, t in zip(known, truth, strict=True)])
    acc_k = np.array([r.decision == "accept" for r in known])
    acc_u = np.array([r.decision == "accept" for r in unknown])
    sku_level_u = np.array([r.decision in ("accept", "confirm") for r in unknown])
    conf = np.array([r.confidence for r in known + unknown])
    right = np.concatenate([correct, np.zeros(len(unknown), bool)]).astype(float)
    accepted = acc_k.sum() + acc_u.sum()
    return {
        "known_queries": len(known),
        "unknown_queries": len(unknown),
        "top1_known": float(correct.mean()),
        "accept_rate_known": float(acc_k.mean()),
        "accept_precision": float(correct[acc_k].sum() / accepted) if accepted else float("nan"),
        "unknown_accepted_at_sku": float(acc_u.mean()),
        "unknown_sku_level_any": float(sku_level_u.mean()),
        "unknown_ends_unknown_family_brand": float(1 - sku_level_u.mean()),
        "ece_all": expected_calibration_error(conf, right),
        "ece_known_only": expected_calibration_error(conf[: len(known)], right[: len(known)]),
        "decisions_known": dict(Counter(r.decision for r in known)),
        "decisions_unknown": dict(Counter(r.decision for r in unknown)),
        "levels_unknown": dict(Counter(r.level for r in unknown)),
        "confirm_precision_known": float(correct[[r.decision == "confirm" for r in known]].mean())
        if any(r.decision == "confirm" for r in known)
        else float("nan"),
    }


def _fp32_model(work: Path, log: LogFn) -> Path | None:
    """Export the FP32 parent of the shipped model (needs the build extra)."""
    try:
        from cartos.modelbuild.export import export_fp32, load_backbone
    except ImportError:  # pragma: no cover - torch missing
        return None
    try:
        backbone = load_backbone("lite0")
    except Exception as exc:  # build extra missing
        log(f"FP32 comparison skipped: {exc}")
        return None
    path = work / "efficientnet_lite0_fp32.onnx"
    export_fp32(backbone, path)
    return path


def throughput_side_by_side(
    fp32: Path, int8: Path, images: list[Path], rounds: int = 5, seconds: float = 1.5
) -> dict[str, Any]:
    """Images/s of FP32 and INT8 at batch 1 and 8, default ORT settings, interleaved rounds."""
    spec = ModelCard.load(card_path_for(int8)).input_spec
    spec_img = np.stack([to_tensor(decode_image(p), spec) for p in images[:8]])
    sessions = {
        "fp32": ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]),
        "int8": ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]),
    }
    out: dict[str, Any] = {}
    for bs in (1, 8):
        batch = spec_img[:bs]
        rates: dict[str, list[float]] = {"fp32": [], "int8": []}
        for s in sessions.values():
            s.run(None, {"image": batch})
        for _ in range(rounds):
            for name, s in sessions.items():
                n = 0
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    s.run(None, {"image": batch})
                    n += 1
                rates[name].append(n * bs / (time.perf_counter() - start))
        med = {k: float(np.median(v)) for k, v in rates.items()}
        out[f"batch{bs}"] = {
            "fp32_images_per_s": round(med["fp32"], 1),
            "int8_images_per_s": round(med["int8"], 1),
            "int8_speedup": round(med["int8"] / med["fp32"], 2),
        }
    return out


def _relight(image: np.ndarray) -> np.ndarray:
    """Warmer, darker light: gamma 1.4 and a red/blue colour-temperature shift."""
    f = image.astype(np.float32) / 255.0
    f = f**1.4
    f *= np.array([0.85, 0.97, 1.12], np.float32)  # BGR
    return np.asarray(np.clip(f * 255, 0, 255), dtype=np.uint8)


def snacks_one_shot(embedder: Embedder, work: Path) -> dict[str, Any]:
    """Register 83 snacks from one pack shot each; top-1 of transformed copies."""
    rows = load_rows("snacks")
    db = work / "snacks.db"
    with CatalogStore(db) as store:
        start = time.perf_counter()
        for r in rows:
            enrolment.add_sku(
                store,
                embedder,
                SkuRecord(sku=r.sku, name=r.name, brand=r.brand or None, family=r.family or None),
                [r.image],
            )
        enrol_s = time.perf_counter() - start
        recognizer = Recognizer.from_store(store)
    images = [decode_image(r.image) for r in rows]
    transforms: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "identity": lambda im: im,
        "hflip": lambda im: im[:, ::-1],
        "rotate90": lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
        "rotate15": lambda im: cv2.warpAffine(
            im,
            cv2.getRotationMatrix2D((im.shape[1] / 2, im.shape[0] / 2), 15, 1.0),
            (im.shape[1], im.shape[0]),
            borderMode=cv2.BORDER_REPLICATE,
        ),
        "relit": _relight,
        "blur_small": lambda im: cv2.GaussianBlur(cv2.resize(im, (120, 120)), (3, 3), 0),
    }
    out: dict[str, Any] = {"skus": len(rows), "enrol_seconds_total": round(enrol_s, 2)}
    for name, fn in transforms.items():
        vecs = embedder.embed_arrays([np.ascontiguousarray(fn(im)) for im in images])
        answers = recognizer.recognize_vectors(vecs)
        out[f"top1_{name}"] = float(
            np.mean([a.sku == r.sku for a, r in zip(answers, rows, strict=True)])
        )
    return out


def run(out_json: Path | None, log: LogFn = print, with_fp32: bool = True) -> dict[str, Any]:
    try:
        split: GroziSplit = grozi_split()
    except DataMissingError as exc:
        raise SystemExit(f"benchmark needs the real data: {exc}") from exc
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
        },
        "protocol": {
            "catalogue_images": len(split.catalogue),
            "calibration_images": len(split.calibration),
            "known_queries": len(split.queries_known),
            "unknown_queries": len(split.queries_unknown),
            "unknown_skus": split.unknown_skus,
        },
    }
    embedder = Embedder()
    results["model"] = {"sha256": embedder.card.sha256, "views": list(embedder.views)}
    with tempfile.TemporaryDirectory(prefix="cartos-bench-") as tmp:
        work = Path(tmp)
        cat_manifest = write_manifest(work / "catalogue.csv", split.catalogue)
        cal_manifest = write_manifest(work / "calibration.csv", split.calibration)
        db = work / "grozi.db"
        log(f"importing {len(split.catalogue)} reference images ...")
        start = time.perf_counter()
        with CatalogStore(db) as store:
            report = enrolment.import_manifest(store, embedder, cat_manifest)
        results["import"] = {
            "seconds": round(time.perf_counter() - start, 1),
            "skus": report.skus_added,
            "images": report.exemplars_added,
            "problems": len(report.problems),
        }
        log(f"calibrating on {len(split.calibration)} images ...")
        start = time.perf_counter()
        with CatalogStore(db) as store:
            cal = calibrate_from_manifest(
                store, embedder, cal_manifest, CalibrationTargets(), work / "report"
            )
        results["calibration"] = {
            "seconds": round(time.perf_counter() - start, 1),
            **{k: v for k, v in cal.calibration.metrics.items() if not k.startswith("reliab")},
            "accept_threshold": cal.calibration.accept_threshold,
            "unknown_threshold": cal.calibration.unknown_threshold,
            "per_sku_thresholds": len(cal.calibration.class_accept_thresholds),
        }
        log("embedding queries ...")
        qk = _embed(embedder, split.queries_known)
        qu = _embed(embedder, split.queries_unknown)
        with CatalogStore(db) as store:
            recognizer = Recognizer.from_store(store, embedder)
        known = recognizer.recognize_vectors(qk)
        unknown = recognizer.recognize_vectors(qu)
        truth = [r.sku for r in split.queries_known]
        results["int8"] = decision_metrics(known, truth, unknown)

        sample = [decode_image(r.image) for r in split.queries_known[::40]]
        recognizer.recognize_images(sample[:3])  # warm-up
        lat = [r.latency_ms for r in recognizer.recognize_images(sample)]
        results["latency_ms_per_image"] = {
            "median": round(float(np.median(lat)), 2),
            "p95": round(float(np.percentile(lat, 95)), 2),
            "n": len(lat),
            "views": len(embedder.views),
        }

        freiburg = _freiburg(embedder, recognizer)
        if freiburg:
            results["freiburg_unknowns"] = freiburg

        log("catalog add of a new SKU with 5 images ...")
        results["catalog_add"] = _bench_add(db, work, embedder, split, qk, qu, known, unknown)

        if with_fp32:
            fp32_path = _fp32_model(work, log)
            if fp32_path is not None:
                log("FP32 side by side ...")
                results["fp32_vs_int8"] = _fp32_compare(
                    fp32_path, embedder, split, qk, qu, cal.calibration, known, unknown
                )
        log("snacks 1-shot ...")
        results["snacks_one_shot"] = snacks_one_shot(embedder, work)
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


def _freiburg(embedder: Embedder, recognizer: Recognizer) -> dict[str, Any] | None:
    try:
        from cartos.bench.data import dataset_dir

        folder = dataset_dir("freiburg")
    except DataMissingError:
        return None
    paths = sorted((folder / "images").rglob("*.jpg"))
    answers = recognizer.recognize_vectors(embedder.embed_paths(paths).vectors)
    return {
        "images": len(answers),
        "accepted_at_sku": float(np.mean([a.decision == "accept" for a in answers])),
        "sku_level_any": float(np.mean([a.decision in ("accept", "confirm") for a in answers])),
        "decisions": dict(Counter(a.decision for a in answers)),
    }


def _bench_add(
    db: Path,
    work: Path,
    embedder: Embedder,
    split: GroziSplit,
    qk: np.ndarray,
    qu: np.ndarray,
    known_before: list[Recognition],
    unknown_before: list[Recognition],
) -> dict[str, Any]:
    new_sku = split.unknown_skus[0]
    refs = [r for r in split.unknown_references if r.sku == new_sku]
    picks = [refs[int(i)] for i in np.linspace(0, len(refs) - 1, 5)]
    copy = work / "grozi_add.db"
    shutil.copyfile(db, copy)
    first = picks[0]
    record = SkuRecord(
        sku=new_sku,
        name=first.name,
        brand=first.brand,
        family=first.family,
        barcode=first.barcode or None,
    )
    with CatalogStore(copy) as store:
        start = time.perf_counter()
        enrolment.add_sku(store, embedder, record, [p.image for p in picks])
        seconds = time.perf_counter() - start
        after = Recognizer.from_store(store, top_k=POSTERIOR_TOP_K)
    before_all = known_before + unknown_before
    after_all = after.recognize_vectors(np.concatenate([qk, qu]))
    own = {len(qk) + i for i, r in enumerate(split.queries_unknown) if r.sku == new_sku}
    others = [i for i in range(len(after_all)) if i not in own]

    def core(r: Recognition) -> tuple[Any, ...]:
        return (r.decision, r.sku, r.level, r.confidence, r.unknown_score)

    def hint(r: Recognition) -> tuple[Any, ...]:
        return (r.family, r.brand)

    in_top2 = {i for i in others if new_sku in {c.sku for c in after_all[i].topk[:2]}}
    in_top10 = {i for i in others if new_sku in {c.sku for c in after_all[i].topk}}
    changed = [i for i in others if core(before_all[i]) != core(after_all[i])]
    hint_changed = [i for i in others if hint(before_all[i]) != hint(after_all[i])]
    return {
        "sku": new_sku,
        "images": 5,
        "seconds": round(seconds, 3),
        "other_queries": len(others),
        "other_answers_changed": len(changed),
        "other_answers_changed_new_sku_not_in_top2": len([i for i in changed if i not in in_top2]),
        "other_queries_with_new_sku_in_top2": len(in_top2),
        "fallback_hint_changed": len(hint_changed),
        "fallback_hint_changed_new_sku_not_in_top10": len(
            [i for i in hint_changed if i not in in_top10]
        ),
        "changed_examples": [
            {
                "before": before_all[i].to_dict(),
                "after": after_all[i].to_dict(),
            }
            for i in changed[:2]
        ],
        "new_sku_queries": len(own),
        "new_sku_top1_after": float(np.mean([after_all[i].sku == new_sku for i in own])),
        "new_sku_accepted_or_confirmed": float(
            np.mean([after_all[i].decision in ("accept", "confirm") for i in own])
        ),
    }


def _fp32_compare(
    fp32_path: Path,
    int8: Embedder,
    split: GroziSplit,
    qk: np.ndarray,
    qu: np.ndarray,
    calibration: Any,
    known: list[Recognition],
    unknown: list[Recognition],
) -> dict[str, Any]:
    """Whole FP32 pipeline (catalogue + queries) against the INT8 one."""
    # The FP32 parent has no card of its own; it shares the INT8 card's input contract.
    fp32 = Embedder(model_path=fp32_path, verify=False, views=int8.views, card=int8.card)
    cat = _embed(fp32, split.catalogue)
    fk = _embed(fp32, split.queries_known)
    fu = _embed(fp32, split.queries_unknown)
    from cartos.inference.projection import fit_projection

    labels = [r.sku for r in split.catalogue]
    records = [
        SkuRecord(sku=s, family=r.family or None, brand=r.brand or None)
        for s, r in {r.sku: r for r in split.catalogue}.items()
    ]
    index = RecognitionIndex(records, cat, labels, fit_projection(cat, np.asarray(labels)))
    rec = Recognizer(index, calibration)
    k32, u32 = rec.recognize_vectors(fk), rec.recognize_vectors(fu)
    a, b = known + unknown, k32 + u32
    cos = (np.concatenate([qk, qu]) * np.concatenate([fk, fu])).sum(axis=1)
    truth = [r.sku for r in split.queries_known]
    agree = np.array([x.sku == y.sku for x, y in zip(a, b, strict=True)])
    fp32_accepts = np.array([y.decision == "accept" for y in b])
    return {
        "top1_agreement": float(agree.mean()),
        "top1_agreement_known": float(agree[: len(known)].mean()),
        "top1_agreement_where_fp32_accepts": float(agree[fp32_accepts].mean()),
        "top1_agreement_where_fp32_margin_over_0.02": float(
            agree[np.array([y.topk[0].score - y.topk[1].score > 0.02 for y in b])].mean()
        ),
        "decision_agreement": float(
            np.mean([x.decision == y.decision for x, y in zip(a, b, strict=True)])
        ),
        "embedding_cosine_mean": float(cos.mean()),
        "embedding_cosine_p01": float(np.percentile(cos, 1)),
        "fp32_top1_known": float(np.mean([x.sku == t for x, t in zip(k32, truth, strict=True)])),
        "throughput": throughput_side_by_side(
            fp32_path, int8.model_path, [r.image for r in split.queries_known[:8]]
        ),
    }


def int8_throughput(work: Path, rounds: int = 9, seconds: float = 2.0) -> dict[str, Any]:
    """Throughput of the shipped INT8 model against its freshly exported FP32 parent."""
    fp32 = _fp32_model(work, print)
    if fp32 is None:
        raise SystemExit("the FP32 comparison needs the build extra: pip install 'cartos[build]'")
    rows = grozi_split().queries_known[:8]
    int8 = shipped_model_path()
    return {
        "machine": {"platform": platform.platform(), "onnxruntime": ort.__version__},
        "rounds": rounds,
        "seconds_per_round": seconds,
        **throughput_side_by_side(fp32, int8, [r.image for r in rows], rounds, seconds),
    }
