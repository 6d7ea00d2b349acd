"""The seven pre-deployment checks, their thresholds and the inputs they read.

A catalogue that recognises well on a benchmark can still fail in a store for reasons no
accuracy figure shows: some SKUs have a fraction of the references of others, two SKUs are
indistinguishable to the model, the assortment changes faster than anyone re-enrols, the
table does not fit the board, unknown products are accepted as catalogue SKUs, a few SKUs are
hopeless while the mean looks fine, or the confidence the cart acts on is not a probability.
Each check here turns one of these into a number, a threshold and a verdict:

``ok``            the number is on the safe side of its threshold;
``concern``       it is not: the report says what to look at;
``not_measured``  the input it needs was not given or is too thin, and the report says why.

The check functions take plain values (counts, arrays, recognitions), not files, so each can
be forced to either side of its threshold in a test; :mod:`cartos.readiness.report` reads the
catalogue and the image sets and calls them. Thresholds come from a TOML file validated like a
device profile: an unknown key is refused rather than silently ignored, since a misspelt
threshold would otherwise leave the default in force.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cartos.catalog.records import SkuRecord
from cartos.inference.calibration import (
    expected_calibration_error,
    reliability_bins,
)
from cartos.inference.index import CatalogueSnapshot
from cartos.inference.recognizer import Recognition
from cartos.profiles.errors import ProfileError
from cartos.profiles.loader import format_validation_error
from cartos.profiles.schema import CatalogueConfig, DeviceProfile
from cartos.readiness.errors import HistoryError, InputSetError, ThresholdsError

OK = "ok"
CONCERN = "concern"
NOT_MEASURED = "not_measured"
VERDICTS: tuple[str, ...] = (OK, CONCERN, NOT_MEASURED)

CHECK_NAMES: tuple[str, ...] = (
    "reference_imbalance",
    "prototype_separation",
    "catalogue_change_rate",
    "memory_headroom",
    "unknown_detection",
    "per_class_accuracy_spread",
    "calibration_ece",
)

DAYS_PER_QUARTER = 365.25 / 4
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LISTED_SKUS = 10
"""SKUs named in a check's details (thinnest, worst, most confused): enough to act on."""

# Pairwise prototype distances: every pair is kept (float32) up to this many pairs, so the
# percentile is exact; above it (a catalogue of more than ~3,200 SKUs) the percentile is read
# off a 0.0005-wide histogram instead of holding C^2/2 floats in memory.
EXACT_PAIRS_LIMIT = 5_000_000
HIST_BINS = 4000
HIST_MAX_DISTANCE = 2.0
_PAIR_BLOCK = 256


# -- results ---------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """One check's outcome, in the shape the JSON report and ``--json`` print.

    ``value`` is what the check measures and ``threshold`` the bar it is held to; ``rule`` says
    in words which side is ok, because the comparison differs between checks (a ratio must stay
    below its bar, a rejection rate above it). ``summary`` explains the verdict with its
    numbers; ``reason`` says why a check could not be measured.
    """

    name: str
    value: float | None
    threshold: float
    verdict: str
    unit: str
    rule: str
    summary: str
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _finite_or_none(self.value),
            "threshold": self.threshold,
            "verdict": self.verdict,
            "unit": self.unit,
            "rule": self.rule,
            "summary": self.summary,
            "reason": self.reason,
            "details": _json_safe(self.details),
        }


@dataclass(frozen=True)
class _Check:
    """What a check is held to, so each outcome states only what it found."""

    name: str
    threshold: float
    unit: str
    rule: str

    def measured(
        self, value: float, concern: bool, summary: str, details: dict[str, Any]
    ) -> CheckResult:
        return CheckResult(
            name=self.name,
            value=value,
            threshold=self.threshold,
            verdict=CONCERN if concern else OK,
            unit=self.unit,
            rule=self.rule,
            summary=summary,
            details=details,
        )

    def not_measured(self, reason: str, **details: Any) -> CheckResult:
        """The input is missing or too thin: says why instead of guessing a number."""
        return CheckResult(
            name=self.name,
            value=None,
            threshold=self.threshold,
            verdict=NOT_MEASURED,
            unit=self.unit,
            rule=self.rule,
            summary=f"not measured: {reason}",
            reason=reason,
            details=dict(details),
        )


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        return _json_safe(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# -- thresholds ------------------------------------------------------------------------------


class _Section(BaseModel):
    """Unknown keys refused, values frozen and strictly typed, as in the device profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ImbalanceThresholds(_Section):
    """reference_imbalance: top-decile over bottom-decile reference count."""

    max_ratio: float = Field(
        default=10.0,
        gt=1.0,
        description=(
            "Largest acceptable ratio of the mean reference count of the best-covered 10 % of "
            "SKUs to that of the least-covered 10 %."
        ),
    )


class SeparationThresholds(_Section):
    """prototype_separation: how close two SKU prototypes may sit."""

    min_distance: float = Field(
        default=0.05,
        ge=0.0,
        le=2.0,
        description="Cosine distance below which a pair of SKU prototypes is a concern.",
    )
    percentile: float = Field(
        default=5.0,
        gt=0.0,
        lt=50.0,
        description="Percentile of the inter-class distance distribution reported as the value.",
    )
    max_listed_pairs: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Closest pairs listed as candidates for subclass routing or merging.",
    )


class ChangeRateThresholds(_Section):
    """catalogue_change_rate: assortment churn per quarter."""

    max_share_per_quarter: float = Field(
        default=0.05,
        gt=0.0,
        description=(
            "Largest share of the catalogue added or discontinued per quarter before new "
            "products must be caught by the unknown loop rather than by re-enrolment."
        ),
    )
    min_span_days: float = Field(
        default=7.0,
        gt=0.0,
        description="Shortest history that says anything about a quarterly rate.",
    )


class MemoryThresholds(_Section):
    """memory_headroom: free share of the device budget with this catalogue loaded."""

    min_free_fraction: float = Field(
        default=0.20,
        ge=0.0,
        lt=1.0,
        description="Share of the profile's memory budget that must stay free.",
    )


class UnknownThresholds(_Section):
    """unknown_detection: held-out products that must not be accepted as a SKU."""

    min_rejected_share: float = Field(
        default=0.70,
        ge=0.0,
        le=1.0,
        description="Smallest share of never-enrolled product images not accepted as a SKU.",
    )


class SpreadThresholds(_Section):
    """per_class_accuracy_spread: how unevenly top-1 accuracy is spread over SKUs."""

    max_std_points: float = Field(
        default=15.0,
        ge=0.0,
        le=100.0,
        description="Largest standard deviation (percentage points) of per-SKU top-1 accuracy.",
    )
    min_images_per_sku: int = Field(
        default=5,
        ge=1,
        description=(
            "Validation images a SKU needs to enter the spread: with fewer, a per-SKU accuracy "
            "is mostly sampling noise (1 image gives 0 or 100 %)."
        ),
    )


class CalibrationThresholds(_Section):
    """calibration_ece: expected calibration error of the recogniser's confidence."""

    max_ece: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest acceptable expected calibration error on the validation set.",
    )
    bins: int = Field(
        default=15,
        ge=2,
        le=100,
        description="Equal-width confidence bins of the ECE (the calibration report uses 15).",
    )
    min_images: int = Field(
        default=50,
        ge=1,
        description=(
            "Validation images the ECE needs: on fewer, most bins hold a handful of images and "
            "the ECE measures their sampling noise (it is biased upwards on small sets)."
        ),
    )


class Thresholds(_Section):
    """Every threshold of the readiness report; one TOML table per check."""

    reference_imbalance: ImbalanceThresholds = ImbalanceThresholds()
    prototype_separation: SeparationThresholds = SeparationThresholds()
    catalogue_change_rate: ChangeRateThresholds = ChangeRateThresholds()
    memory_headroom: MemoryThresholds = MemoryThresholds()
    unknown_detection: UnknownThresholds = UnknownThresholds()
    per_class_accuracy_spread: SpreadThresholds = SpreadThresholds()
    calibration_ece: CalibrationThresholds = CalibrationThresholds()


def load_thresholds(path: Path) -> Thresholds:
    """Read a thresholds TOML file; every problem is reported with its dotted key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdsError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ThresholdsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        raise ThresholdsError(format_validation_error(str(path), exc)) from exc


# -- input sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageList:
    """Images of an input set, in file order, with the label a CSV gave them (if any) and
    the rows that could not be used."""

    source: Path
    images: list[Path]
    labels: list[str | None]
    problems: list[str] = field(default_factory=list)


def read_image_list(path: Path) -> ImageList:
    """Images of a folder (recursively, sorted) or of a CSV with an ``image`` column.

    The unknown-item set is read this way rather than as a catalogue manifest because held-out
    products have no SKU: the Freiburg groceries manifest, for one, has ``image,category``.
    CSV paths are relative to the CSV's folder, as in every manifest.
    """
    if path.is_dir():
        images = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise InputSetError(f"{path}: folder holds no images")
        return ImageList(path, images, [None] * len(images))
    if not path.is_file():
        raise InputSetError(f"{path}: no such file or folder")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                raise InputSetError(f"{path}: CSV has no 'image' column")
            rows = [row for row in reader if (row.get("image") or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputSetError(f"{path}: cannot read ({exc})") from exc
    if not rows:
        raise InputSetError(f"{path}: lists no images")
    folder = path.resolve().parent
    return ImageList(
        path,
        [folder / str(row["image"]).strip().replace("\\", "/") for row in rows],
        [(row.get("sku") or "").strip() or None for row in rows],
    )


# -- change history --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeEvent:
    """SKUs added to or discontinued from the catalogue at one moment."""

    at: datetime
    kind: str
    added: int = 0
    discontinued: int = 0
    summary: str = ""


@dataclass(frozen=True)
class ChangeHistory:
    """A catalogue's assortment changes, oldest first.

    Without ``since`` the first event is the catalogue's creation (its baseline import) and is
    not counted as churn; ``until`` defaults to the last event, the last moment the history
    is known to describe.
    """

    source: str
    events: list[ChangeEvent]
    since: datetime | None = None
    until: datetime | None = None
    catalogue_skus: int | None = None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def history_from_catalogue(path: Path) -> ChangeHistory:
    """SKU additions and retirements per catalogue version, with the versions' timestamps.

    The version log names the kind of each change but not how many SKUs it touched (an
    import says only which file it read). The SKU prototype table does: every active SKU has
    a prototype row per version it changed in and a tombstone when it left, so a key's first
    live row is an addition and a tombstone after a live row a retirement. ``CatalogStore``
    reads prototypes only with their vectors, one version at a time; here a read-only
    connection reads just the keys of every version, which stays cheap on a long history.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"{path}: cannot open as a catalogue ({exc})") from exc
    try:
        versions = conn.execute(
            "SELECT version, kind, summary, created_at FROM versions ORDER BY version"
        ).fetchall()
        rows = conn.execute(
            "SELECT key, version, vector IS NULL FROM prototypes WHERE level = 'sku' "
            "ORDER BY key, version"
        ).fetchall()
    except sqlite3.Error as exc:
        raise HistoryError(f"{path}: not a cartos catalogue ({exc})") from exc
    finally:
        conn.close()
    added: Counter[int] = Counter()
    retired: Counter[int] = Counter()
    live: dict[str, bool] = {}
    for key, version, tombstone in rows:
        was_live = live.get(key, False)
        if not tombstone and not was_live:
            added[int(version)] += 1
        elif tombstone and was_live:
            retired[int(version)] += 1
        live[key] = not tombstone
    events: list[ChangeEvent] = []
    for version, kind, summary, created_at in versions:
        try:
            at = _utc(datetime.fromisoformat(str(created_at)))
        except ValueError as exc:
            raise HistoryError(f"{path}: version {version} has a bad timestamp") from exc
        events.append(
            ChangeEvent(
                at=at,
                kind=str(kind),
                added=added[int(version)],
                discontinued=retired[int(version)],
                summary=f"v{version} {summary}",
            )
        )
    return ChangeHistory(source=str(path), events=events)


class _HistoryEventModel(_Section):
    """One event of a change-history JSON file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    at: datetime = Field(description="When the change took effect (ISO-8601; naive means UTC).")
    kind: str = Field(default="", description="import, add, discontinue, ... (free text).")
    added: int | None = Field(default=None, ge=0, description="SKUs added by this change.")
    discontinued: int | None = Field(default=None, ge=0, description="SKUs taken out.")
    sku: str | None = Field(default=None, description="The SKU, for one-SKU changes.")
    summary: str = Field(default="", description="What happened, for the report.")
    version: int | None = Field(default=None, description="Catalogue version, if any.")


class _HistoryFileModel(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    events: list[_HistoryEventModel]
    since: datetime | None = None
    until: datetime | None = None
    catalogue_skus: int | None = Field(default=None, ge=1)


_ONE_SKU_KINDS = {"add": "added", "register": "added", "discontinue": "discontinued"}


def history_from_json(path: Path) -> ChangeHistory:
    """A change history exported from another system (see docs/readiness.md for the format).

    ``{"events": [{"at": ..., "kind": ..., "added": n, "discontinued": n}, ...]}`` or a bare
    list of events; ``created_at`` is accepted for ``at`` so the rows of ``cartos catalog
    history`` can be pasted in. An ``add`` or ``discontinue`` event without counts is one SKU.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HistoryError(f"{path}: not a readable history JSON ({exc})") from exc
    if isinstance(data, list):
        data = {"events": data}
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = {
            **data,
            "events": [
                {("at" if k == "created_at" else k): v for k, v in event.items()}
                if isinstance(event, dict)
                else event
                for event in data["events"]
            ],
        }
    try:
        parsed = _HistoryFileModel.model_validate(data)
    except ValidationError as exc:
        raise HistoryError(format_validation_error(str(path), exc)) from exc
    events = []
    for e in parsed.events:
        added, discontinued = e.added, e.discontinued
        if added is None and discontinued is None:
            one = _ONE_SKU_KINDS.get(e.kind)
            added, discontinued = int(one == "added"), int(one == "discontinued")
        events.append(
            ChangeEvent(
                at=_utc(e.at),
                kind=e.kind,
                added=added or 0,
                discontinued=discontinued or 0,
                summary=e.summary or (e.sku or ""),
            )
        )
    events.sort(key=lambda ev: ev.at)
    return ChangeHistory(
        source=str(path),
        events=events,
        since=None if parsed.since is None else _utc(parsed.since),
        until=None if parsed.until is None else _utc(parsed.until),
        catalogue_skus=parsed.catalogue_skus,
    )


def read_history(path: Path) -> ChangeHistory:
    """``--history``: another catalogue file (SQLite) or a change-history JSON."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if head == b"SQLite format 3\x00":
        return history_from_catalogue(path)
    return history_from_json(path)


def _quarter(moment: datetime) -> str:
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


# -- 1. reference imbalance ------------------------------------------------------------------


def check_reference_imbalance(
    reference_counts: Mapping[str, int], t: ImbalanceThresholds
) -> CheckResult:
    """Ratio of the mean reference count of the top decile of SKUs to the bottom decile.

    A prototype is the mean of its references, so a SKU with 3 views is recognised from far
    less evidence than one with 300, and calibration (fitted on all SKUs together) hides it.
    Means over deciles rather than the two extreme SKUs keep one odd SKU from deciding.
    SKUs without any reference image (only shopper corrections) are named, not ranked.
    """
    spec = _Check(
        "reference_imbalance", t.max_ratio, "ratio",
        f"ok when the top/bottom decile ratio is at most {t.max_ratio:g}",
    )
    counts = {sku: int(n) for sku, n in reference_counts.items() if n > 0}
    without = sorted(sku for sku, n in reference_counts.items() if n <= 0)
    if len(counts) < 2:
        return spec.not_measured(
            f"{len(counts)} SKU(s) with reference images; a ratio needs at least 2",
            skus_without_references=without[:LISTED_SKUS],
        )
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    values = np.array([n for _, n in ordered], dtype=np.float64)
    k = max(1, math.ceil(len(values) / 10))
    bottom, top = float(values[:k].mean()), float(values[-k:].mean())
    ratio = top / bottom
    concern = ratio > t.max_ratio
    summary = (
        f"the best-covered {k} SKU(s) (top decile) average {top:.1f} reference images, the "
        f"least-covered {k} average {bottom:.1f}: {ratio:.1f}x"
    )
    if concern:
        summary += (
            "; thin SKUs rest on a few views and will be missed first; add references to the "
            "thinnest SKUs listed"
        )
    if without:
        summary += f"; {len(without)} active SKU(s) have no reference image at all"
    return spec.measured(
        ratio, concern, summary,
        details={
            "skus": len(values),
            "decile_size": k,
            "top_decile_mean": top,
            "bottom_decile_mean": bottom,
            "references": int(values.sum()),
            "min": int(values[0]),
            "median": float(np.median(values)),
            "max": int(values[-1]),
            "thinnest": [{"sku": s, "references": n} for s, n in ordered[:LISTED_SKUS]],
            "richest": [{"sku": s, "references": n} for s, n in ordered[::-1][:LISTED_SKUS]],
            "skus_without_references": without[:LISTED_SKUS],
        },
    )


# -- 2. prototype separation -----------------------------------------------------------------


@dataclass
class SeparationData:
    """The inter-class distance distribution, kept for the histogram plot."""

    hist_counts: np.ndarray
    hist_edges: np.ndarray
    percentile: float
    percentile_value: float
    floor: float
    nearest: float


def projected_prototypes(snap: CatalogueSnapshot) -> tuple[list[str], np.ndarray]:
    """Unit SKU prototypes as :class:`RecognitionIndex` scores against them.

    The index projects every exemplar with the catalogue's projection and averages per SKU;
    the stored prototypes are raw-space means, so two SKUs that the projection pulls together
    (or apart) would be judged wrongly from them. Same order as ``RecognitionIndex.skus``.
    """
    active = {r.sku for r in snap.records}
    skus = sorted(active)
    column = {s: i for i, s in enumerate(skus)}
    keep = np.array([s in column for s in snap.exemplar_skus], dtype=bool)
    if not keep.any():
        return skus, np.zeros((0, 0), dtype=np.float32)
    labels = np.array([column[s] for s, k in zip(snap.exemplar_skus, keep, strict=True) if k])
    z = snap.projection.apply(np.asarray(snap.exemplar_vectors)[keep]).astype(np.float64)
    proto = np.zeros((len(skus), z.shape[1]), dtype=np.float64)
    np.add.at(proto, labels, z)
    proto /= np.maximum(np.linalg.norm(proto, axis=1, keepdims=True), 1e-12)
    return skus, proto.astype(np.float32)


@dataclass
class _PairScan:
    n_pairs: int
    hist: np.ndarray
    below_floor: int
    best: list[tuple[float, int, int]]
    all_distances: np.ndarray | None


def _scan_pairs(protos: np.ndarray, floor: float, keep: int) -> _PairScan:
    """Cosine distances of every unordered prototype pair, one block of rows at a time."""
    c = len(protos)
    n_pairs = c * (c - 1) // 2
    exact = n_pairs <= EXACT_PAIRS_LIMIT
    all_d = np.empty(n_pairs, dtype=np.float32) if exact else None
    edges = np.linspace(0.0, HIST_MAX_DISTANCE, HIST_BINS + 1)
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    best_d = np.zeros(0, dtype=np.float32)
    best_i = np.zeros(0, dtype=np.int64)
    best_j = np.zeros(0, dtype=np.int64)
    below, pos = 0, 0
    for start in range(0, c - 1, _PAIR_BLOCK):
        stop = min(c, start + _PAIR_BLOCK)
        sims = protos[start:stop] @ protos[start + 1 :].T
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start + 1, c)[None, :]
        ri, ci = np.nonzero(cols > rows)
        d = np.clip(1.0 - sims[ri, ci], 0.0, HIST_MAX_DISTANCE).astype(np.float32)
        if all_d is not None:
            all_d[pos : pos + len(d)] = d
        pos += len(d)
        hist += np.histogram(d, bins=edges)[0]
        below += int((d < floor).sum())
        if keep and len(d):
            take = np.argpartition(d, min(keep, len(d)) - 1)[:keep]
            best_d = np.concatenate([best_d, d[take]])
            best_i = np.concatenate([best_i, ri[take] + start])
            best_j = np.concatenate([best_j, ci[take] + start + 1])
            order = np.argsort(best_d, kind="stable")[:keep]
            best_d, best_i, best_j = best_d[order], best_i[order], best_j[order]
    best = [(float(d), int(i), int(j)) for d, i, j in zip(best_d, best_i, best_j, strict=True)]
    return _PairScan(n_pairs, hist, below, best, all_d)


def _hist_percentile(hist: np.ndarray, edges: np.ndarray, q: float) -> float:
    """Percentile read off a histogram, interpolating linearly inside the bin."""
    total = int(hist.sum())
    target = q / 100.0 * total
    cum = np.cumsum(hist)
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, len(hist) - 1)
    before = float(cum[b - 1]) if b > 0 else 0.0
    inside = float(hist[b]) or 1.0
    return float(edges[b] + (target - before) / inside * (edges[b + 1] - edges[b]))


def check_prototype_separation(
    snap: CatalogueSnapshot, t: SeparationThresholds
) -> tuple[CheckResult, SeparationData | None]:
    """Distribution of cosine distances between projected SKU prototypes.

    The value is a low percentile of the distribution (how crowded the catalogue is); the
    verdict looks at the closest pairs, because one pair of look-alikes below the floor is
    enough for the recogniser to swap two SKUs, whatever the rest of the catalogue looks like.
    Pairs under the percentile are listed nearest first: candidates for subclass routing (a
    scale or barcode prompt between them) or for a merged SKU in the taxonomy.
    """
    spec = _Check(
        "prototype_separation", t.min_distance, "cosine distance",
        f"ok when no SKU pair is closer than {t.min_distance:g} "
        f"(value: {t.percentile:g}th-percentile inter-class distance)",
    )
    skus, protos = projected_prototypes(snap)
    if len(skus) < 2 or protos.shape[0] < 2:
        return (
            spec.not_measured(f"{len(skus)} active SKU(s) with exemplars; pairs need at least 2"),
            None,
        )
    keep = max(t.max_listed_pairs, 1)
    scan = _scan_pairs(protos, t.min_distance, keep)
    edges = np.linspace(0.0, HIST_MAX_DISTANCE, HIST_BINS + 1)
    if scan.all_distances is not None:
        value = float(np.percentile(scan.all_distances, t.percentile))
        below_p = int((scan.all_distances < value).sum())
        median = float(np.median(scan.all_distances))
        method = "exact"
    else:
        value = _hist_percentile(scan.hist, edges, t.percentile)
        below_p = round(scan.n_pairs * t.percentile / 100.0)
        median = _hist_percentile(scan.hist, edges, 50.0)
        method = f"histogram ({HIST_MAX_DISTANCE / HIST_BINS:g} bins)"
    nearest = scan.best[0][0]
    records = {r.sku: r for r in snap.records}
    listed = [
        _pair_entry(records[skus[i]], records[skus[j]], d)
        for d, i, j in scan.best[: t.max_listed_pairs]
        if d <= value
    ]
    concern = scan.below_floor > 0
    a, b = skus[scan.best[0][1]], skus[scan.best[0][2]]
    summary = (
        f"{t.percentile:g}% of the {scan.n_pairs} SKU pairs are closer than {value:.3f}; "
        f"the nearest pair ({a} / {b}) is {nearest:.3f} apart"
    )
    if concern:
        summary += (
            f"; {scan.below_floor} pair(s) are under the {t.min_distance:g} floor: the "
            "recogniser will swap them; route them through a subclass check (scale, barcode) "
            "or merge them in the taxonomy"
        )
    result = spec.measured(
        value, concern, summary,
        details={
            "skus": len(skus),
            "pairs": scan.n_pairs,
            "percentile": t.percentile,
            "percentile_method": method,
            "nearest_distance": nearest,
            "median_distance": median,
            "pairs_below_floor": scan.below_floor,
            "pairs_below_percentile": below_p,
            "closest_pairs": listed,
            "histogram": _coarse_histogram(scan.hist),
        },
    )
    data = SeparationData(scan.hist, edges, t.percentile, value, t.min_distance, nearest)
    return result, data


def _pair_entry(a: SkuRecord, b: SkuRecord, distance: float) -> dict[str, Any]:
    same_family = bool(a.family) and a.family == b.family
    same_brand = bool(a.brand) and a.brand == b.brand
    return {
        "sku_a": a.sku,
        "sku_b": b.sku,
        "distance": round(distance, 5),
        "name_a": a.name,
        "name_b": b.name,
        "same_family": same_family,
        "same_brand": same_brand,
        "suggestion": "subclass routing within the family"
        if same_family or same_brand
        else "check the taxonomy (look-alikes across families)",
    }


def _coarse_histogram(hist: np.ndarray, width: float = 0.05) -> dict[str, Any]:
    """The fine histogram summed into ``width`` bins, trailing empty bins dropped."""
    factor = round(width / (HIST_MAX_DISTANCE / HIST_BINS))
    coarse = hist.reshape(-1, factor).sum(axis=1)
    nonzero = np.nonzero(coarse)[0]
    last = int(nonzero[-1]) + 1 if len(nonzero) else 0
    return {"bin_width": width, "counts": [int(c) for c in coarse[:last]]}


# -- 3. catalogue change rate ----------------------------------------------------------------


def check_catalogue_change_rate(
    history: ChangeHistory | None, catalogue_skus: int, t: ChangeRateThresholds
) -> CheckResult:
    """SKUs added plus discontinued per quarter, as a share of the catalogue.

    Every new SKU is an unknown item until someone enrols it, and every stale one a wrong
    answer waiting to happen; above a few percent a quarter, re-enrolment by hand cannot keep
    up and the cart must rely on its unknown-item loop (review queue, corrections). The value
    is the average over the whole history, so a short burst does not decide alone; the busiest
    calendar quarter is listed beside it.
    """
    spec = _Check(
        "catalogue_change_rate", t.max_share_per_quarter, "share per quarter",
        f"ok when at most {t.max_share_per_quarter:.1%} of the SKUs change per quarter",
    )
    if history is None or not history.events:
        return spec.not_measured("the catalogue has no recorded changes")
    size = history.catalogue_skus or catalogue_skus
    events = sorted(history.events, key=lambda e: e.at)
    if history.since is not None:
        start = history.since
        counted = [e for e in events if e.at >= start]
        baseline = None
    else:
        start = events[0].at
        counted = events[1:]
        baseline = events[0]
    end = history.until or events[-1].at
    span = end - start
    span_days = span / timedelta(days=1)
    details: dict[str, Any] = {
        "source": history.source,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "span_days": round(span_days, 2),
        "catalogue_skus": size,
        "baseline": None
        if baseline is None
        else {"at": baseline.at.isoformat(), "kind": baseline.kind, "added": baseline.added},
    }
    if span_days < t.min_span_days:
        return spec.not_measured(
            f"the history spans {_days(span_days)}, less than the {t.min_span_days:g} days a "
            "quarterly rate needs (give a longer one with --history)",
            **details,
        )
    if size <= 0:
        return spec.not_measured("the catalogue is empty", **details)
    added = sum(e.added for e in counted)
    retired = sum(e.discontinued for e in counted)
    quarters = span_days / DAYS_PER_QUARTER
    rate = (added + retired) / size / quarters
    per_quarter: dict[str, dict[str, Any]] = {}
    for e in counted:
        if e.added or e.discontinued:
            q = per_quarter.setdefault(_quarter(e.at), {"added": 0, "discontinued": 0})
            q["added"] += e.added
            q["discontinued"] += e.discontinued
    table = [
        {"quarter": q, **v, "share": (v["added"] + v["discontinued"]) / size}
        for q, v in sorted(per_quarter.items())
    ]
    busiest = max(table, key=lambda row: row["share"]) if table else None
    concern = rate > t.max_share_per_quarter
    summary = (
        f"{added} SKU(s) added and {retired} discontinued over {_days(span_days)} on a "
        f"{size}-SKU catalogue: {rate:.1%} per quarter"
    )
    if busiest is not None:
        summary += f" (busiest quarter {busiest['quarter']}: {busiest['share']:.1%})"
    if concern:
        summary += (
            "; the assortment moves faster than enrolment by hand keeps up: the cart needs the "
            "unknown loop (review queue, corrections) running"
        )
    details.update(
        added=added,
        discontinued=retired,
        quarters=round(quarters, 3),
        per_quarter=table,
        events_counted=len(counted),
    )
    return spec.measured(
        rate, concern, summary,
        details=details,
    )


def _days(days: float) -> str:
    if days < 1:
        return f"{days * 24:.1f} hours"
    return f"{days:.1f} days"


# -- 4. memory headroom ----------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueShape:
    """What sizes the centroid table: SKUs, exemplars, families and brands."""

    skus: int
    exemplars: int
    families: int
    brands: int


MAX_EXEMPLARS_PER_SKU = 50  # CatalogueConfig.exemplars_per_sku's upper bound


def profile_for_catalogue(profile: DeviceProfile, shape: CatalogueShape) -> DeviceProfile:
    """The profile with its catalogue section replaced by this catalogue's real size.

    The probe allocates ``max_skus x (1 + exemplars_per_sku)`` rows; the average exemplar
    count (rounded up) gives at least the real row count. Where the average exceeds the
    schema's bound of 50, the SKU count is raised instead so the row count still matches.
    """
    skus = max(1, shape.skus)
    per_sku = max(1, math.ceil(shape.exemplars / skus))
    if per_sku > MAX_EXEMPLARS_PER_SKU:
        rows = skus + shape.exemplars
        per_sku = MAX_EXEMPLARS_PER_SKU
        skus = math.ceil(rows / (1 + per_sku))
    catalogue = CatalogueConfig(
        max_skus=skus,
        exemplars_per_sku=per_sku,
        families=shape.families,
        brands=shape.brands,
    )
    return profile.model_copy(update={"catalogue": catalogue})


def check_memory_headroom(
    profile: DeviceProfile | None, shape: CatalogueShape, t: MemoryThresholds
) -> CheckResult:
    """Free share of the device's memory budget with this catalogue loaded.

    Measured the way ``cartos profile check`` measures it (a fresh process: imports, model,
    warm-up, a centroid table filled to size, the frame ring), but with the table sized by
    this catalogue instead of the profile's planning figure, so the answer is about what will
    actually be deployed.
    """
    from cartos.profiles.check import require_backend, target_notes
    from cartos.profiles.footprint import measure_footprint
    from cartos.profiles.model_file import verified_model

    spec = _Check(
        "memory_headroom", t.min_free_fraction, "free share of budget",
        f"ok when at least {t.min_free_fraction:.0%} of the memory budget stays free",
    )
    if profile is None:
        return spec.not_measured("no device profile given")
    sized = profile_for_catalogue(profile, shape)
    try:
        require_backend(sized)
        model_path, _card = verified_model(sized.inference)
        fp = measure_footprint(sized, model_path)
    except ProfileError as exc:
        return spec.not_measured(f"profile {profile.name} cannot be measured here: {exc}")
    free = fp.free_fraction
    concern = free < t.min_free_fraction
    notes = list(target_notes(profile))
    if shape.skus > profile.catalogue.max_skus:
        notes.append(
            f"the catalogue has {shape.skus} active SKUs, more than the profile's max_skus "
            f"{profile.catalogue.max_skus}"
        )
    summary = (
        f"{fp.total_mib:.0f} MiB of the {fp.budget_mib} MiB budget on profile {profile.name} "
        f"with {shape.skus} SKUs and {shape.exemplars} exemplars: {free:.0%} free"
    )
    if concern:
        heaviest = sorted(fp.components, key=lambda c: c.mib, reverse=True)[:3]
        summary += (
            "; too little left for allocator fragmentation and catalogue growth (heaviest: "
            + ", ".join(f"{c.label} {c.mib:.0f} MiB" for c in heaviest)
            + ")"
        )
    return spec.measured(
        free, concern, summary,
        details={
            "profile": profile.name,
            "profile_headroom": profile.memory.headroom,
            "fits_profile": fp.fits,
            "catalogue": {
                "skus": shape.skus,
                "exemplars": shape.exemplars,
                "families": shape.families,
                "brands": shape.brands,
                "measured_as": {
                    "max_skus": sized.catalogue.max_skus,
                    "exemplars_per_sku": sized.catalogue.exemplars_per_sku,
                },
            },
            "footprint": fp.to_dict(),
            "notes": notes,
        },
    )


# -- 5. unknown detection --------------------------------------------------------------------


@dataclass
class ImageSetOutcome:
    """Recognitions of an image set, plus what could not be used."""

    source: str
    recognitions: list[Recognition]
    labels: list[str | None]
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)


def check_unknown_detection(
    outcome: ImageSetOutcome | None,
    calibrated: bool,
    catalogue_skus: set[str],
    t: UnknownThresholds,
) -> CheckResult:
    """Share of never-enrolled product images the recogniser does not accept as a SKU.

    Only ``accept`` automates a SKU without the shopper; ``confirm``, ``fallback`` and
    ``unknown`` all reach a person, so they count as not accepted. An uncalibrated catalogue
    accepts nothing at all, which would make the share a meaningless 100 %.
    """
    spec = _Check(
        "unknown_detection", t.min_rejected_share, "share not accepted",
        f"ok when at least {t.min_rejected_share:.0%} of held-out images are not accepted",
    )
    if outcome is None:
        return spec.not_measured("no held-out product images given (--unknown)")
    if not calibrated:
        return spec.not_measured(
            "the catalogue has no current calibration, so nothing is ever accepted; run "
            "`cartos calibrate`",
        )
    recs = outcome.recognitions
    if not recs:
        return spec.not_measured(f"no readable image in {outcome.source}")
    decisions = Counter(r.decision for r in recs)
    accepted = [r.sku for r in recs if r.decision == "accept"]
    rejected = 1.0 - len(accepted) / len(recs)
    named = sum(1 for label in outcome.labels if label is not None and label in catalogue_skus)
    concern = rejected < t.min_rejected_share
    summary = (
        f"{rejected:.1%} of {len(recs)} held-out product images were not accepted as a SKU "
        f"({decisions.get('unknown', 0)} flagged unknown, {decisions.get('confirm', 0)} sent "
        f"to confirmation, {decisions.get('fallback', 0)} to a family/brand fallback)"
    )
    if concern:
        summary += (
            f"; {len(accepted)} were accepted as catalogue SKUs, so unlisted products would be "
            "charged as something else; raise the unknown threshold or re-calibrate with "
            "held-out products"
        )
    details: dict[str, Any] = {
        "source": outcome.source,
        "images": len(recs),
        "unreadable": outcome.unreadable,
        "decisions": dict(sorted(decisions.items())),
        "accepted": len(accepted),
        "flagged_unknown_share": decisions.get("unknown", 0) / len(recs),
        "sku_level_share": (decisions.get("accept", 0) + decisions.get("confirm", 0)) / len(recs),
        "most_accepted_as": [
            {"sku": s, "images": n} for s, n in Counter(accepted).most_common(LISTED_SKUS)
        ],
    }
    if named:
        details["rows_naming_catalogue_skus"] = named
        summary += f"; note: {named} row(s) of the set name an active catalogue SKU"
    return spec.measured(
        rejected, concern, summary,
        details=details,
    )


# -- 6. per-class accuracy spread ------------------------------------------------------------


def check_per_class_accuracy_spread(
    outcome: ImageSetOutcome | None, catalogue_skus: set[str], t: SpreadThresholds
) -> CheckResult:
    """Standard deviation, in percentage points, of per-SKU top-1 accuracy.

    A mean accuracy of 90 % can be every SKU at 90 % or a tenth of the catalogue at 0 %; the
    second is a store where some products never ring up right. The spread of the expected
    sampling noise alone (binomial, from each SKU's image count) is reported beside it, so a
    large spread on few images per SKU can be told apart from a real one.
    """
    spec = _Check(
        "per_class_accuracy_spread", t.max_std_points, "percentage points (std)",
        f"ok when the std of per-SKU top-1 accuracy is at most {t.max_std_points:g} points",
    )
    if outcome is None:
        return spec.not_measured("no labelled validation images given (--validation)")
    hits: dict[str, list[bool]] = {}
    outside = 0
    for rec, label in zip(outcome.recognitions, outcome.labels, strict=True):
        if label is None or label not in catalogue_skus:
            outside += 1
            continue
        hits.setdefault(label, []).append(rec.sku == label)
    enough = {s: h for s, h in hits.items() if len(h) >= t.min_images_per_sku}
    thin = len(hits) - len(enough)
    base = {
        "source": outcome.source,
        "images": len(outcome.recognitions),
        "unreadable": outcome.unreadable,
        "images_outside_catalogue": outside,
        "skus_with_images": len(hits),
        "skus_without_images": len(catalogue_skus - set(hits)),
        "skus_with_too_few_images": thin,
        "min_images_per_sku": t.min_images_per_sku,
    }
    if len(enough) < 2:
        return spec.not_measured(
            f"{len(enough)} SKU(s) have at least {t.min_images_per_sku} validation images; a "
            "spread needs 2 (with fewer images a per-SKU accuracy is mostly sampling noise)",
            **base,
        )
    acc = {s: 100.0 * float(np.mean(h)) for s, h in enough.items()}
    values = np.array(list(acc.values()))
    std = float(values.std())
    counts = np.array([len(enough[s]) for s in acc])
    p = values / 100.0
    noise = 100.0 * float(np.sqrt(np.mean(p * (1 - p) / counts)))
    all_hits = [x for h in enough.values() for x in h]
    worst = sorted(acc.items(), key=lambda kv: (kv[1], kv[0]))[:LISTED_SKUS]
    concern = std > t.max_std_points
    excess = math.sqrt(max(0.0, std**2 - noise**2))
    summary = (
        f"per-SKU top-1 accuracy over {len(acc)} SKUs has a std of {std:.1f} points "
        f"(mean {values.mean():.1f} %, lowest {worst[0][1]:.0f} % for {worst[0][0]}; sampling "
        f"noise alone would give about {noise:.1f}, the excess over it is {excess:.1f})"
    )
    if concern:
        summary += (
            "; some SKUs are recognised far worse than the rest: add references for the worst "
            "SKUs listed or check their labels"
        )
    base.update(
        skus=len(acc),
        mean_accuracy=float(values.mean()),
        top1_overall=100.0 * float(np.mean(all_hits)),
        sampling_noise_std=noise,
        excess_std=excess,
        worst=[
            {"sku": s, "accuracy": round(a, 2), "images": len(enough[s])} for s, a in worst
        ],
    )
    return spec.measured(
        std, concern, summary,
        details=base,
    )


# -- 7. calibration ECE ----------------------------------------------------------------------


@dataclass
class ReliabilityData:
    """Reliability bins for the diagram: raw softmax (before) and the recogniser (after)."""

    before: list[dict[str, float]]
    after: list[dict[str, float]]


def check_calibration_ece(
    outcome: ImageSetOutcome | None,
    raw_top_prob: np.ndarray | None,
    calibrated: bool,
    t: CalibrationThresholds,
    unknown: ImageSetOutcome | None = None,
) -> tuple[CheckResult, ReliabilityData | None]:
    """Expected calibration error of the confidence the recogniser reports, on validation.

    The cart accepts an answer when its confidence clears a bar fitted for a target precision;
    that only holds if a confidence of 0.9 is right 9 times in 10 on images the calibration
    never saw. Every validation image counts, an image of a SKU outside the catalogue as a
    wrong top-1, since the confidence includes the chance that the item is not listed.

    That last factor, P(listed), is fitted on a mix of listed items and simulated unknowns, so
    on a validation set of listed items only it pulls the confidence below the accuracy. Two
    figures beside the value tell that apart from a calibration that is simply wrong: the ECE
    of P(right | listed) alone, and the ECE over the validation set plus the unknown-item set
    (when one is given), the mix a cart actually meets.
    """
    spec = _Check(
        "calibration_ece", t.max_ece, "ECE",
        f"ok when the ECE is at most {t.max_ece:g}",
    )
    if outcome is None:
        return (
            spec.not_measured("no labelled validation images given (--validation)"),
            None,
        )
    if len(outcome.recognitions) < t.min_images:
        return (
            spec.not_measured(
                f"{len(outcome.recognitions)} readable validation images, fewer than the "
                f"{t.min_images} an ECE needs",
                source=outcome.source, images=len(outcome.recognitions),
            ),
            None,
        )
    conf = np.array([r.confidence for r in outcome.recognitions], dtype=np.float64)
    correct = np.array(
        [r.sku == label for r, label in zip(outcome.recognitions, outcome.labels, strict=True)],
        dtype=np.float64,
    )
    ece = expected_calibration_error(conf, correct, bins=t.bins)
    extra: dict[str, Any] = {}
    if calibrated:
        listed = np.array([max(1e-9, 1.0 - r.unknown_score) for r in outcome.recognitions])
        extra["ece_given_listed"] = expected_calibration_error(
            np.clip(conf / listed, 0.0, 1.0), correct, bins=t.bins)
        extra["mean_p_listed"] = float(listed.mean())
    if unknown is not None and unknown.recognitions:
        u_conf = np.array([r.confidence for r in unknown.recognitions], dtype=np.float64)
        extra["ece_with_unknown_items"] = expected_calibration_error(
            np.concatenate([conf, u_conf]),
            np.concatenate([correct, np.zeros(len(u_conf))]),
            bins=t.bins,
        )
        extra["unknown_items"] = len(u_conf)
    after = reliability_bins(conf, correct)
    before = reliability_bins(raw_top_prob, correct) if raw_top_prob is not None else []
    gap = float(conf.mean() - correct.mean())
    concern = ece > t.max_ece
    tone = "over" if gap > 0 else "under"
    summary = (
        f"ECE {ece:.3f} over {len(conf)} validation images (mean confidence "
        f"{conf.mean():.3f}, top-1 accuracy {correct.mean():.3f}: {tone}confident by "
        f"{abs(gap):.3f})"
    )
    if not calibrated:
        summary += "; the catalogue has no current calibration, these are raw softmax scores"
    mixed = extra.get("ece_with_unknown_items")
    if concern and gap < 0 and mixed is not None and mixed <= t.max_ece:
        summary += (
            f"; with the {extra['unknown_items']} unknown-item images added the ECE is "
            f"{mixed:.3f}: the confidence discounts the chance that an item is not listed "
            f"(mean P(listed) {extra['mean_p_listed']:.2f} here), which a validation set of "
            "listed items only never rewards; re-calibrate if the carts will meet fewer "
            "unlisted items than the calibration's simulated unknowns"
        )
    elif concern:
        summary += (
            "; thresholds fitted for a target precision will not deliver it: re-run "
            "`cartos calibrate` on images like the validation set"
        )
    result = spec.measured(
        ece, concern, summary,
        details={
            "source": outcome.source,
            "images": len(conf),
            "calibrated": calibrated,
            "bins": t.bins,
            "mean_confidence": float(conf.mean()),
            "accuracy": float(correct.mean()),
            "ece_raw_softmax": expected_calibration_error(raw_top_prob, correct, bins=t.bins)
            if raw_top_prob is not None
            else None,
            **extra,
            "reliability": after,
        },
    )
    return result, ReliabilityData(before=before, after=after)


def summarise(checks: Sequence[CheckResult]) -> dict[str, int]:
    """How many checks ended in each verdict."""
    counts = Counter(c.verdict for c in checks)
    return {v: counts.get(v, 0) for v in VERDICTS}

