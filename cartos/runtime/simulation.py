"""A whole simulated shopping trip on the ``sim`` profile: no hardware, no data set.

It generates a catalogue of packaged products (``cartos.synth``), imports and
calibrates it with the shipped INT8 model, starts the emulated microcontroller
on a pseudo-terminal and a replayed camera, and plays a trip: items land on
the scale (with their catalogue weight and packaging deviation) and appear in
the basket camera's view, some are scanned, one is taken out, one is in no
catalogue. The real :class:`~cartos.runtime.cart.CartRuntime` decides every
event; a scripted shopper answers its prompts with the truth. ``cartos demo``
prints it; the runtime tests assert on it.
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cartos.catalog.store import CatalogStore
from cartos.fusion.calibration_service import fit_policy_from_manifest
from cartos.inference import enrolment
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder
from cartos.profiles.loader import load_profile
from cartos.profiles.schema import DeviceProfile
from cartos.runtime.cart import CartRuntime
from cartos.runtime.decider import NONE_OF_THESE, SCAN_IT, Decision
from cartos.sensors.bridge.profile import emulator_for
from cartos.sensors.camera import ScenarioReplay
from cartos.synth import SynthConfig, generate_catalogue, split_queries

FRAME_W, FRAME_H = 640, 480
ITEM_PX = 170
SLOTS = [(40, 40), (240, 40), (440, 40), (40, 270), (240, 270), (440, 270)]


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    barcode: str
    weight_g: float
    weight_tol_g: float
    image: Path
    known: bool = True


@dataclass(frozen=True)
class Step:
    """One shopper action: ``put`` (optionally scanned first) or ``take`` a product.

    ``count`` identical items go in at once (multiples); ``scan_as`` scans
    another product's barcode instead (a ticket switch).
    """

    action: str
    product: Product
    scan: bool = False
    count: int = 1
    scan_as: Product | None = None
    grams: float | None = None
    """What the scale measures for this step, when not the catalogue weight (produce)."""

    @property
    def expected_g(self) -> float:
        return self.grams if self.grams is not None else self.product.weight_g * self.count


@dataclass
class TripResult:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)
    basket: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    mode: str = ""
    modes: list[tuple[float, str]] = field(default_factory=list)
    """Every change of degraded mode: (seconds into the trip, mode)."""


def basket_background() -> np.ndarray:
    """An empty wire basket seen from above."""
    img = np.full((FRAME_H, FRAME_W, 3), (58, 60, 64), np.uint8)
    for x in range(0, FRAME_W, 20):
        cv2.line(img, (x, 0), (x, FRAME_H), (150, 150, 156), 2)
    for y in range(0, FRAME_H, 20):
        cv2.line(img, (0, y), (FRAME_W, y), (150, 150, 156), 2)
    return img


def render(contents: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """The basket with each item's photo lying in its slot."""
    frame = basket_background()
    for slot, photo in contents:
        x, y = SLOTS[slot % len(SLOTS)]
        frame[y : y + ITEM_PX, x : x + ITEM_PX] = cv2.resize(photo, (ITEM_PX, ITEM_PX))
    return frame


def _products(manifest: Path, known: bool) -> dict[str, Product]:
    out: dict[str, Product] = {}
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["sku"] in out:
                continue
            out[row["sku"]] = Product(
                row["sku"], row.get("name") or row["sku"], row.get("barcode") or "",
                float(row["weight_g"] or 0), float(row["weight_tol_g"] or 5),
                manifest.parent / row["image"], known,
            )
    return out


class SimulatedStore:
    """A generated, imported and calibrated catalogue ready for a cart."""

    def __init__(self, root: Path, skus: int = 16, seed: int = 0,
                 log: Callable[[str], None] = lambda _m: None, produce: int = 0) -> None:
        self.root = root
        synth = generate_catalogue(
            root / "catalogue",
            SynthConfig(n_skus=skus, refs_per_sku=6, queries_per_sku=6, n_new=3, seed=seed,
                        n_produce=produce),
        )
        calibration, test = split_queries(synth)
        self.db = root / "catalogue.db"
        self.db.unlink(missing_ok=True)
        embedder = Embedder()
        with CatalogStore(self.db) as store:
            report = enrolment.import_manifest(store, embedder, synth.manifest)
            log(f"catalogue: {report.skus_added} SKUs from {report.exemplars_added} reference "
                f"photos -> v{report.catalog_version}")
            calibrate_from_manifest(store, embedder, calibration,
                                    CalibrationTargets(seed=seed), root / "calibration-report")
            policy = fit_policy_from_manifest(store, embedder, calibration, seed=seed)
            log(f"calibrated recognition and fusion (accept threshold "
                f"{policy.accept_threshold:.3f})")
        loose = {d.sku_id for d in synth.produce}
        listed = _products(test, known=True)
        self.known = {sku: p for sku, p in listed.items() if sku not in loose}
        self.produce = {sku: p for sku, p in listed.items() if sku in loose}
        """Loose produce: sold by weight, no barcode, no nominal weight."""
        self.unknown = _products(synth.new_products, known=False)


def default_trip(store: SimulatedStore, seed: int = 0) -> list[Step]:
    """A short trip that exercises every path: scanned, unscanned, a removal, an unknown item."""
    rng = random.Random(seed)
    known = sorted(store.known.values(), key=lambda p: p.sku)
    picks = rng.sample(known, 4)
    unknown = sorted(store.unknown.values(), key=lambda p: p.sku)[0]
    return [
        Step("put", picks[0], scan=True),
        Step("put", picks[1]),
        Step("put", picks[2], scan=True),
        Step("put", unknown),
        Step("take", picks[1]),
        Step("put", picks[3]),
    ]


@contextmanager
def _camera(origin: float) -> Iterator[ScenarioReplay]:
    camera = ScenarioReplay(realtime=True, origin=origin)
    try:
        yield camera
    finally:
        camera.stop()


def run_trip(
    store: SimulatedStore,
    steps: list[Step],
    workdir: Path,
    profile: DeviceProfile | None = None,
    seed: int = 0,
    step_s: float = 3.5,
    camera_on: bool = True,
    on_decision: Callable[[Decision], None] | None = None,
    on_answer: Callable[[str, str], None] | None = None,
    faults: list[tuple[float, str, float]] | None = None,
    watch_memory: bool = False,
) -> TripResult:
    """Play ``steps`` through the real runtime; returns decisions, answers and the basket.

    ``watch_memory`` is off by default: the trip shares its process with the catalogue
    generator, tests or a demo, whose memory is not the cart's to budget.

    ``faults`` are ``(seconds into the trip, kind, duration)`` with kind ``unplug``
    (the microcontroller's cable) or ``adc_disconnect`` (the load cell's wire).
    """
    profile = profile or load_profile("sim")
    rng = np.random.default_rng(seed)
    result = TripResult()
    emulator = emulator_for(profile, workdir / "cart-mcu").start()
    try:
        t0 = time.monotonic()
        with _camera(t0) as camera:
            runtime = CartRuntime(profile, store.db, workdir / "basket.db", workdir,
                                  port=str(emulator.link_path),
                                  camera=camera if camera_on else None,
                                  on_decision=on_decision, watch_memory=watch_memory)
            try:
                _play(runtime, emulator, camera, steps, t0, step_s, rng, result, on_answer,
                      sorted(faults or []))
            finally:
                result.basket = runtime.basket.view()
                result.mode = runtime.mode
                runtime.stop()
    finally:
        emulator.stop()
    return result


def _play(runtime: CartRuntime, emulator: Any, camera: ScenarioReplay, steps: list[Step],
          t0: float, step_s: float, rng: np.random.Generator, result: TripResult,
          on_answer: Callable[[str, str], None] | None,
          faults: list[tuple[float, str, float]]) -> None:
    photos: dict[str, np.ndarray] = {}
    for product in {s.product for s in steps}:
        photo = cv2.imread(str(product.image))
        if photo is None:
            raise RuntimeError(f"cannot read product photo {product.image}")
        photos[product.sku] = photo
    contents: list[tuple[int, np.ndarray]] = []
    slots: dict[str, int] = {}
    # The camera sees the basket at 10 frames/s; each action changes what it shows.
    schedule: list[tuple[float, Step]] = [(1.5 + i * step_s, s) for i, s in enumerate(steps)]
    end = 1.5 + len(steps) * step_s + 2.5
    t = 0.0
    pending = list(schedule)
    next_slot = 0
    runtime.start()
    if not runtime.bridge.wait_ready(15):
        raise RuntimeError(f"emulated board never came up: {runtime.bridge.stats().last_error}")
    while t < end:
        now = time.monotonic() - t0
        while pending and pending[0][0] <= now:
            _, step = pending.pop(0)
            p = step.product
            if step.action == "put":
                label = step.scan_as or (p if step.scan else None)
                if label is not None and label.barcode:
                    emulator.scanner.scan(label.barcode)
                slot = next_slot
                next_slot += 1
                slots[p.sku] = slot
                contents.append((slot, photos[p.sku]))
                grams = step.grams if step.grams is not None else sum(
                    p.weight_g + float(np.clip(rng.normal(0, p.weight_tol_g / 2.5),
                                               -p.weight_tol_g, p.weight_tol_g))
                    for _ in range(step.count)
                )
                emulator.weight.place(emulator.now(), grams)
                if p.known:
                    result.expected[p.sku] = result.expected.get(p.sku, 0) + step.count
            else:
                slot = slots.pop(p.sku, -1)  # -1: it was never in view (brought along)
                contents[:] = [(s, img) for s, img in contents if s != slot]
                emulator.weight.place(emulator.now(), -step.expected_g)
                result.expected[p.sku] = result.expected.get(p.sku, 0) - step.count
        while t <= now:
            camera.push(t, render(contents))
            t += 0.1
        while faults and faults[0][0] <= now:
            _, kind, duration = faults.pop(0)
            _fault(emulator, kind, duration)
        for decision in runtime.step():
            result.decisions.append(decision.to_dict())
            _shopper_answers(runtime, decision, steps, result, on_answer, emulator.scanner)
        mode = runtime.mode
        if not result.modes or result.modes[-1][1] != mode:
            result.modes.append((round(now, 2), mode))
        time.sleep(0.02)
    for _ in range(10):
        for decision in runtime.step():
            result.decisions.append(decision.to_dict())
        time.sleep(0.05)
    result.expected = {k: v for k, v in result.expected.items() if v > 0}


def _fault(emulator: Any, kind: str, duration: float) -> None:
    import threading

    if kind == "unplug":
        emulator.unplug()
        threading.Timer(duration, emulator.replug).start()
    elif kind == "adc_disconnect":
        emulator.hx711.disconnected = True
        threading.Timer(duration, setattr, (emulator.hx711, "disconnected", False)).start()
    else:
        raise ValueError(f"unknown fault {kind!r}")


def _shopper_answers(runtime: CartRuntime, decision: Decision, steps: list[Step],
                     result: TripResult, on_answer: Callable[[str, str], None] | None,
                     scanner: Any = None) -> None:
    """The scripted shopper answers every prompt truthfully.

    Asked to scan an item, they scan it where it lies (the scan is the answer);
    an item without a barcode gets the "I'll scan it" tap and waits for staff.
    """
    if decision.prompt_id is None:
        return
    prompt = next((p for p in runtime.basket.view()["pending_prompts"]
                   if p["id"] == decision.prompt_id), None)
    if prompt is None:
        return
    options = list(prompt["options"])
    actual = _actual_product(decision, steps)
    if actual is not None and actual.sku in options:
        answer = actual.sku
    elif NONE_OF_THESE in options:
        answer = NONE_OF_THESE
    elif SCAN_IT in options and actual is not None and actual.barcode and scanner is not None:
        scanner.scan(actual.barcode)
        result.answers.append((decision.prompt_id, f"scan {actual.barcode}"))
        if on_answer is not None:
            on_answer(decision.prompt_id, f"scan {actual.barcode}")
        return
    elif SCAN_IT in options:
        answer = SCAN_IT
    else:
        answer = options[0]
    runtime.answer_prompt(decision.prompt_id, answer)
    result.answers.append((decision.prompt_id, answer))
    if on_answer is not None:
        on_answer(decision.prompt_id, answer)


def _actual_product(decision: Decision, steps: list[Step]) -> Product | None:
    """What the shopper really handled: the step whose total weight is nearest the event's."""
    settled = decision.event.settled
    if settled is None:
        return None
    candidates = [s for s in steps if (s.action == "put") == (settled.delta_g > 0)]
    best = min(candidates, key=lambda s: abs(s.expected_g - abs(settled.delta_g)), default=None)
    if best is None:
        return None
    slack = 3 * best.product.weight_tol_g * best.count + 10.0
    if abs(best.expected_g - abs(settled.delta_g)) > slack:
        return None  # no step moved this much weight: the shopper does not know it either
    return best.product


def simulated_trip(skus: int = 16, seed: int = 0, log: Callable[[str], None] = print,
                   on_decision: Callable[[Decision], None] | None = None,
                   on_answer: Callable[[str, str], None] | None = None,
                   keep: Path | None = None) -> TripResult:
    """Generate, calibrate and shop: the whole thing ``cartos demo`` shows."""
    with tempfile.TemporaryDirectory(prefix="cartos-trip-") as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        store = SimulatedStore(root, skus=skus, seed=seed, log=log)
        steps = default_trip(store, seed)
        for s in steps:
            scanned = " (scanned)" if s.scan else ""
            where = "" if s.product.known else " [in no catalogue]"
            log(f"  plan: {s.action} {s.product.name} {s.product.weight_g:.0f} g{scanned}{where}")
        return run_trip(store, steps, root, seed=seed, on_decision=on_decision,
                        on_answer=on_answer)
