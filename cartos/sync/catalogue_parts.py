"""What a ``catalogue`` bundle's parts contain, byte for byte: written by the hub, read by carts.

The signature (``cartos.sync.bundles``) says *who* sent a part; this module says
*what it means*, and refuses anything that does not parse exactly, because a
part that verifies can still be a hub bug. Each decoder returns plain typed
values and raises :class:`~cartos.sync.errors.PartFormatError` with the reason.

Parts (``kind`` in the manifest → content):

``catalogue_rows``
    ``{"skus": [{sku, name, barcode, brand, family, weight_g, weight_tol_g,
    status, successor}, …]}``: SKU rows to insert or replace (a SKU is never
    deleted; it is discontinued).
``prototype_deltas``
    ``{"format": 1, "baseline": ID, "dim": D, "exemplars": {sku: [[source, b64], …]}}``:
    for every SKU the fleet has taught something since the catalogue baseline
    the carts were provisioned with, the *whole* current set of fleet
    exemplars (little-endian float32 embeddings, base64). Cumulative, not
    incremental: each bundle replaces the previous one, so a cart that was
    offline through ten releases needs only the newest, and the cart
    recomputes the prototypes from exemplars exactly as the hub did.
``thresholds``
    The recogniser's calibration artifact (JSON, ``cartos.inference.calibration``).
``model`` / ``model_card``
    An INT8 ONNX backbone and its card (``cartos.modelbuild``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cartos.catalog.records import SKU_STATUSES, SkuRecord
from cartos.sync.errors import PartFormatError

DELTA_FORMAT: Final = 1
BASELINE_META: Final = "fleet_baseline"
"""Catalogue meta key naming the baseline a cart's catalogue was provisioned from; a
``prototype_deltas`` part applies only on top of the same baseline."""

FLEET_KIND: Final = "fleet"
"""Exemplar kind of what the hub taught the cart (other carts' corrections, reviews)."""

_SKU_FIELDS: Final = frozenset(
    {"sku", "name", "barcode", "brand", "family", "weight_g", "weight_tol_g", "status",
     "successor"}
)
_VECTOR: Final = np.dtype("<f4")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PartFormatError(f"{what}: not UTF-8 JSON ({exc})") from exc


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# -- catalogue rows ------------------------------------------------------------------------


def encode_catalogue_rows(records: Sequence[SkuRecord]) -> bytes:
    return _canonical({"skus": [asdict(r) for r in sorted(records, key=lambda r: r.sku)]})


def decode_catalogue_rows(data: bytes) -> list[SkuRecord]:
    obj = _json(data, "catalogue_rows")
    if not isinstance(obj, dict) or set(obj) != {"skus"} or not isinstance(obj["skus"], list):
        raise PartFormatError("catalogue_rows: expected {\"skus\": [...]}")
    out: list[SkuRecord] = []
    for row in obj["skus"]:
        if not isinstance(row, dict) or set(row) != _SKU_FIELDS:
            raise PartFormatError(f"catalogue_rows: a row must have exactly {sorted(_SKU_FIELDS)}")
        if not isinstance(row["sku"], str) or not row["sku"]:
            raise PartFormatError("catalogue_rows: sku must be a non-empty string")
        if row["status"] not in SKU_STATUSES:
            raise PartFormatError(f"catalogue_rows: {row['sku']}: bad status {row['status']!r}")
        for key in ("weight_g", "weight_tol_g"):
            value = row[key]
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float) or value < 0):
                raise PartFormatError(f"catalogue_rows: {row['sku']}: bad {key} {value!r}")
        for key in ("name",):
            if not isinstance(row[key], str):
                raise PartFormatError(f"catalogue_rows: {row['sku']}: {key} must be a string")
        for key in ("barcode", "brand", "family", "successor"):
            if row[key] is not None and not isinstance(row[key], str):
                raise PartFormatError(f"catalogue_rows: {row['sku']}: {key} must be a string")
        out.append(SkuRecord(**row))
    if len({r.sku for r in out}) != len(out):
        raise PartFormatError("catalogue_rows: a SKU appears twice")
    return out


# -- fleet exemplars -------------------------------------------------------------------------


def encode_prototype_deltas(
    baseline: str, dim: int,
    exemplars: Mapping[str, Sequence[tuple[str, npt.NDArray[np.float32]]]],
) -> bytes:
    """``exemplars``: per SKU, every fleet exemplar as ``(source, vector)``."""
    body = {
        "format": DELTA_FORMAT,
        "baseline": baseline,
        "dim": dim,
        "exemplars": {
            sku: [[source, base64.b64encode(np.asarray(v, dtype=_VECTOR).tobytes()).decode()]
                  for source, v in sorted(rows, key=lambda r: r[0])]
            for sku, rows in sorted(exemplars.items())
        },
    }
    return _canonical(body)


def decode_prototype_deltas(
    data: bytes,
) -> tuple[str, int, dict[str, list[tuple[str, npt.NDArray[np.float32]]]]]:
    """Returns ``(baseline, dim, {sku: [(source, vector), …]})``; every vector is finite."""
    obj = _json(data, "prototype_deltas")
    if (not isinstance(obj, dict) or set(obj) != {"format", "baseline", "dim", "exemplars"}
            or obj["format"] != DELTA_FORMAT):
        raise PartFormatError("prototype_deltas: unknown layout or format")
    baseline, dim, table = obj["baseline"], obj["dim"], obj["exemplars"]
    if not isinstance(baseline, str) or not baseline:
        raise PartFormatError("prototype_deltas: baseline must be a non-empty string")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65_536:
        raise PartFormatError(f"prototype_deltas: bad dim {dim!r}")
    if not isinstance(table, dict):
        raise PartFormatError("prototype_deltas: exemplars must be an object")
    out: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = {}
    for sku, rows in table.items():
        if not sku or not isinstance(rows, list):
            raise PartFormatError(f"prototype_deltas: {sku!r}: rows must be a list")
        decoded: list[tuple[str, npt.NDArray[np.float32]]] = []
        for row in rows:
            if (not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str)
                    or not row[0] or not isinstance(row[1], str)):
                raise PartFormatError(f"prototype_deltas: {sku}: a row is [source, base64]")
            try:
                raw = base64.b64decode(row[1], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PartFormatError(f"prototype_deltas: {sku}: bad base64") from exc
            if len(raw) != dim * _VECTOR.itemsize:
                raise PartFormatError(f"prototype_deltas: {sku}: a vector is not {dim} floats")
            vector = np.frombuffer(raw, dtype=_VECTOR).astype(np.float32)
            if not np.all(np.isfinite(vector)):
                raise PartFormatError(f"prototype_deltas: {sku}: a vector is not finite")
            decoded.append((row[0], vector))
        if len({s for s, _ in decoded}) != len(decoded):
            raise PartFormatError(f"prototype_deltas: {sku}: a source appears twice")
        out[sku] = decoded
    return baseline, dim, out
