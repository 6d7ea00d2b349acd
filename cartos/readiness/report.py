"""The readiness report: read the inputs, run the seven checks, write JSON + Markdown + PNGs.

Everything that can make the report impossible (a missing catalogue, an invalid profile, a
manifest without an ``image`` column, a history that is neither a catalogue nor JSON, images
embedded with another model) is found *before* any image is embedded, and raised as a
:class:`ReadinessError` (exit 78): a deployment script should learn about a typo in seconds,
not after ten minutes of embedding. What a check finds is never raised; it is a verdict.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cartos import __version__
from cartos.catalog.manifest import read_manifest
from cartos.catalog.store import SCHEMA_VERSION_KEY, CatalogStore
from cartos.errors import CartosError
from cartos.inference.calibration import local_posterior
from cartos.inference.calibration_report import reliability_png
from cartos.inference.catalogue_model import SIGNATURE_KEY, embedder_for
from cartos.inference.embedder import Embedder
from cartos.inference.index import CatalogueSnapshot, RecognitionIndex
from cartos.inference.recognizer import Recognition, Recognizer, load_calibration
from cartos.profiles.schema import DeviceProfile
from cartos.readiness.checks import (
    CONCERN,
    CatalogueShape,
    ChangeHistory,
    CheckResult,
    ImageList,
    ImageSetOutcome,
    ReliabilityData,
    SeparationData,
    Thresholds,
    check_calibration_ece,
    check_catalogue_change_rate,
    check_memory_headroom,
    check_per_class_accuracy_spread,
    check_prototype_separation,
    check_reference_imbalance,
    check_unknown_detection,
    history_from_catalogue,
    read_history,
    read_image_list,
    summarise,
)
from cartos.readiness.errors import EXIT_CONCERN, EXIT_OK, InputSetError, ReadinessError

REPORT_JSON = "readiness.json"
REPORT_MD = "readiness.md"
HISTOGRAM_PNG = "separation_histogram.png"
RELIABILITY_PNG = "reliability.png"

EMBED_CHUNK = 64
SCORE_CHUNK = 512
LISTED_PAIRS_MD = 20

LogFn = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@dataclass
class ReadinessInputs:
    """What one readiness run reads; only the catalogue is required.

    ``profile`` is a profile name (``device_profiles/<name>.toml``) or a path, as everywhere
    else; without one the memory check is not measured.
    """

    db: Path
    profile: str | Path | None = None
    validation: Path | None = None
    unknown: Path | None = None
    history: Path | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass
class ReadinessReport:
    """The seven checks and what they were run on."""

    catalogue: dict[str, Any]
    inputs: dict[str, Any]
    checks: list[CheckResult]
    thresholds: Thresholds
    separation: SeparationData | None = None
    reliability: ReliabilityData | None = None
    seconds: float = 0.0
    created_at: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every measured check is ok, 1 when any is a concern."""
        return EXIT_CONCERN if any(c.verdict == CONCERN for c in self.checks) else EXIT_OK

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "verdicts": summarise(self.checks),
            "exit_code": self.exit_code,
            "catalogue": self.catalogue,
            "inputs": self.inputs,
            "thresholds": self.thresholds.model_dump(),
            "seconds": round(self.seconds, 2),
            "created_at": self.created_at,
            "cartos_version": __version__,
        }


# -- reading the inputs ----------------------------------------------------------------------


@contextmanager
def _bad_input(what: str) -> Iterator[None]:
    """Any expected failure while reading an input becomes a ReadinessError (exit 78)."""
    try:
        yield
    except ReadinessError:
        raise
    except (CartosError, OSError, ValueError) as exc:
        raise ReadinessError(f"{what}: {exc}") from exc


def open_catalogue(path: Path) -> CatalogStore:
    """Open an existing catalogue without ever creating or converting one.

    ``CatalogStore`` creates its tables in whatever file it is given; a readiness report must
    not turn a mistyped path (or another SQLite file) into an empty catalogue, so the file is
    first looked at read-only.
    """
    if not path.is_file():
        raise ReadinessError(f"{path}: no such catalogue")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT value FROM meta WHERE key = ?", (SCHEMA_VERSION_KEY,)
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ReadinessError(f"{path}: not a cartos catalogue ({exc})") from exc
    if row is None:
        raise ReadinessError(f"{path}: not a cartos catalogue (no schema version)")
    with _bad_input(str(path)):
        return CatalogStore(path)


def load_device_profile(name_or_path: str | Path) -> DeviceProfile:
    from cartos.profiles.loader import load_profile_file, locate_profile

    with _bad_input("profile"):
        return load_profile_file(locate_profile(name_or_path))


def read_validation(path: Path) -> ImageList:
    """The labelled validation manifest (``image,sku``; the catalogue manifest format)."""
    with _bad_input("validation manifest"):
        manifest = read_manifest(path)
    if not manifest.rows:
        raise InputSetError(f"{path}: no usable row (problems: {len(manifest.problems)})")
    return ImageList(
        path,
        [r.image for r in manifest.rows],
        [r.sku.sku for r in manifest.rows],
        [f"line {p.line}: {p.message}" for p in manifest.problems],
    )


def read_unknown(path: Path) -> ImageList:
    with _bad_input("unknown-item set"):
        return read_image_list(path)


# -- embedding and recognising ---------------------------------------------------------------


def _embed(
    embedder: Embedder, images: Sequence[Path], what: str, log: LogFn
) -> tuple[np.ndarray, list[int], list[str]]:
    """Embed in chunks; returns vectors, the indices that decoded, and the decode errors."""
    parts: list[np.ndarray] = []
    ok: list[int] = []
    errors: list[str] = []
    started = time.perf_counter()
    step = EMBED_CHUNK * max(1, math.ceil(len(images) / 10 / EMBED_CHUNK))
    for start in range(0, len(images), EMBED_CHUNK):
        chunk = images[start : start + EMBED_CHUNK]
        result = embedder.embed_paths(list(chunk))
        parts.append(result.vectors)
        ok.extend(start + i for i in result.ok_index)
        errors.extend(f"{chunk[i]}: {msg}" for i, msg in sorted(result.errors.items()))
        done = start + len(chunk)
        if done % step == 0 or done == len(images):
            log(f"{what}: embedded {done}/{len(images)} images "
                f"({time.perf_counter() - started:.0f} s)")
    dim = embedder.dim
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    return vectors, ok, errors


def _recognise(
    recognizer: Recognizer, vectors: np.ndarray
) -> tuple[list[Recognition], np.ndarray]:
    """Recognitions, and the raw softmax top probability (what calibration replaced)."""
    recs: list[Recognition] = []
    raw: list[np.ndarray] = []
    for start in range(0, len(vectors), SCORE_CHUNK):
        chunk = vectors[start : start + SCORE_CHUNK]
        recs.extend(recognizer.recognize_vectors(chunk))
        scores = recognizer.index.score(chunk)
        raw.append(local_posterior(scores, recognizer.temperature).max(axis=1))
    top = np.concatenate(raw) if raw else np.zeros(0)
    return recs, top


def _outcome(
    labelled: ImageList,
    embedder: Embedder,
    recognizer: Recognizer,
    what: str,
    log: LogFn,
) -> tuple[ImageSetOutcome, np.ndarray]:
    vectors, ok, errors = _embed(embedder, labelled.images, what, log)
    if not ok:
        raise InputSetError(f"{labelled.source}: none of its {len(labelled.images)} images "
                            f"could be read ({errors[0] if errors else 'no images'})")
    recs, raw = _recognise(recognizer, vectors)
    outcome = ImageSetOutcome(
        source=str(labelled.source),
        recognitions=recs,
        labels=[labelled.labels[i] for i in ok],
        unreadable=len(errors),
        problems=labelled.problems + errors,
    )
    return outcome, raw


# -- the run ---------------------------------------------------------------------------------


def assess(
    inputs: ReadinessInputs,
    embedder: Embedder | None = None,
    log: LogFn = _quiet,
) -> ReadinessReport:
    """Run the seven checks on ``inputs``; raises ReadinessError for unusable input.

    ``embedder`` is created (the catalogue's own model) only when an image set needs embedding;
    tests pass one in to load the model once.
    """
    started = time.perf_counter()
    t = inputs.thresholds
    with open_catalogue(inputs.db) as store:
        with _bad_input(str(inputs.db)):
            snap = CatalogueSnapshot.from_store(store)
        if not snap.records:
            raise ReadinessError(f"{inputs.db}: the catalogue has no active SKU with exemplars")
        calibration = load_calibration(store)
        refs = store.exemplar_counts(kind="reference")
        version = store.version
        profile = None if inputs.profile is None else load_device_profile(inputs.profile)
        history: ChangeHistory = (
            read_history(inputs.history)
            if inputs.history is not None
            else history_from_catalogue(inputs.db)
        )
        validation = None if inputs.validation is None else read_validation(inputs.validation)
        unknown = None if inputs.unknown is None else read_unknown(inputs.unknown)
        stored_signature = store.meta_get(SIGNATURE_KEY)
        needs_model = validation is not None or unknown is not None
        own_embedder = embedder is None and needs_model
        if own_embedder:
            log("loading the model the catalogue was built with ...")
            with _bad_input("embedding model"):
                embedder = embedder_for(store)
    try:
        if needs_model and embedder is not None and stored_signature not in (
            None, embedder.signature
        ):
            raise ReadinessError(
                f"{inputs.db} was embedded with {stored_signature}, this model is "
                f"{embedder.signature}: its images cannot be compared with the catalogue"
            )
        index = RecognitionIndex.from_snapshot(snap)
        recognizer = Recognizer(index, calibration)
        records = snap.records
        active = {r.sku for r in records}
        shape = CatalogueShape(
            skus=len(records),
            exemplars=len(snap.exemplar_skus),
            families=len({r.family for r in records if r.family}),
            brands=len({r.brand for r in records if r.brand}),
        )
        checks: list[CheckResult] = []
        log("reference imbalance ...")
        checks.append(
            check_reference_imbalance({s: refs.get(s, 0) for s in sorted(active)},
                                      t.reference_imbalance)
        )
        log("prototype separation ...")
        separation_result, separation = check_prototype_separation(snap, t.prototype_separation)
        checks.append(separation_result)
        checks.append(check_catalogue_change_rate(history, len(records), t.catalogue_change_rate))
        log("memory footprint on the device profile ...")
        checks.append(check_memory_headroom(profile, shape, t.memory_headroom))
        unknown_outcome = None
        if unknown is not None and embedder is not None:
            unknown_outcome, _ = _outcome(unknown, embedder, recognizer, "unknown set", log)
        checks.append(
            check_unknown_detection(unknown_outcome, calibration is not None, active,
                                    t.unknown_detection)
        )
        val_outcome, raw_top = None, None
        if validation is not None and embedder is not None:
            val_outcome, raw_top = _outcome(validation, embedder, recognizer, "validation", log)
        checks.append(check_per_class_accuracy_spread(val_outcome, active,
                                                      t.per_class_accuracy_spread))
        ece_result, reliability = check_calibration_ece(
            val_outcome, raw_top, calibration is not None, t.calibration_ece, unknown_outcome
        )
        checks.append(ece_result)
    finally:
        if own_embedder and embedder is not None:
            embedder.close()
    catalogue = {
        "path": str(inputs.db),
        "version": version,
        "active_skus": len(records),
        "exemplars": len(snap.exemplar_skus),
        "reference_images": sum(refs.get(s, 0) for s in active),
        "families": shape.families,
        "brands": shape.brands,
        "calibrated": calibration is not None,
        "calibration_version": None if calibration is None else calibration.catalog_version,
        "projection_fitted": bool(snap.projection.fitted_classes),
    }
    used = {
        "profile": None if profile is None else profile.name,
        "validation": None if inputs.validation is None else str(inputs.validation),
        "unknown": None if inputs.unknown is None else str(inputs.unknown),
        "history": str(inputs.history) if inputs.history is not None else "catalogue",
        "validation_problems": [] if val_outcome is None else val_outcome.problems[:20],
        "unknown_problems": [] if unknown_outcome is None else unknown_outcome.problems[:20],
    }
    return ReadinessReport(
        catalogue=catalogue,
        inputs=used,
        checks=checks,
        thresholds=t,
        separation=separation,
        reliability=reliability,
        seconds=time.perf_counter() - started,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# -- writing the report ----------------------------------------------------------------------


def separation_histogram_png(data: SeparationData, bin_width: float = 0.02) -> bytes:
    """Bars of the inter-class distance distribution, with the percentile and the floor."""
    width, height, pad = 640, 360, 55
    factor = max(1, round(bin_width / (data.hist_edges[1] - data.hist_edges[0])))
    counts = data.hist_counts.reshape(-1, factor).sum(axis=1)
    nonzero = np.nonzero(counts)[0]
    top_d = float(data.hist_edges[-1])
    if len(nonzero):
        top_d = min(top_d, math.ceil((nonzero[-1] + 1) * bin_width * 10) / 10)
    top_d = max(top_d, data.floor * 1.2, 0.1)
    shown = counts[: max(1, math.ceil(top_d / bin_width))]
    peak = max(1, int(shown.max()))
    img = np.full((height + 2 * pad, width + 2 * pad, 3), 255, np.uint8)

    def x_of(d: float) -> int:
        return int(pad + d / top_d * width)

    def y_of(c: float) -> int:
        return int(pad + height - c / peak * height)

    for b, c in enumerate(shown):
        if c:
            cv2.rectangle(img, (x_of(b * bin_width), y_of(c)),
                          (max(x_of((b + 1) * bin_width) - 1, x_of(b * bin_width)), y_of(0)),
                          (150, 150, 150), -1)
    cv2.rectangle(img, (pad, pad), (pad + width, pad + height), (0, 0, 0), 1)
    for tick in np.linspace(0, top_d, 6):
        x = x_of(float(tick))
        cv2.line(img, (x, pad + height), (x, pad + height + 5), (0, 0, 0), 1)
        cv2.putText(img, f"{tick:.2f}", (x - 14, pad + height + 20), 0, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"{peak}", (5, pad + 5), 0, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "0", (pad - 15, pad + height), 0, 0.4, (0, 0, 0), 1)
    for d, colour in ((data.percentile_value, (200, 80, 0)), (data.floor, (0, 0, 220))):
        if d <= top_d:
            cv2.line(img, (x_of(d), pad), (x_of(d), pad + height), colour, 2, cv2.LINE_AA)
    cv2.putText(img, f"p{data.percentile:g} = {data.percentile_value:.3f}",
                (pad + width - 190, pad + 20), 0, 0.5, (200, 80, 0), 1)
    cv2.putText(img, f"floor {data.floor:g} (nearest {data.nearest:.3f})",
                (pad + width - 190, pad + 40), 0, 0.5, (0, 0, 220), 1)
    cv2.putText(img, "cosine distance between SKU prototypes (projected)",
                (pad + 60, pad + height + 42), 0, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "SKU pairs", (5, pad - 15), 0, 0.5, (0, 0, 0), 1)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - PNG encoding of a plain array does not fail
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if "share" in unit:
        return f"{value:.1%}"
    if unit == "ratio":
        return f"{value:.1f}x"
    if "points" in unit:
        return f"{value:.1f} pt"
    return f"{value:.3f}"


def threshold_text(c: CheckResult) -> str:
    signs = {
        "reference_imbalance": "≤",
        "prototype_separation": "nearest ≥",
        "catalogue_change_rate": "≤",
        "memory_headroom": "≥",
        "unknown_detection": "≥",
        "per_class_accuracy_spread": "≤",
        "calibration_ece": "≤",
    }
    return f"{signs.get(c.name, '')} {format_value(c.threshold, c.unit)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(report: ReadinessReport) -> str:
    """The report for people: the verdict table first, then what each check found."""
    cat = report.catalogue
    counts = summarise(report.checks)
    calibrated = (
        f"calibrated at v{cat['calibration_version']}" if cat["calibrated"] else "not calibrated"
    )
    lines = [
        f"# Catalogue readiness — {Path(cat['path']).name} v{cat['version']}",
        "",
        f"{cat['active_skus']} active SKUs, {cat['reference_images']} reference images "
        f"({cat['exemplars']} exemplars in all), {cat['families']} families, {cat['brands']} "
        f"brands; {calibrated}. "
        f"Profile: {report.inputs['profile'] or '—'}; validation: "
        f"{report.inputs['validation'] or '—'}; unknown items: {report.inputs['unknown'] or '—'}; "
        f"history: {report.inputs['history']}.",
        "",
        f"**{counts['concern']} concern(s), {counts['ok']} ok, {counts['not_measured']} not "
        f"measured → exit code {report.exit_code}.** Made in {report.seconds:.0f} s on "
        f"{report.created_at}.",
        "",
        "| # | check | value | threshold | verdict | finding |",
        "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(report.checks, 1):
        lines.append(
            f"| {i} | {c.name} | {format_value(c.value, c.unit)} | {threshold_text(c)} | "
            f"**{c.verdict}** | {_cell(c.summary)} |"
        )
    for i, c in enumerate(report.checks, 1):
        lines += ["", f"## {i}. {c.name}: {c.verdict}", "", f"Rule: {c.rule}.", "", c.summary + "."]
        lines += _section(c)
    lines.append("")
    return "\n".join(lines)


def _section(c: CheckResult) -> list[str]:
    d = c.details
    out: list[str] = []
    if c.verdict == "not_measured":
        return out
    if c.name == "reference_imbalance" and d["min"] != d["max"]:
        out += ["", "| thinnest SKUs | refs | richest SKUs | refs |", "|---|---|---|---|"]
        for a, b in zip(d["thinnest"], d["richest"], strict=False):
            out.append(f"| {a['sku']} | {a['references']} | {b['sku']} | {b['references']} |")
    elif c.name == "prototype_separation":
        out += [
            "",
            f"{d['pairs']} pairs, median distance {d['median_distance']:.3f}, nearest "
            f"{d['nearest_distance']:.4f}; {d['pairs_below_floor']} pair(s) under the floor, "
            f"{d['pairs_below_percentile']} under the {d['percentile']:g}th percentile "
            f"({d['percentile_method']}).",
            "",
            f"![inter-class distance histogram]({HISTOGRAM_PNG})",
        ]
        if d["closest_pairs"]:
            out += ["", "Closest pairs (candidates for subclass routing or a merged SKU):", "",
                    "| SKU a | SKU b | distance | same family | same brand | suggestion |",
                    "|---|---|---|---|---|---|"]
            for p in d["closest_pairs"][:LISTED_PAIRS_MD]:
                out.append(
                    f"| {_cell(p['sku_a'])} {_cell(p['name_a'][:30])} | {_cell(p['sku_b'])} "
                    f"{_cell(p['name_b'][:30])} | {p['distance']:.4f} | {p['same_family']} | "
                    f"{p['same_brand']} | {p['suggestion']} |"
                )
    elif c.name == "catalogue_change_rate":
        out += ["", f"History from {d['source']}: {d['start']} → {d['end']}."]
        if d["per_quarter"]:
            out += ["", "| quarter | added | discontinued | share |", "|---|---|---|---|"]
            for q in d["per_quarter"]:
                out.append(f"| {q['quarter']} | {q['added']} | {q['discontinued']} | "
                           f"{q['share']:.1%} |")
    elif c.name == "memory_headroom":
        fp = d["footprint"]
        out += ["", "| component | MiB | how |", "|---|---|---|"]
        for comp in fp["components"]:
            out.append(f"| {comp['label']} | {comp['mib']:.1f} | {_cell(comp['how'])} |")
        out.append(f"| total | {fp['total_mib']:.1f} | budget {fp['budget_mib']} MiB |")
        out += ["", *(f"Note: {n}." for n in d["notes"])]
    elif c.name == "unknown_detection":
        out += ["", "Decisions: " + ", ".join(f"{k} {v}" for k, v in d["decisions"].items()) + "."]
        if d["most_accepted_as"]:
            out.append("Accepted as: " + ", ".join(
                f"{m['sku']} ({m['images']})" for m in d["most_accepted_as"]) + ".")
    elif c.name == "per_class_accuracy_spread":
        out += ["", f"Overall top-1 {d['top1_overall']:.1f} %; {d['skus_with_too_few_images']} "
                f"SKU(s) with fewer than {d['min_images_per_sku']} images left out, "
                f"{d['skus_without_images']} without validation images.",
                "", "| worst SKUs | top-1 % | images |", "|---|---|---|"]
        for w in d["worst"]:
            out.append(f"| {w['sku']} | {w['accuracy']:.1f} | {w['images']} |")
    elif c.name == "calibration_ece":
        also = [
            f"{label} {d[key]:.3f}"
            for key, label in (
                ("ece_raw_softmax", "raw softmax (before calibration)"),
                ("ece_given_listed", "P(right | listed) alone"),
                ("ece_with_unknown_items", "validation + unknown-item images"),
            )
            if d.get(key) is not None
        ]
        if also:
            out += ["", "ECE of " + "; ".join(also) + "."]
        out += ["", f"![reliability diagram]({RELIABILITY_PNG})", "",
                "| confidence bin | images | mean confidence | accuracy |", "|---|---|---|---|"]
        for b in d["reliability"]:
            if b["count"]:
                out.append(f"| {b['low']:.1f}–{b['high']:.1f} | {b['count']} | "
                           f"{b['confidence']:.3f} | {b['accuracy']:.3f} |")
    return out


def report_json(report: ReadinessReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_report(report: ReadinessReport, out_dir: Path) -> list[Path]:
    """Write the JSON, the Markdown and the plots that have data; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        REPORT_JSON: report_json(report).encode("utf-8"),
        REPORT_MD: report_markdown(report).encode("utf-8"),
    }
    if report.separation is not None:
        files[HISTOGRAM_PNG] = separation_histogram_png(report.separation)
    if report.reliability is not None:
        files[RELIABILITY_PNG] = reliability_png(report.reliability.before,
                                                 report.reliability.after)
    paths = []
    for name, data in files.items():
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def default_out_dir(db: Path, version: int) -> Path:
    """``<db>.readiness/v<version>/``, next to the calibration reports."""
    return db.with_name(db.name + ".readiness") / f"v{version}"
