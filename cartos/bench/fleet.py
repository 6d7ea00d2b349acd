"""``cartos bench fleet``: a correction on one cart changes every other cart's answer.

One Mosquitto (started here on a free port), one hub with a master catalogue
and a signing key, and ``carts`` simulated carts, each a real
:class:`~cartos.sync.cart_client.CartSync` with its own basket file and its
own copy of the catalogue (its bundle store lives in it, as on a cart). Each
trial builds an item image's embedding that every cart answers *wrongly*
(it sits between SKU X and SKU Y, on Y's side), then a shopper on cart A says
"it's X": cart A writes the correction into its basket (the same
``ItemAdded`` with ``corrects`` and the crop's embedding that the runtime
writes), and the clock starts. It stops, per cart, when that cart's own
recogniser, rebuilt from its own catalogue after the hub's release was
verified and applied, answers X for the same embedding.

Every cart shares this machine's cores here, where each would have its own
CPU: the propagation measured is an upper bound for the real fleet. The carts
run in worker processes of ``CARTS_PER_PROCESS`` each (``python -m
cartos.bench.fleet worker …``, a JSON line protocol on stdin/stdout): the MQTT
client waits on ``select()``, which cannot watch descriptors above 1,024, and
200 carts' sockets and SQLite files in one process go past that.

Embeddings are synthetic (unit vectors in the backbone's 1,280 dimensions,
clustered per SKU): what is measured is the path, not the backbone.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.bench.broker import Broker
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.hub.catalogue import HubCatalogue, provision
from cartos.hub.release import Releaser
from cartos.hub.service import Hub, HubSettings
from cartos.inference.embedder import l2_normalise
from cartos.inference.enrolment import _refresh_prototypes
from cartos.inference.recognizer import Recognizer
from cartos.sync.bundles import (
    BundleStore,
    generate_private_key,
    issue_signing_key,
    public_key_hex,
)
from cartos.sync.bundles.store import Outcome
from cartos.sync.cart_client import CartSync, SyncSettings
from cartos.sync.catalogue_apply import CatalogueUpdater

STORE = "s001"
DIM = 1280
SKUS = 40
REFS = 3


def build_catalogue(path: Path, rng: np.random.Generator) -> np.ndarray:
    """A catalogue of ``SKUS`` SKUs with ``REFS`` clustered reference vectors each."""
    centres = l2_normalise(rng.normal(size=(SKUS, DIM)).astype(np.float32))
    with CatalogStore(path) as store, store.change("import", "fleet benchmark catalogue"):
        for i in range(SKUS):
            sku = f"sku-{i:03d}"
            store.upsert_sku(SkuRecord(sku, name=f"item {i}", family=f"fam-{i // 4}",
                                       brand=f"brand-{i // 8}"))
            refs = l2_normalise(centres[i] + 0.15 * rng.normal(size=(REFS, DIM)))
            store.add_exemplars(sku, refs.astype(np.float32),
                                [f"ref/{sku}/{j}.jpg" for j in range(REFS)])
        _refresh_prototypes(store, [f"sku-{i:03d}" for i in range(SKUS)])
    return centres


def confusing_query(path: Path, x: str, y: str) -> np.ndarray:
    """An embedding between ``x``'s and ``y``'s prototypes, answered as ``y``."""
    with CatalogStore(path) as store:
        keys, protos, _ = store.prototypes("sku")
    px, py = protos[keys.index(x)], protos[keys.index(y)]
    mixed: np.ndarray = l2_normalise((0.45 * px + 0.55 * py)[None, :])[0]
    return mixed.astype(np.float32)


def answer(path: Path, query: np.ndarray, recognizer: Recognizer | None = None) -> str | None:
    if recognizer is None:
        with CatalogStore(path) as store:
            recognizer = Recognizer.from_store(store)
    rec = recognizer.recognize_vectors(query[None, :])[0]
    return rec.topk[0].sku if rec.topk else None


@dataclass
class SimCart:
    """One simulated cart: sync client, catalogue, and when its answer changed."""

    name: str
    dir: Path
    sync: CartSync | None = None
    query: np.ndarray | None = None
    expect: str | None = None
    changed_at: float | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    updater: CatalogueUpdater | None = None

    @property
    def catalogue(self) -> Path:
        return self.dir / "catalogue.db"

    def on_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.accepted:
            self.check()

    def check(self) -> None:
        query, expect = self.query, self.expect
        if query is None or self.changed_at is not None:
            return
        # The recogniser the health check built from the applied catalogue, as the runtime
        # adopts it.
        recognizer = self.updater.recognizer if self.updater is not None else None
        if answer(self.catalogue, query, recognizer) == expect:
            self.changed_at = time.time()

    def held(self) -> int:
        assert self.sync is not None
        return max((int(h["version"]) for h in self.sync.holding()), default=0)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


CARTS_PER_PROCESS = 50
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _start_carts(names: list[str], workdir: Path, master: Path, port: int, root_hex: str,
                 first_is_busy: bool = False) -> list[SimCart]:
    """Copy the catalogue to each cart and start its sync client."""
    busy = SyncSettings(port=port, keepalive_s=30)
    # Carts with nothing to send poll their outbox once a second: 200 carts polling 20
    # times a second would only measure this machine's 2 cores.
    idle = SyncSettings(port=port, poll_s=1.0, keepalive_s=30)
    sims: list[SimCart] = []
    for i, name in enumerate(names):
        sim = SimCart(name, workdir / name)
        sim.dir.mkdir(parents=True)
        shutil.copy(master, sim.catalogue)
        updater = CatalogueUpdater(sim.catalogue, cart=name)
        sim.updater = updater

        def bundles(updater: CatalogueUpdater = updater) -> BundleStore:
            return BundleStore(updater.catalogue_path, root_key=root_hex, store_id=STORE,
                               apply=updater.apply, restore=updater.restore,
                               health_check=updater.health_check)

        settings = busy if first_is_busy and i == 0 else idle
        sim.sync = CartSync(sim.dir / "basket.db", STORE, name, settings, bundles=bundles,
                            staging=sim.dir / "staging", on_outcome=sim.on_outcome).start()
        sims.append(sim)
    return sims


def _stop_carts(sims: list[SimCart]) -> None:
    stoppers = [threading.Thread(target=s.sync.stop, kwargs={"timeout": 2.0})
                for s in sims if s.sync is not None]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(10)


def worker(argv: list[str]) -> int:
    """``worker PORT ROOT_HEX MASTER WORKDIR NAME…``: run carts, answer the bench's lines."""
    port, root_hex, master, workdir, names = (int(argv[0]), argv[1], Path(argv[2]),
                                              Path(argv[3]), argv[4:])
    sims = _start_carts(names, workdir, master, port, root_hex)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        ok = _wait(lambda: all(s.held() >= 1 for s in sims), 120)
        say({"ready": sum(s.held() >= 1 for s in sims), "ok": ok})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("quit"):
                break
            query = np.frombuffer(base64.b64decode(cmd["query"]), dtype="<f4").astype(np.float32)
            before = sorted({str(answer(s.catalogue, query)) for s in sims})
            for s in sims:
                s.query, s.expect, s.changed_at = query, cmd["expect"], None
            say({"armed": cmd["trial"], "before": before})
            _wait(lambda: all(s.changed_at is not None for s in sims), float(cmd["timeout"]))
            say({"trial": cmd["trial"], "changed_at": [s.changed_at for s in sims],
                 "failed": sum(not o.accepted for s in sims for o in s.outcomes)})
    finally:
        _stop_carts(sims)
    return 0


class _Worker:
    def __init__(self, names: list[str], port: int, root_hex: str, master: Path,
                 workdir: Path) -> None:
        # One BLAS thread: 50 carts' numpy calls in one process, each waking a pool of
        # spinning BLAS threads, would only measure thread contention on this machine.
        env = {**os.environ, **{v: "1" for v in BLAS_THREAD_VARIABLES}}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cartos.bench.fleet", "worker", str(port), root_hex,
             str(master), str(workdir), *names],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a fleet worker exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"quit": True})
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def run(carts: int = 200, trials: int = 3, seed: int = 0,
        log: Callable[[str], None] = lambda _m: None,
        workdir: Path | None = None) -> dict[str, Any]:
    """``workdir``: where the carts' files go (default: a temporary folder)."""
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix="cartos-fleet-", dir=workdir))
    broker = Broker(tmp / "broker", persistence=False)
    workers: list[_Worker] = []
    local: list[SimCart] = []
    hub: Hub | None = None
    try:
        master = tmp / "hub" / "catalogue.db"
        master.parent.mkdir(parents=True)
        build_catalogue(master, rng)
        provision(master)
        root = generate_private_key()
        key = issue_signing_key(root, "hub-s001-a", stores=[STORE])
        root_hex = public_key_hex(root)
        hub = Hub(tmp / "hub" / "hub.db", STORE, "hub-s001", HubSettings(port=broker.port),
                  releaser=Releaser(HubCatalogue(master), key, STORE)).start()
        started = time.monotonic()
        names = [f"cart-{STORE}-{i:04d}" for i in range(carts)]
        local = _start_carts(names[:1], tmp / "carts", master, broker.port, root_hex,
                             first_is_busy=True)
        cart_a = local[0]
        for i in range(1, carts, CARTS_PER_PROCESS):
            workers.append(_Worker(names[i:i + CARTS_PER_PROCESS], broker.port, root_hex,
                                   master, tmp / "carts"))
        ready = [w.read() for w in workers]
        if not all(r["ok"] for r in ready) or not _wait(lambda: cart_a.held() >= 1, 30):
            n_ready = sum(int(r["ready"]) for r in ready) + (cart_a.held() >= 1)
            raise RuntimeError(f"only {n_ready} of {carts} carts received the first release")
        log(f"{carts} carts connected and hold the first release "
            f"({time.monotonic() - started:.1f} s)")

        delays: list[float] = []
        unchanged = failed = 0
        with BasketStore(cart_a.dir / "basket.db") as basket:
            basket.apply(SessionOpened("bench:open", "0b7c4e1e-64b4-4d39-8a38-3b1d5ad0f001"))
            for trial in range(trials):
                x, y = f"sku-{2 * trial:03d}", f"sku-{2 * trial + 1:03d}"
                query = confusing_query(master, x, y)
                for w in workers:
                    w.send({"trial": trial, "expect": x, "timeout": 60,
                            "query": base64.b64encode(query.astype("<f4").tobytes()).decode()})
                before = {b for w in workers for b in w.read()["before"]}
                if before - {y}:
                    raise RuntimeError(f"trial {trial}: carts answer {before} before, not {y}")
                t0 = time.time()
                embedding = base64.b64encode(query.astype("<f2").tobytes()).decode()
                basket.apply(ItemAdded(f"bench:{trial}:item", x, 1, corrects=f"bench:{trial}",
                                       exemplar={"embedding_f16": embedding}))
                reports = [w.read() for w in workers]
                times = [t for r in reports for t in r["changed_at"]]
                failed = sum(int(r["failed"]) for r in reports)
                got = [t - t0 for t in times if t is not None]
                unchanged += len(times) - len(got)
                delays += got
                released = [r.published_at - t0 for r in hub.releases if r.published_at > t0]
                log(f"trial {trial}: released after {released[0] if released else -1:.2f} s; "
                    f"{len(got)}/{len(times)} other carts answer {x}; "
                    f"median {statistics.median(got) if got else float('nan'):.2f} s, "
                    f"max {max(got) if got else float('nan'):.2f} s")
        delays.sort()

        def pct(q: float) -> float:
            if not delays:
                return -1.0
            return round(delays[min(len(delays) - 1, int(q * len(delays)))], 3)

        return {
            "carts": carts,
            "trials": trials,
            "propagation_p50_s": pct(0.50),
            "propagation_p95_s": pct(0.95),
            "propagation_max_s": round(delays[-1], 3) if delays else -1.0,
            "carts_unchanged": unchanged,
            "releases": len(hub.releases),
            "bundles_not_applied": failed,
            "workdir": str(workdir) if workdir is not None else tempfile.gettempdir(),
        }
    finally:
        for w in workers:
            w.close()
        _stop_carts(local)
        if hub is not None:
            hub.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        raise SystemExit(worker(sys.argv[2:]))
    raise SystemExit("usage: python -m cartos.bench.fleet worker PORT ROOT_HEX MASTER DIR NAME…")
