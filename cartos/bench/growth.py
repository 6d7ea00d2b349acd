"""``cartos bench growth``: how recognition degrades as the catalogue grows.

The question a retailer asks before enrolling 10,000 SKUs is not "what is top-1 on
120 products" but "what happens to automation, silent errors and review work when
the catalogue gets ten times bigger, and would a plain classifier do better". This
benchmark answers it on the synthetic catalogue (:mod:`cartos.synth.generator`),
because only a generator gives thousands of SKUs with known ground truth, a
long-tailed reference count, near-duplicate variants and held-out unknown products.

Protocol, chosen so the points of the curve are comparable:

* ONE catalogue of ``max(sizes)`` SKUs is generated (long tail: the most popular SKU
  has ``refs`` references, the least popular ``refs / long_tail``), plus ``unknown``
  products of brands no catalogue contains. Each size uses the FIRST N SKUs, so sizes
  are nested and every seed is fixed: a SKU keeps its images at every size.
* Every image is embedded once with the shipped INT8 model, original view only
  (the product default also averages a mirrored view; one view halves the embedding
  time and is applied to both systems alike). Images and embeddings are cached.
* Per size, the product's prototype recogniser is built in memory exactly as
  ``catalog import`` builds it (within-SKU whitening fitted on the references,
  :func:`cartos.inference.projection.fit_projection`) and calibrated with the
  product's :func:`cartos.inference.calibrate.fit_calibration` on the EVEN query rows;
  everything is measured on the ODD rows. The closed-set baseline is a softmax head
  (multinomial logistic regression) trained on the same reference embeddings.
* "Automation at 99 %" is the same procedure for both systems: on the calibration
  half, the lowest confidence threshold whose accepted answers reach 99 % precision;
  applied unchanged to the test half, where the share accepted and the precision
  actually achieved are reported. Confidence is the calibrated ``confidence`` of the
  recogniser, and the max softmax probability of the head.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cartos.catalog.manifest import read_manifest
from cartos.catalog.records import SkuRecord
from cartos.inference.calibrate import fit_calibration
from cartos.inference.calibration import (
    NEVER,
    CalibrationTargets,
    softmax,
    threshold_for_precision,
)
from cartos.inference.embedder import Embedder
from cartos.inference.index import CatalogueSnapshot, RecognitionIndex
from cartos.inference.preprocess import decode_image
from cartos.inference.projection import fit_projection
from cartos.inference.recognizer import Recognizer

LogFn = Callable[[str], None]

PRECISION_TARGET = 0.99
EVENT_UNKNOWN_SHARE = 0.05
"""Share of add events that are items outside the catalogue, for "review per 1,000 events".

The benchmark's own query pool is no mix a store sees (its unknown share falls from a half
to a twentieth as the catalogue grows), so review volume is reported for a fixed mix.
5 % is an assumption, not a measurement; the JSON carries the two rates it is made of."""
EMBED_VIEWS: tuple[str, ...] = ("orig",)
CACHE_FORMAT = 1
"""Bumped whenever what the cache holds changes meaning; part of the cache key."""
LATENCY_QUERIES = 200
BACKBONE_IMAGES = 40
_MIB = 1024.0 * 1024.0


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class GrowthParams:
    """Everything that decides the images and their embeddings (the cache key)."""

    max_skus: int
    refs: int = 5
    queries: int = 4
    unknown: int = 50
    long_tail: float = 4.0
    seed: int = 0

    def key(self, model_sha256: str) -> str:
        """Short hash of the parameters, the model and the views: one cache folder each."""
        blob = json.dumps(
            {**asdict(self), "model": model_sha256, "views": list(EMBED_VIEWS),
             "format": CACHE_FORMAT},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class GrowthData:
    """All embeddings of one generated catalogue, in SKU slot order."""

    sku_order: list[str]
    """Catalogue SKUs in slot order: the first N form the size-N catalogue."""
    records: dict[str, SkuRecord]
    ref_vectors: np.ndarray
    ref_skus: np.ndarray
    query_vectors: np.ndarray
    query_skus: np.ndarray
    unknown_vectors: np.ndarray
    query_images: list[Path]


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cartos" / "growth"


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _embed_manifest(embedder: Embedder, manifest: Path, log: LogFn) -> np.ndarray:
    rows = read_manifest(manifest).rows
    chunk, parts = 256, []
    for start in range(0, len(rows), chunk):
        result = embedder.embed_paths([r.image for r in rows[start : start + chunk]])
        if result.errors:
            raise RuntimeError(f"{manifest}: unreadable images {list(result.errors.values())[:3]}")
        parts.append(result.vectors)
        if start and start % (chunk * 8) == 0:
            log(f"  {manifest.name}: {start}/{len(rows)} embedded")
    if not parts:
        return np.zeros((0, embedder.dim), np.float32)
    return np.concatenate(parts).astype(np.float32)


def load_or_build(
    params: GrowthParams, cache_root: Path, embedder: Embedder, log: LogFn
) -> tuple[GrowthData, dict[str, Any]]:
    """The catalogue's embeddings, generated and embedded only when the cache lacks them.

    ``meta.json`` is written last, so a run killed half way leaves no folder that looks
    complete; such a folder is removed and rebuilt.
    """
    from cartos.synth.generator import SynthConfig, generate_catalogue

    folder = cache_root / params.key(embedder.card.sha256)
    meta_path = folder / "meta.json"
    emb = folder / "embeddings"
    cat = folder / "catalogue"
    start = time.perf_counter()
    hit = meta_path.is_file()
    meta: dict[str, Any]
    if hit:
        meta = json.loads(meta_path.read_text())
    else:
        if folder.exists():
            shutil.rmtree(folder)
        log(f"generating {params.max_skus} SKUs + {params.unknown} unknown products ...")
        config = SynthConfig(
            n_skus=params.max_skus,
            refs_per_sku=params.refs,
            queries_per_sku=params.queries,
            n_new=params.unknown,
            new_queries_per_sku=max(1, params.queries),
            long_tail_ratio=params.long_tail,
            seed=params.seed,
        )
        generate_catalogue(cat, config)
        generated = time.perf_counter()
        log(f"  rendered in {generated - start:.0f} s; embedding ...")
        emb.mkdir(parents=True, exist_ok=True)
        for name, manifest in (("refs", "manifest.csv"), ("queries", "queries.csv"),
                               ("unknown", "new_products.csv")):
            _atomic_save(emb / f"{name}.npy", _embed_manifest(embedder, cat / manifest, log))
        meta = {"params": asdict(params), "model_sha256": embedder.card.sha256,
                "views": list(EMBED_VIEWS), "render_seconds": round(generated - start, 1),
                "embed_seconds": round(time.perf_counter() - generated, 1)}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    refs = read_manifest(cat / "manifest.csv").rows
    queries = read_manifest(cat / "queries.csv").rows
    records: dict[str, SkuRecord] = {}
    for r in refs:
        records.setdefault(r.sku.sku, r.sku)  # first appearance: slot order
    data = GrowthData(
        sku_order=list(records),
        records=records,
        ref_vectors=np.load(emb / "refs.npy"),
        ref_skus=np.array([r.sku.sku for r in refs]),
        query_vectors=np.load(emb / "queries.npy"),
        query_skus=np.array([r.sku.sku for r in queries]),
        unknown_vectors=np.load(emb / "unknown.npy"),
        query_images=[r.image for r in queries],
    )
    info = {
        "dir": str(folder),
        "hit": hit,
        "seconds": round(time.perf_counter() - start, 1),
        "render_seconds": meta["render_seconds"],
        "embed_seconds": meta["embed_seconds"],
        "images": len(refs) + len(queries) + len(data.unknown_vectors),
    }
    return data, info


# --------------------------------------------------------------------------- the baseline


@dataclass
class SoftmaxHead:
    """Closed-set baseline: a linear layer + softmax over the catalogue's SKUs.

    What a team without an open-set design would ship: train a classifier head on the
    reference embeddings. It cannot say "none of these", every SKU added means
    retraining it, and its only confidence is the max softmax probability.
    """

    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        z = (np.asarray(vectors, np.float32) - self.mean) / self.scale
        return np.asarray(z @ self.weights + self.bias, dtype=np.float32)

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        return softmax(self.logits(np.atleast_2d(vectors)), 1.0)

    @property
    def nbytes(self) -> int:
        return int(self.mean.nbytes + self.scale.nbytes + self.weights.nbytes + self.bias.nbytes)

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        labels: Sequence[str],
        steps: int = 300,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
    ) -> SoftmaxHead:
        """Full-batch Adam on the mean cross-entropy; deterministic (zero initialisation).

        Inputs are standardised per feature first: unit embeddings have tiny coordinates,
        and Adam's step size is only meaningful on a common scale.
        """
        x = np.asarray(vectors, np.float32)
        classes, y = np.unique(np.asarray(labels), return_inverse=True)
        n, d = x.shape
        c = len(classes)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        scale = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        z = (x - mean) / scale
        w = np.zeros((d, c), np.float32)
        b = np.zeros(c, np.float32)
        onehot = np.zeros((n, c), np.float32)
        onehot[np.arange(n), y] = 1.0
        mw, vw = np.zeros_like(w), np.zeros_like(w)
        mb, vb = np.zeros_like(b), np.zeros_like(b)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            logit = z @ w + b
            logit -= logit.max(axis=1, keepdims=True)
            p = np.exp(logit)
            p /= p.sum(axis=1, keepdims=True)
            g = (p - onehot) / n
            gw = z.T @ g + weight_decay * w
            gb = g.sum(axis=0)
            mw = beta1 * mw + (1 - beta1) * gw
            vw = beta2 * vw + (1 - beta2) * gw * gw
            mb = beta1 * mb + (1 - beta1) * gb
            vb = beta2 * vb + (1 - beta2) * gb * gb
            lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
            w -= (lr_t * mw / (np.sqrt(vw) + eps)).astype(np.float32)
            b -= (lr_t * mb / (np.sqrt(vb) + eps)).astype(np.float32)
        return cls([str(s) for s in classes], mean, scale, w, b)


# --------------------------------------------------------------------------- the metrics


@dataclass(frozen=True)
class Operating:
    """An accept threshold chosen on one half and what it does on the other."""

    threshold: float | None
    """None: no threshold reached the target precision on the calibration half."""
    automation: float
    precision: float | None
    silent_error: float


def automation_at_precision(
    cal_conf: np.ndarray,
    cal_correct: np.ndarray,
    test_conf: np.ndarray,
    test_correct: np.ndarray,
    precision: float = PRECISION_TARGET,
) -> Operating:
    """Pick the threshold on the calibration half, measure it on the test half.

    The threshold is the lowest one whose accepted calibration answers reach ``precision``
    (:func:`threshold_for_precision`): the largest automated share the target allows.
    Measured on the test half: share accepted, precision of the accepted, and silent
    errors (accepted and wrong) over all test queries.
    """
    thr = threshold_for_precision(np.asarray(cal_conf), np.asarray(cal_correct, bool), precision)
    if thr >= NEVER:
        return Operating(None, 0.0, None, 0.0)
    accepted = np.asarray(test_conf) >= thr
    right = np.asarray(test_correct, bool)
    n = max(1, len(accepted))
    return Operating(
        threshold=float(thr),
        automation=float(accepted.sum() / n),
        precision=float(right[accepted].mean()) if accepted.any() else None,
        silent_error=float((accepted & ~right).sum() / n),
    )


def tiers(skus: Sequence[str], ref_counts: dict[str, int]) -> tuple[set[str], set[str]]:
    """Top and bottom quartile of SKUs by reference count (ties broken by slot order)."""
    ranked = sorted(range(len(skus)), key=lambda i: (-ref_counts[skus[i]], i))
    q = max(1, len(skus) // 4)
    return {skus[i] for i in ranked[:q]}, {skus[i] for i in ranked[-q:]}


def _p50_ms(fn: Callable[[Any], object], items: Sequence[Any], warmup: int, digits: int) -> float:
    """Median wall time of ``fn(item)`` over ``items``, in ms, after ``warmup`` untimed calls."""
    for item in items[:warmup]:
        fn(item)  # warm-up: first calls pay for allocation and BLAS start-up
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), digits)


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _latency_child(payload: Path) -> dict[str, float]:
    """Runs in the child: one query at a time through each system, p50 in ms."""
    with payload.open("rb") as fh:
        recognizer, head, threshold, queries = pickle.load(fh)  # our own temp file

    def prototypes(v: np.ndarray) -> object:
        return recognizer.recognize_vectors(v[None])

    def closed_set(v: np.ndarray) -> object:
        return head.predict_proba(v[None]).max(axis=1) >= threshold

    return {"prototypes": _p50_ms(prototypes, queries, warmup=5, digits=3),
            "baseline": _p50_ms(closed_set, queries, warmup=5, digits=3)}


def decision_latency(
    recognizer: Recognizer, head: SoftmaxHead, threshold: float, queries: np.ndarray
) -> dict[str, float]:
    """Per-query decision latency of both systems, in a child process with one BLAS thread.

    A decision is one small matrix-vector product, which a second BLAS thread cannot
    speed up; on a shared 2-core machine it makes it wait for a scheduler slice
    instead (measured here: 24 ms instead of 2.4 ms per query at 1,000 SKUs). One
    thread gives the number a cart sees, and one that does not depend on the
    neighbours' load.
    """
    with tempfile.TemporaryDirectory(prefix="cartos-growth-") as tmp:
        payload = Path(tmp) / "latency.pkl"
        with payload.open("wb") as fh:
            pickle.dump((recognizer, head, threshold, queries), fh)
        env = {**os.environ, **dict.fromkeys(BLAS_THREAD_VARIABLES, "1")}
        done = subprocess.run(
            [sys.executable, "-m", "cartos.bench.growth", "latency", str(payload)],
            env=env, capture_output=True, text=True, check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"latency child failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _system_metrics(
    cal_conf: np.ndarray,
    cal_correct: np.ndarray,
    test_conf: np.ndarray,
    test_correct: np.ndarray,
    unknown_conf: np.ndarray,
    test_tier: np.ndarray,
) -> dict[str, Any]:
    op = automation_at_precision(cal_conf, cal_correct, test_conf, test_correct)
    thr = op.threshold if op.threshold is not None else NEVER
    detected = float((unknown_conf < thr).mean()) if len(unknown_conf) else float("nan")
    s = EVENT_UNKNOWN_SHARE
    review = 1000 * ((1 - s) * (1 - op.automation) + s * (detected if len(unknown_conf) else 0))
    return {
        "top1": float(test_correct.mean()),
        "top1_head": float(test_correct[test_tier == 1].mean()),
        "top1_tail": float(test_correct[test_tier == -1].mean()),
        "automation_at_99": op.automation,
        "threshold_at_99": op.threshold,
        "precision_at_99": op.precision,
        "silent_error": op.silent_error,
        "unknown_detection": detected,
        "review_per_1000": round(review, 1),
    }


def measure_size(
    data: GrowthData, n: int, seed: int, log: LogFn, baseline_steps: int = 300
) -> dict[str, Any]:
    """Both systems on the first ``n`` SKUs."""
    skus = data.sku_order[:n]
    ref_mask = np.isin(data.ref_skus, skus)
    q_mask = np.isin(data.query_skus, skus)
    q_rows = np.arange(len(data.query_skus))
    cal_mask, test_mask = q_mask & (q_rows % 2 == 0), q_mask & (q_rows % 2 == 1)
    refs, ref_labels = data.ref_vectors[ref_mask], data.ref_skus[ref_mask]
    counts = {s: int(c) for s, c in zip(*np.unique(ref_labels, return_counts=True), strict=True)}
    head, tail = tiers(skus, counts)
    test_truth = data.query_skus[test_mask]
    test_tier = np.array([1 if t in head else (-1 if t in tail else 0) for t in test_truth])
    cal_truth = data.query_skus[cal_mask]
    cal_q, test_q = data.query_vectors[cal_mask], data.query_vectors[test_mask]
    records = [data.records[s] for s in skus]

    # Prototypes: what `catalog import` + `calibrate` build, without the SQLite round trip.
    start = time.perf_counter()
    snap = CatalogueSnapshot(records, refs, list(ref_labels), fit_projection(refs, ref_labels))
    calibration, _rows = fit_calibration(
        snap,
        cal_q,
        list(cal_truth),
        [data.records[t].family for t in cal_truth],
        [data.records[t].brand for t in cal_truth],
        CalibrationTargets(seed=seed),
    )
    recognizer = Recognizer(RecognitionIndex.from_snapshot(snap), calibration)
    build_s = time.perf_counter() - start
    cal_ans = recognizer.recognize_vectors(cal_q)
    test_ans = recognizer.recognize_vectors(test_q)
    unk_ans = recognizer.recognize_vectors(data.unknown_vectors)
    conf = {k: np.array([a.confidence for a in v])
            for k, v in (("cal", cal_ans), ("test", test_ans), ("unk", unk_ans))}
    cal_ok = np.array([a.sku == t for a, t in zip(cal_ans, cal_truth, strict=True)])
    test_ok = np.array([a.sku == t for a, t in zip(test_ans, test_truth, strict=True)])
    proto = _system_metrics(conf["cal"], cal_ok, conf["test"], test_ok, conf["unk"], test_tier)
    accepted = np.array([a.decision == "accept" for a in test_ans])
    index = recognizer.index
    proto.update(
        index_mib=round((index._prototypes.nbytes + index._exemplars.nbytes
                         + index.projection.matrix.nbytes + index.projection.mean.nbytes) / _MIB,
                        2),
        build_and_calibrate_seconds=round(build_s, 1),
        projection_fitted=bool(snap.projection.fitted_classes),
        product_accept_rate=float(accepted.mean()),
        product_accept_precision=float(test_ok[accepted].mean()) if accepted.any() else None,
        product_unknown_not_accepted=float(np.mean([a.decision != "accept" for a in unk_ans]))
        if unk_ans else float("nan"),
    )

    # Closed-set softmax head on the same reference embeddings.
    start = time.perf_counter()
    soft = SoftmaxHead.fit(refs, list(ref_labels), steps=baseline_steps)
    train_s = time.perf_counter() - start
    cls = np.array(soft.classes)

    def answer(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = soft.predict_proba(vectors)
        return cls[p.argmax(axis=1)], p.max(axis=1)

    cal_pred, cal_p = answer(cal_q)
    test_pred, test_p = answer(test_q)
    _, unk_p = answer(data.unknown_vectors)
    base = _system_metrics(cal_p, cal_pred == cal_truth, test_p, test_pred == test_truth, unk_p,
                           test_tier)
    latency = decision_latency(
        recognizer, soft, base["threshold_at_99"] or NEVER,
        test_q[:LATENCY_QUERIES],
    )
    proto["latency_ms_p50"] = latency["prototypes"]
    base.update(
        latency_ms_p50=latency["baseline"],
        index_mib=round(soft.nbytes / _MIB, 2),
        train_seconds=round(train_s, 1),
        train_steps=baseline_steps,
    )
    result: dict[str, Any] = {
        "skus": n,
        "reference_images": int(ref_mask.sum()),
        "calibration_queries": int(cal_mask.sum()),
        "test_queries": int(test_mask.sum()),
        "unknown_queries": len(data.unknown_vectors),
        "head_skus": len(head),
        "head_refs_mean": round(float(np.mean([counts[s] for s in head])), 2),
        "tail_skus": len(tail),
        "tail_refs_mean": round(float(np.mean([counts[s] for s in tail])), 2),
        **proto,
        "baseline": base,
    }
    log(f"  {n:>6} SKUs: top-1 {proto['top1']:.3f} vs {base['top1']:.3f}, automation@99 "
        f"{proto['automation_at_99']:.3f} vs {base['automation_at_99']:.3f} "
        f"(build+calibrate {build_s:.0f} s, softmax training {train_s:.0f} s)")
    return result


def backbone_p50_ms(embedder: Embedder, images: Sequence[Path]) -> float:
    """The backbone's own per-crop latency (decode excluded), measured once per run."""
    decoded = [decode_image(p) for p in images]
    if not decoded:
        return float("nan")
    return _p50_ms(lambda im: embedder.embed_arrays([im]), decoded, warmup=3, digits=2)


# --------------------------------------------------------------------------- the report


def _pct(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per size; each cell reads "prototypes / softmax head"."""
    head = (
        "| SKUs | top-1 % | top-1 head / tail quartile % | automation @99 % | "
        "precision achieved % | silent error % | unknown detection % | review / 1,000 events "
        "| latency p50 ms | index MiB |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for r in results["sizes"]:
        b = r["baseline"]
        rows.append(
            f"| {r['skus']:,} | **{_pct(r['top1'])}** / {_pct(b['top1'])} "
            f"| {_pct(r['top1_head'])}, {_pct(r['top1_tail'])} / "
            f"{_pct(b['top1_head'])}, {_pct(b['top1_tail'])} "
            f"| **{_pct(r['automation_at_99'])}** / {_pct(b['automation_at_99'])} "
            f"| {_pct(r['precision_at_99'])} / {_pct(b['precision_at_99'])} "
            f"| {_pct(r['silent_error'])} / {_pct(b['silent_error'])} "
            f"| **{_pct(r['unknown_detection'])}** / {_pct(b['unknown_detection'])} "
            f"| {r['review_per_1000']:.0f} / {b['review_per_1000']:.0f} "
            f"| {r['latency_ms_p50']:.2f} / {b['latency_ms_p50']:.2f} "
            f"| {r['index_mib']:.1f} / {b['index_mib']:.1f} |"
        )
    p = results["params"]
    notes = [
        "",
        "Each cell: prototypes (the product's recogniser) / closed-set softmax head. "
        f"Catalogue: first N of {p['max_skus']:,} synthetic SKUs (seed {p['seed']}, "
        f"{p['refs']} references for the most popular SKU, long tail {p['long_tail']:g}x), "
        f"{p['queries']} queries per SKU (even rows calibrate, odd rows are measured), "
        f"{p['unknown']} held-out products x {p['queries']} queries as unknowns. "
        f"Embeddings: shipped INT8 model, views {results['embedding']['views']}; "
        f"backbone p50 {results['backbone_latency_ms_p50']} ms per crop, not included in the "
        "latency column (index scoring + decision, one query at a time, one BLAS thread). "
        "Index MiB: prototypes + exemplars + projection matrix (float32) / the head's weights. "
        f"Review volume assumes {100 * EVENT_UNKNOWN_SHARE:g} % of events are "
        "unknown items.",
        "",
    ]
    return "\n".join(rows + notes)


def write_reports(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """growth.json, growth.md and the two PNG charts into ``out_dir``."""
    from cartos.bench.plots import BLUE, LIGHT_BLUE, LIGHT_ORANGE, ORANGE, Series, line_chart_png

    out_dir.mkdir(parents=True, exist_ok=True)
    xs = [float(r["skus"]) for r in results["sizes"]]

    def col(key: str, base: bool = False) -> list[float | None]:
        return [(r["baseline"] if base else r)[key] for r in results["sizes"]]

    accuracy = line_chart_png(
        xs,
        [Series("prototypes top-1", col("top1"), BLUE),
         Series("softmax head top-1", col("top1", True), ORANGE),
         Series("prototypes, tail quartile", col("top1_tail"), LIGHT_BLUE),
         Series("softmax head, tail quartile", col("top1_tail", True), LIGHT_ORANGE)],
        "Top-1 accuracy vs catalogue size", "catalogue SKUs (log)", "top-1",
    )
    automation = line_chart_png(
        xs,
        [Series("prototypes: automated at 99 % precision", col("automation_at_99"), BLUE),
         Series("softmax head: automated at 99 % precision", col("automation_at_99", True),
                ORANGE),
         Series("prototypes: unknowns not accepted", col("unknown_detection"), LIGHT_BLUE),
         Series("softmax head: unknowns not accepted", col("unknown_detection", True),
                LIGHT_ORANGE)],
        "Automation at 99 % precision vs catalogue size", "catalogue SKUs (log)", "share",
    )
    files = {
        "growth.json": (json.dumps(results, indent=2) + "\n").encode(),
        "growth.md": markdown_table(results).encode(),
        "growth_accuracy.png": accuracy,
        "growth_automation.png": automation,
    }
    paths = []
    for name, blob in files.items():
        path = out_dir / name
        path.write_bytes(blob)
        paths.append(path)
    return paths


def _clean(value: Any) -> Any:
    """NaN is not JSON: undefined numbers become null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def run(
    sizes: Sequence[int],
    params: GrowthParams,
    cache_root: Path,
    out_dir: Path | None,
    log: LogFn = print,
    baseline_steps: int = 300,
) -> dict[str, Any]:
    """The whole growth curve; writes the reports into ``out_dir`` when given."""
    wall = time.perf_counter()
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 8:
        raise ValueError("catalogue sizes must be at least 8 (calibration holds out SKUs)")
    if params.queries < 2:
        raise ValueError("at least 2 queries per SKU: one half calibrates, the other measures")
    if params.max_skus != sizes[-1]:
        raise ValueError("params.max_skus must be the largest size")
    embedder = Embedder(views=EMBED_VIEWS, batch_size=8)
    try:
        data, cache = load_or_build(params, cache_root, embedder, log)
        images = data.query_images
        sample = images[1::2][:: max(1, len(images) // 80)]  # test-half rows, spread out
        backbone = backbone_p50_ms(embedder, sample[:BACKBONE_IMAGES])
    finally:
        embedder.close()
    results: dict[str, Any] = {
        "params": asdict(params),
        "precision_target": PRECISION_TARGET,
        "event_unknown_share": EVENT_UNKNOWN_SHARE,
        "embedding": {
            "model_sha256": embedder.card.sha256,
            "views": list(EMBED_VIEWS),
            "note": "original view only (the product default also averages a mirrored view)",
        },
        "baseline": "closed-set softmax head (multinomial logistic regression) on the reference "
        "embeddings, standardised per feature; zero init, full-batch Adam, lr 0.01, weight decay "
        f"1e-4, {baseline_steps} steps; confidence = max softmax probability",
        "backbone_latency_ms_p50": backbone,
        "decision_latency": "index scoring + decision per query, p50 of "
        f"{LATENCY_QUERIES} test queries, one at a time, in a child process with one BLAS thread",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "cache": cache,
        "sizes": [],
    }
    for n in sizes:
        results["sizes"].append(measure_size(data, n, params.seed, log, baseline_steps))
    results["wall_seconds"] = round(time.perf_counter() - wall, 1)
    results = _clean(results)
    if out_dir is not None:
        results["files"] = [str(p) for p in write_reports(results, out_dir)]
    return results


if __name__ == "__main__":  # the latency child: python -m cartos.bench.growth latency FILE
    if len(sys.argv) != 3 or sys.argv[1] != "latency":
        raise SystemExit("usage: python -m cartos.bench.growth latency PAYLOAD")
    print(json.dumps(_latency_child(Path(sys.argv[2]))))
