"""``cartos bench runtime``: event → decision latency and sustained load on the ``sim`` profile.

A generated, calibrated catalogue and the real runtime pieces (frame ring,
change detection, INT8 backbone, recognition, fusion, durable basket) decide
item events arriving at a fixed rate. Each event is a settled weight change
with before/after camera frames showing the item land in the basket, and
half of them carry a scan. Measured per event: the processing time from the
moment the event is due to its basket commit, the backbone's share of it,
and the end-to-end time from the weight settling (which includes the window
the runtime waits so late scans can join). Over the run: backlog (events due
but not yet decided) and resident memory, sampled every few seconds, so
growth shows.

The emulated scale cannot settle five distinct items a second, so events are
fed to the runtime's event path directly; the serial link's own numbers are
``cartos bench bridge``'s.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cartos.basket.events import SessionClosed, SessionOpened
from cartos.profiles.loader import load_profile
from cartos.runtime.cart import CartRuntime
from cartos.runtime.item_events import ItemEvent
from cartos.runtime.simulation import SimulatedStore, render
from cartos.sensors.bridge.events import Scan, Settled
from cartos.sensors.camera import Frame, FrameRing

LogFn = Callable[[str], None]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(rate_hz: float = 5.0, seconds: float = 600.0, skus: int = 16, seed: int = 0,
        log: LogFn = lambda _m: None, store: SimulatedStore | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="cartos-bench-runtime-") as tmp:
        root = Path(tmp)
        store = store or SimulatedStore(root, skus=skus, seed=seed, log=log)
        products = sorted(store.known.values(), key=lambda p: p.sku)
        import cv2

        photos: dict[str, np.ndarray] = {}
        for product in products:
            photo = cv2.imread(str(product.image))
            if photo is None:
                raise RuntimeError(f"cannot read {product.image}")
            photos[product.sku] = photo
        profile = load_profile("sim")
        runtime = CartRuntime(profile, store.db, root / "basket.db", root, port="/dev/null")
        runtime.health.camera_expected = True
        runtime.basket.apply(SessionOpened("bench:s0", "bench-0"))
        window = max(runtime.assembler.params.scan_after_s,
                     runtime.assembler.params.camera_settle_s)
        processing: list[float] = []  # from due to committed, queueing included
        service: list[float] = []  # the decision's own work
        backbone: list[float] = []
        end_to_end: list[float] = []
        backlog_max = 0
        rss: list[tuple[float, float]] = []
        decisions: dict[str, int] = {}
        contents: list[tuple[int, np.ndarray]] = []
        queue: deque[tuple[float, ItemEvent, FrameRing]] = deque()
        eid = 0
        session = 0
        frame_seq = 0
        t0 = time.monotonic()
        next_event = t0
        next_sample = t0
        while time.monotonic() - t0 < seconds or queue:
            now = time.monotonic()
            while now - t0 < seconds and now >= next_event:
                next_event += 1.0 / rate_hz
                p = rng.choice(products)
                if len(contents) >= 6:  # a full basket: check out, start a new session
                    session += 1
                    runtime.basket.apply(SessionClosed(f"bench:c{session}"))
                    runtime.basket.apply(SessionOpened(f"bench:s{session}", f"bench-{session}"))
                    contents.clear()
                t_settle = now - window  # the event is due now: it settled one window ago
                # Each event gets its own frame history (at 5 events/s the real scenes would
                # overlap in time): still frames of the basket before, then with the item.
                ring = FrameRing(max_frames=64)
                before = render(contents)
                after = render([*contents, (len(contents), photos[p.sku])])
                for k in range(20):
                    frame_seq += 1
                    frame = (Frame(before, t_settle - 1.0 + 0.1 * k, frame_seq, "bench") if k < 8
                             else Frame(after, t_settle - 0.2 + 0.1 * (k - 8), frame_seq, "bench"))
                    ring.push(frame)  # as CartRuntime.step ingests a camera frame
                    runtime.decider.picker.observe(frame)
                contents.append((len(contents), photos[p.sku]))
                runtime.health.last_frame = now
                eid += 1
                event = ItemEvent(f"w:bench:{eid}", Settled(eid, t_settle, 0, 0.0, p.weight_g))
                if rng.random() < 0.5 and p.barcode:
                    event.scans.append(Scan(eid, t_settle - 0.5, 0, p.barcode))
                queue.append((now, event, ring))
            backlog_max = max(backlog_max, len(queue))
            if queue:
                due_at, event, runtime.ring = queue.popleft()
                started = time.monotonic()
                decision = runtime._decide(event)
                done = time.monotonic()
                processing.append(done - due_at)
                service.append(done - started)
                backbone.append(decision.backbone_s)
                end_to_end.append(done - event.settled.t if event.settled else done - due_at)
                decisions[decision.decision] = decisions.get(decision.decision, 0) + 1
            else:
                time.sleep(0.002)
            if now >= next_sample:
                next_sample = now + 5.0
                rss.append((round(now - t0, 1), round(_rss_mib(), 1)))
                log(f"  t={now - t0:6.1f}s events={eid} backlog={len(queue)} rss={rss[-1][1]} MiB")
        runtime.basket.close()
    elapsed = time.monotonic() - t0
    steady = [m for t, m in rss if t >= min(60.0, seconds / 3)]
    ratio = [p / b for p, b in zip(service, backbone, strict=True) if b > 0]
    return {
        "rate_hz": rate_hz,
        "seconds": round(elapsed, 1),
        "events": len(processing),
        "achieved_rate_hz": round(len(processing) / elapsed, 2),
        "decisions": decisions,
        "processing_ms": {q: round(1000 * _pct(processing, n), 1)
                          for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "service_ms": {q: round(1000 * _pct(service, n), 1)
                       for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "backbone_ms": {q: round(1000 * _pct(backbone, n), 1)
                        for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "service_over_backbone_p50": round(float(np.median(ratio)), 2) if ratio else None,
        "end_to_end_ms": {q: round(1000 * _pct(end_to_end, n), 1)
                          for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "scan_window_ms": round(window * 1000),
        "backlog_max": backlog_max,
        "rss_mib": rss,
        "rss_growth_mib_after_warmup": round(steady[-1] - steady[0], 1) if len(steady) > 1
        else None,
    }
