"""A profile's memory footprint: measured in a fresh process, compared with its budget.

Estimating memory from parameter counts is how carts run out of it: the interpreter, OpenCV and
the inference runtime's arena cost more than the weights. So every component that can be measured
is measured (see :mod:`cartos.profiles.footprint_probe`), and only the frame ring, whose size is
plain arithmetic and which needs a camera to fill, is computed. The verdict names what does not
fit and what would.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cartos.profiles.errors import ProfileError
from cartos.profiles.schema import DeviceProfile

MIB = 1024 * 1024
KIB_PER_MIB = 1024
# The probe runs as a script file, not with ``-m``: ``-m`` would import the ``cartos.profiles``
# package before the first measurement and blur the interpreter's own share.
PROBE_SCRIPT = Path(__file__).with_name("footprint_probe.py")
PROBE_LAUNCHER = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
PROBE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class FootprintComponent:
    """One line of the footprint table."""

    key: str
    label: str
    mib: float
    how: str


@dataclass(frozen=True)
class Footprint:
    """The measured components of one profile, and its budget."""

    profile: str
    components: tuple[FootprintComponent, ...]
    budget_mib: int
    headroom: float
    embedding_dim: int
    warmup_runs: int
    measured_on: str
    seconds: float

    @property
    def total_mib(self) -> float:
        return sum(c.mib for c in self.components)

    @property
    def usable_mib(self) -> float:
        return self.budget_mib * (1.0 - self.headroom)

    @property
    def fits(self) -> bool:
        return self.total_mib <= self.usable_mib

    @property
    def free_fraction(self) -> float:
        """Share of the budget left free by the footprint (0 when over budget)."""
        return max(0.0, 1.0 - self.total_mib / self.budget_mib)

    def component(self, key: str) -> FootprintComponent:
        for comp in self.components:
            if comp.key == key:
                return comp
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "components": [asdict(c) for c in self.components],
            "components_mib": {c.key: round(c.mib, 2) for c in self.components},
            "total_mib": round(self.total_mib, 2),
            "budget_mib": self.budget_mib,
            "headroom": self.headroom,
            "usable_mib": round(self.usable_mib, 2),
            "free_fraction": round(self.free_fraction, 4),
            "fits": self.fits,
            "embedding_dim": self.embedding_dim,
            "warmup_runs": self.warmup_runs,
            "measured_on": self.measured_on,
            "seconds": self.seconds,
        }


def run_probe(request: dict[str, Any], timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run the measuring module in a fresh interpreter and return its JSON answer."""
    if not Path("/proc/self/status").is_file():
        raise ProfileError("measuring the footprint needs Linux (/proc/self/status)")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE_LAUNCHER, str(PROBE_SCRIPT)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProfileError(f"footprint measurement took longer than {timeout_s:g} s") from exc
    lines = proc.stdout.strip().splitlines()
    try:
        answer: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if proc.returncode != 0 or "stages_kib" not in answer:
        detail = answer.get("error") or proc.stderr.strip()[-600:] or f"exit {proc.returncode}"
        raise ProfileError(f"footprint measurement failed: {detail}")
    return answer


def measure_footprint(profile: DeviceProfile, model_path: Path) -> Footprint:
    """Measure ``profile`` with ``model_path`` in a fresh process; add the computed frame ring."""
    catalogue = profile.catalogue
    inference = profile.inference
    answer = run_probe(
        {
            "backend": inference.backend,
            "model": str(model_path),
            "threads": inference.threads,
            "max_batch": inference.max_batch,
            "max_skus": catalogue.max_skus,
            "exemplars_per_sku": catalogue.exemplars_per_sku,
            "families": catalogue.family_count,
            "brands": catalogue.brand_count,
        }
    )
    return footprint_from_probe(profile, answer)


def footprint_from_probe(profile: DeviceProfile, answer: dict[str, Any]) -> Footprint:
    """Turn the probe's per-stage RSS into the component table."""
    stages = {k: int(v) / KIB_PER_MIB for k, v in answer["stages_kib"].items()}
    peak = int(answer["peak_kib"]) / KIB_PER_MIB
    dim = int(answer["embedding_dim"])
    cat = profile.catalogue
    cam = profile.camera
    inf = profile.inference
    modules = "numpy, cv2, pydantic, catalogue store, recogniser, backends"
    components = [
        FootprintComponent(
            "process_baseline",
            "process baseline",
            stages["imports"],
            f"measured: interpreter ({stages['start']:.0f} MiB) + {modules}",
        ),
        FootprintComponent(
            "model_weights",
            "model weights",
            max(0.0, stages["loaded"] - stages["imports"]),
            f"measured: {inf.backend} session for the model, {inf.threads} threads",
        ),
        FootprintComponent(
            "inference_arena",
            "inference arena",
            max(0.0, stages["warm"] - stages["loaded"]),
            f"measured: {answer['warmup_runs']} warm-up runs at batch {inf.max_batch}",
        ),
        FootprintComponent(
            "centroid_table",
            "centroid table",
            max(0.0, stages["table"] - stages["warm"]),
            f"measured: {cat.max_skus} SKUs x (1 + {cat.exemplars_per_sku} exemplars) + "
            f"{cat.family_count} families + {cat.brand_count} brands, {dim}-d float32",
        ),
        FootprintComponent(
            "frame_ring",
            "frame ring",
            cam.ring_bytes / MIB,
            f"computed: {cam.ring_frames} frames ({cam.ring_seconds:g} s x {cam.fps:g} fps) x "
            f"{cam.width}x{cam.height}x3",
        ),
        FootprintComponent(
            "transient_peak",
            "transient peak",
            max(0.0, peak - stages["table"]),
            "measured: peak RSS above the final RSS (warm-up scratch, freed but reached)",
        ),
    ]
    return Footprint(
        profile=profile.name,
        components=tuple(components),
        budget_mib=profile.memory.budget_mib,
        headroom=profile.memory.headroom,
        embedding_dim=dim,
        warmup_runs=int(answer["warmup_runs"]),
        measured_on=platform.machine(),
        seconds=float(answer["seconds"]),
    )


def centroid_bytes_per_sku(profile: DeviceProfile, embedding_dim: int) -> int:
    """Table bytes one more SKU costs: its prototype and its exemplars."""
    return (1 + profile.catalogue.exemplars_per_sku) * embedding_dim * 4


def over_budget_message(profile: DeviceProfile, footprint: Footprint) -> str:
    """Why the profile does not fit, which components weigh most, and what would fit."""
    fp = footprint
    head = (
        f"profile {profile.name}: footprint {fp.total_mib:.0f} MiB exceeds the "
        f"{1 - fp.headroom:.0%} usable share of a {fp.budget_mib} MiB budget "
        f"({fp.usable_mib:.0f} MiB; headroom {fp.headroom:.0%} required, "
        f"{fp.free_fraction:.0%} left)"
    )
    ranked = sorted(fp.components, key=lambda c: c.mib, reverse=True)
    parts = ", ".join(f"{c.label} {c.mib:.0f} MiB" for c in ranked if c.mib >= 0.5)
    hints = _suggestions(profile, fp)
    advice = hints[0] if len(hints) == 1 else f"{', '.join(hints[:-1])} or {hints[-1]}"
    return f"{head}: {parts}; try {advice}"


def _suggestions(profile: DeviceProfile, fp: Footprint) -> list[str]:
    hints: list[str] = []
    baseline = fp.component("process_baseline").mib
    fixed = baseline + fp.component("model_weights").mib
    if fixed >= fp.usable_mib:
        hints.append(
            f"a budget above {_needed_budget(fixed, fp.headroom)} MiB: the process baseline and "
            f"model alone need {fixed:.0f} MiB, so no catalogue or camera setting can fit"
        )
        return hints
    if profile.inference.variant != "lite0":
        hints.append("variant=lite0")
    if profile.inference.max_batch > 1:
        hints.append("max_batch=1 (smaller inference arena)")
    table = fp.component("centroid_table").mib
    per_sku = centroid_bytes_per_sku(profile, fp.embedding_dim) / MIB
    room = fp.usable_mib - (fp.total_mib - table)
    fitting_skus = math.floor(room / per_sku) if per_sku > 0 else 0
    if 0 < fitting_skus < profile.catalogue.max_skus:
        hints.append(f"fewer max_skus (about {fitting_skus} fit with the other settings)")
    elif table > 0:
        hints.append("fewer max_skus or exemplars_per_sku")
    if fp.component("frame_ring").mib >= 0.1 * fp.total_mib:
        hints.append("a shorter camera.ring_seconds or smaller frames")
    hints.append(f"a budget of at least {_needed_budget(fp.total_mib, fp.headroom)} MiB")
    return hints


def _needed_budget(footprint_mib: float, headroom: float) -> int:
    return math.ceil(footprint_mib / (1.0 - headroom))
