"""Measure cartos's real memory footprint, stage by stage, in a process of its own.

Run as a script in a fresh interpreter (:func:`cartos.profiles.footprint.run_probe` starts it) or
as ``python -m cartos.profiles.footprint_probe``, with a JSON request on stdin; prints one
JSON line with the resident set size (Linux ``VmRSS``) after each stage and the peak (``VmHWM``).
A fresh process is the only honest way to measure: the process asking for the measurement has
already imported and allocated whatever it needed, and Python never returns most of it.

Stages, in the order the cart's runtime goes through them:

1. start: the interpreter and this module;
2. imports: the runtime modules (numpy, OpenCV, pydantic, the catalogue store, the recogniser and
   every installed inference backend);
3. loaded: the backend created through the registry for the profile's model and threads;
4. warm: after warm-up runs at ``max_batch`` until RSS stops growing (ONNX Runtime's arena keeps
   growing for the first few runs, so a single run under-reports it);
5. table: after allocating and filling the float32 centroid table a catalogue of ``max_skus``
   SKUs needs (prototypes, exemplars, family and brand prototypes); filling touches every page,
   an untouched allocation would not be resident.

``/proc/self/status`` is read directly rather than through psutil: every cart runs Linux, and
one file read needs no extra dependency on the device.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

STATUS_FILE = Path("/proc/self/status")

# What the cart's runtime imports before it recognises anything. Measured as one block: the
# baseline a profile pays whatever its catalogue and model.
RUNTIME_MODULES = (
    "numpy",
    "cv2",
    "pydantic",
    "cartos.profiles.schema",
    "cartos.catalog.store",
    "cartos.inference.recognizer",
)
MAX_WARMUP_RUNS = 6
WARMUP_SETTLED_KIB = 1024  # growth below 1 MiB between runs: the arena has settled


def read_status_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB."""
    values: dict[str, int] = {}
    for line in STATUS_FILE.read_text(encoding="ascii").splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if set(values) != {"VmRSS", "VmHWM"}:
        raise OSError(f"{STATUS_FILE} lacks VmRSS/VmHWM")
    return values


def rss_kib() -> int:
    return read_status_kib()["VmRSS"]


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Run the stages for one request; return RSS per stage (KiB) and what was measured."""
    started = time.perf_counter()
    stages: dict[str, int] = {"start": rss_kib()}

    for module in RUNTIME_MODULES:
        importlib.import_module(module)
    import numpy as np

    from cartos.inference import backend as backends
    from cartos.inference.model_card import ModelCard, card_path_for

    backends.discover()
    stages["imports"] = rss_kib()

    model_path = Path(request["model"])
    card = ModelCard.load(card_path_for(model_path))
    engine = backends.create(
        request["backend"], model_path, backends.BackendOptions(threads=int(request["threads"]))
    )
    stages["loaded"] = rss_kib()

    batch_shape = (int(request["max_batch"]), 3, card.input_size, card.input_size)
    batch = np.random.default_rng(0).standard_normal(batch_shape, dtype=np.float32)
    runs = 0
    previous = stages["loaded"]
    while runs < MAX_WARMUP_RUNS:
        engine.run(batch)
        runs += 1
        now = rss_kib()
        if runs >= 2 and now - previous < WARMUP_SETTLED_KIB:
            break
        previous = now
    stages["warm"] = rss_kib()

    dim = engine.output_dim
    skus = int(request["max_skus"])
    rows = {
        "prototypes": skus,
        "exemplars": skus * int(request["exemplars_per_sku"]),
        "families": int(request["families"]),
        "brands": int(request["brands"]),
    }
    table = {part: np.empty((n, dim), dtype=np.float32) for part, n in rows.items()}
    for array in table.values():
        array.fill(1.0)
    stages["table"] = rss_kib()
    peak = read_status_kib()["VmHWM"]
    engine.close()

    return {
        "stages_kib": stages,
        "peak_kib": peak,
        "embedding_dim": dim,
        "table_rows": rows,
        "warmup_runs": runs,
        "batch_shape": list(batch_shape),
        "seconds": round(time.perf_counter() - started, 3),
    }


def main() -> int:
    """Read the request from stdin, print the result (or ``{"error": ...}``) as one JSON line."""
    try:
        request = json.loads(sys.stdin.read())
        result = measure(request)
    except Exception as exc:  # any failure is reported to the parent as data, not a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
