"""``cartos bench fusion``: camera × scale × scanner against the camera alone, same events.

The catalogue is built from a references manifest through the product code
(manifest import into a real SQLite catalogue, ``calibrate``), recognition
is calibrated on the calibration manifest, then the fusion policy is fitted
on add events played from that same calibration manifest:

* every calibration image of a catalogue SKU is a known-item event;
* unknown items are simulated the way recognition's calibration does it:
  SKUs are held out in folds (each once), a gallery is rebuilt without them,
  and their calibration images become events of items outside the catalogue;
* calibration events carry no scan: the fit covers the camera × scale path.

Then every row of the queries manifest (catalogue manifest columns
``image,sku,barcode,weight_g,weight_tol_g``; a SKU absent from the
catalogue is an unknown item) is one add event: measured weight = the row's
nominal weight + a clipped-normal packaging deviation (sigma = tolerance /
2.5, clipped at the tolerance; seeded), and a scan for ``scan_share`` of the
rows that have a barcode. A row without a nominal weight has no weight
evidence. The camera-alone numbers are recognition's own decisions on the
same events, measured in the same run.

``prepare_grozi`` writes the three manifests of the GroZi-120 protocol
(:mod:`cartos.bench.protocol`): GroZi's manifest carries assigned nominal
weights and UPC barcodes, so nothing is synthesised.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cartos.bench.data import write_manifest
from cartos.bench.protocol import grozi_split
from cartos.catalog.store import CatalogStore
from cartos.errors import CartosError
from cartos.fusion import (
    DEFAULT_UNKNOWN_SHARE,
    CatalogueView,
    FusionPolicy,
    FusionTargets,
    VisionEvidence,
    fit_fusion_calibration,
    fuse,
)
from cartos.fusion.calibration_service import (
    EmbeddedRows,
    calibration_events,
    embed_manifest,
    measured_weight,
    scan,
)
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder, EmbedResult
from cartos.inference.enrolment import import_manifest
from cartos.inference.recognizer import Recognizer

LogFn = Callable[[str], None]



class FusionBenchError(CartosError):
    """The fusion benchmark's inputs cannot support a run."""


class CachingEmbedder(Embedder):
    """Embeds each image path once: the calibration images are embedded by
    ``calibrate`` and again for the fusion events.

    With ``cache_file`` the vectors persist between runs (keyed by path and
    the model's signature), so a re-run with another seed or scan share
    skips the embedding.
    """

    def __init__(self, cache_file: Path | None = None) -> None:
        super().__init__()
        self._cache: dict[str, np.ndarray] = {}
        self._cache_file = cache_file
        if cache_file is not None and cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as data:
                if str(data["signature"]) == self.signature:
                    keys = [str(k) for k in data["keys"]]
                    self._cache = dict(zip(keys, data["vectors"], strict=True))

    def save(self) -> None:
        if self._cache_file is None or not self._cache:
            return
        keys = sorted(self._cache)
        self._cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            self._cache_file,
            signature=np.array(self.signature),
            keys=np.array(keys),
            vectors=np.stack([self._cache[k] for k in keys]),
        )

    def embed_paths(self, paths: Sequence[str | Path | bytes]) -> EmbedResult:
        keys = [str(p) for p in paths]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            fresh = super().embed_paths([paths[i] for i in todo])
            for j, vec in zip(fresh.ok_index, fresh.vectors, strict=True):
                self._cache[keys[todo[j]]] = vec
            errors = {todo[j]: msg for j, msg in fresh.errors.items()}
        else:
            errors = {}
        ok = [i for i in range(len(keys)) if keys[i] in self._cache]
        vectors = (
            np.stack([self._cache[keys[i]] for i in ok])
            if ok
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        return EmbedResult(vectors=vectors, ok_index=ok, errors=errors)


def _rates(accepted: np.ndarray, correct: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    n_acc = int(accepted.sum())
    unknown = ~known
    return {
        "accept_precision": float((accepted & correct).sum() / n_acc) if n_acc else float("nan"),
        "automation": float(accepted.mean()) if len(accepted) else float("nan"),
        "unknown_silent": float(accepted[unknown].mean()) if unknown.any() else 0.0,
        "known_automation": float(accepted[known].mean()) if known.any() else float("nan"),
        "unknown_accepted": int(accepted[unknown].sum()),
        "wrong_accepts": int((accepted & ~correct).sum()),
    }


def run(
    references: Path,
    calibration: Path,
    queries: Path,
    scan_share: float = 0.5,
    seed: int = 0,
    log: LogFn = print,
    work: Path | None = None,
    policy_out: Path | None = None,
    embedding_cache: Path | None = None,
    unknown_share: float | None = DEFAULT_UNKNOWN_SHARE,
) -> dict[str, Any]:
    """Play the benchmark; returns the results dict (the CLI prints it as the last line)."""
    if not 0.0 <= scan_share <= 1.0:
        raise FusionBenchError(f"--scan-share must lie in [0, 1], got {scan_share}")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = work or Path(tmp)
        embedder = CachingEmbedder(embedding_cache)
        try:
            with CatalogStore(folder / "catalogue.db") as store:
                log(f"importing {references}")
                report = import_manifest(store, embedder, references)
                if report.problems:
                    log(f"{len(report.problems)} reference rows skipped")
                log(f"calibrating recognition on {calibration}")
                calibrate_from_manifest(
                    store,
                    embedder,
                    calibration,
                    CalibrationTargets(seed=seed),
                    report_dir=folder / "calibration-report",
                )
                recognizer = Recognizer.from_store(store)
                view = CatalogueView.from_store(store)
                cal_data = embed_manifest(embedder, calibration)
                events = calibration_events(store, recognizer, cal_data, rng)
            log(f"fitting fusion on {len(events)} calibration events")
            policy = fit_fusion_calibration(
                events, view, targets=FusionTargets(unknown_share=unknown_share)
            )
            if policy_out is not None:
                policy.save(policy_out)
            log(f"embedding queries {queries}")
            query_data = embed_manifest(embedder, queries)
            embedder.save()
        finally:
            embedder.close()
    return play_queries(recognizer, view, policy, query_data, scan_share, rng)


def play_queries(
    recognizer: Recognizer,
    view: CatalogueView,
    policy: FusionPolicy,
    data: EmbeddedRows,
    scan_share: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    if not data.rows:
        raise FusionBenchError("the queries manifest has no readable rows")
    recs = recognizer.recognize_vectors(data.vectors)
    fused_ok: list[bool] = []
    fused_acc: list[bool] = []
    vision_ok: list[bool] = []
    vision_acc: list[bool] = []
    known: list[bool] = []
    was_scanned: list[bool] = []
    alerts: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    scanned = 0
    for rec, row in zip(recs, data.rows, strict=True):
        truth = row.sku.sku
        weight = measured_weight(row.sku.weight_g, row.sku.weight_tol_g, rng)
        barcode = scan(row.sku.barcode) if rng.random() < scan_share else None
        scanned += barcode is not None
        was_scanned.append(barcode is not None)
        vision = VisionEvidence.from_recognition(rec, recognizer.temperature)
        answer = fuse(vision, weight, barcode, view, policy)
        alerts.update(answer.alert_kinds)
        decisions[answer.decision] += 1
        known.append(truth in view)
        fused_ok.append(answer.sku == truth and truth in view)
        fused_acc.append(answer.decision == "accept")
        vision_ok.append(rec.sku == truth and truth in view)
        vision_acc.append(rec.decision == "accept")
    k = np.array(known)
    fused = _rates(np.array(fused_acc), np.array(fused_ok), k)
    vision_only = _rates(np.array(vision_acc), np.array(vision_ok), k)
    unscanned = ~np.array(was_scanned, dtype=bool)
    camera_path = _rates(
        np.array(fused_acc)[unscanned], np.array(fused_ok)[unscanned], k[unscanned]
    )
    out: dict[str, Any] = {
        "events": len(data.rows),
        "accept_precision": fused["accept_precision"],
        "automation": fused["automation"],
        "unknown_silent": fused["unknown_silent"],
        "alerts": dict(sorted(alerts.items())),
        "vision_only": vision_only,
        "known_events": int(k.sum()),
        "unknown_events": int((~k).sum()),
        "scanned_events": scanned,
        "unscanned_events": camera_path,
        "known_automation": fused["known_automation"],
        "unknown_accepted": fused["unknown_accepted"],
        "wrong_accepts": fused["wrong_accepts"],
        "decisions": dict(sorted(decisions.items())),
        "policy": {
            "accept_threshold": policy.accept_threshold,
            "confirm_threshold": policy.confirm_threshold,
            "unknown_threshold": policy.unknown_threshold,
            "fit": policy.metrics,
        },
    }
    return {key: _finite(value) for key, value in out.items()}


def _finite(value: Any) -> Any:
    """NaN → None so the JSON line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def prepare_grozi(out_dir: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """The GroZi-120 protocol's references, calibration and queries manifests.

    GroZi's manifest has ``weight_g``/``weight_tol_g`` (assigned nominal
    weights, not measured) and UPC barcodes for every SKU; the 12 held-out
    SKUs' query rows are the unknown items.
    """
    split = grozi_split(seed)
    return (
        write_manifest(out_dir / "references.csv", split.catalogue),
        write_manifest(out_dir / "calibration.csv", split.calibration),
        write_manifest(out_dir / "queries.csv", split.queries_known + split.queries_unknown),
    )
