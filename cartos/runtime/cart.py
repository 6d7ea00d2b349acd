"""The cart runtime loop: sensors in, decisions out, basket kept, degraded modes announced.

One thread runs :meth:`CartRuntime.step` in a loop; the sensor drivers have
their own threads and are only ever polled, so a dead camera or board cannot
stall the basket. Everything that changes the basket goes through
:class:`~cartos.basket.store.BasketStore` (idempotent commands, same-
transaction outbox), so a restart after ``kill -9`` resumes the same session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cartos.basket.errors import InvalidCommandError
from cartos.basket.events import (
    AlertRaised,
    ItemAdded,
    ItemRemoved,
    PromptAnswered,
    ReviewQueued,
    SessionOpened,
)
from cartos.basket.store import BasketStore
from cartos.catalog.store import CatalogStore
from cartos.errors import CartosError
from cartos.fusion.calibration_service import load_policy
from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.removal import BasketLine
from cartos.inference.backend import BackendOptions
from cartos.inference.corrections import apply_correction
from cartos.inference.embedder import Embedder
from cartos.inference.recognizer import Recognizer
from cartos.profiles.model_file import model_file_for
from cartos.profiles.schema import DeviceProfile
from cartos.runtime.decider import NONE_OF_THESE, Command, Decision, EventDecider
from cartos.runtime.errors import RuntimeStartError
from cartos.runtime.item_events import ItemEventAssembler
from cartos.runtime.modes import Health, mode_for
from cartos.sensors.bridge.client import BridgeClient
from cartos.sensors.bridge.events import LinkState, ScaleState, Scan, Settled
from cartos.sensors.bridge.profile import scale_config
from cartos.sensors.camera import FrameRing, FrameSource

log = logging.getLogger(__name__)

class BasketPort(Protocol):
    """What the runtime needs of the basket: a :class:`BasketStore`, or the API's
    :class:`~cartos.api.store_view.StoreView` (which owns the store on its own thread
    so HTTP handlers and the loop can share it) through :class:`StoreViewBasket`."""

    def apply(self, cmd: Any) -> Any: ...

    def view(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class StoreViewBasket:
    """Adapts the API's store view to :class:`BasketPort`."""

    def __init__(self, store_view: Any) -> None:
        self._sv = store_view

    def apply(self, cmd: Any) -> Any:
        return self._sv.apply(cmd)

    def view(self) -> dict[str, Any]:
        return dict(self._sv.basket())

    def close(self) -> None:
        self._sv.close()


@dataclass
class RuntimeStats:
    events: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    prompts: int = 0
    answers: int = 0
    last_decision: dict[str, Any] | None = None


class CartRuntime:
    """Owns the basket and drives it from the sensors; thread-safe ``answer_prompt``."""

    def __init__(
        self,
        profile: DeviceProfile,
        catalogue_db: Path,
        basket_db: Path,
        state_dir: Path,
        port: str | None = None,
        camera: FrameSource | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        basket: BasketPort | None = None,
        metrics: Any = None,
    ) -> None:
        self.profile = profile
        self.catalogue_db = catalogue_db
        self.state_dir = state_dir
        self.port = port or profile.bridge.port
        self.camera = camera
        self.on_decision = on_decision
        self.ring = FrameRing(max_frames=profile.camera.ring_frames)
        self.health = Health()
        self.stats = RuntimeStats()
        self._answers: queue.Queue[tuple[str, str, bool]] = queue.Queue()
        self.metrics = metrics
        self._prompts: dict[str, Decision] = {}
        self._lock = threading.Lock()
        self.basket: BasketPort = basket if basket is not None else BasketStore(basket_db)
        self.assembler = ItemEventAssembler()
        self.decider = self._load_decider()
        self.bridge = self._bridge()

    # -- start-up -----------------------------------------------------------------

    def _load_decider(self) -> EventDecider:
        if not self.catalogue_db.exists():
            raise RuntimeStartError(f"catalogue {self.catalogue_db} does not exist")
        with CatalogStore(self.catalogue_db) as store:
            catalogue = CatalogueView.from_store(store)
            policy = load_policy(store)
            recognizer: Recognizer | None = None
            try:
                inf = self.profile.inference
                embedder = Embedder(model_file_for(inf), backend=inf.backend,
                                    options=BackendOptions(threads=inf.threads,
                                                           spin_wait=inf.spin_wait))
                recognizer = Recognizer.from_store(store, embedder)
                self.health.model = True
            except Exception as exc:  # a model that will not load degrades, never stops, the cart
                log.error("recognition unavailable, barcode-only mode: %s", exc)
                self.health.model = False
                self.health.detail["model"] = str(exc)
        if not policy.calibrated:
            log.warning("fusion policy not calibrated: camera x scale answers will ask, not accept")
        return EventDecider(recognizer, catalogue, policy, self.state_dir / "review")

    def _bridge(self) -> BridgeClient:
        b = self.profile.bridge
        return BridgeClient(self.port, baud=b.baud, scale=scale_config(self.profile),
                            clock_sync_interval_s=b.clock_sync_interval_s,
                            reconnect_max_backoff_s=b.reconnect_max_backoff_s)

    def start(self) -> CartRuntime:
        view = self.basket.view()
        if view.get("status") != "open":
            self.basket.apply(SessionOpened(f"session:{uuid.uuid4()}", str(uuid.uuid4())))
        self.bridge.start()
        if self.camera is not None:
            self.camera.start()
        return self

    def stop(self) -> None:
        self.bridge.stop()
        if self.camera is not None:
            self.camera.stop()
        self.basket.close()

    # -- the loop -----------------------------------------------------------------

    def answer_prompt(self, prompt_id: str, answer: str, recorded: bool = False) -> None:
        """Called from the screen's thread; applied by the loop.

        ``recorded``: the answer is already in the basket (the local API writes
        it before telling the runtime), so only its consequences are applied.
        """
        self._answers.put((prompt_id, answer, recorded))

    def step(self, now: float | None = None) -> list[Decision]:
        """One pass: sensors, due events, answers. Returns the decisions taken."""
        now = time.monotonic() if now is None else now
        for ev in self.bridge.poll():
            if isinstance(ev, Settled):
                self.assembler.add_settled(ev)
            elif isinstance(ev, Scan):
                self.assembler.add_scan(ev)
            elif isinstance(ev, ScaleState):
                self.health.scale = ev.state in ("ok", "unstable")
            elif isinstance(ev, LinkState):
                self.health.link = ev.state == "ready"
                if ev.state == "ready" and self.assembler.boot_id is None:
                    self.assembler.boot_id = self.bridge.stats().boot_id
        if self.camera is not None:
            while (frame := self.camera.read(0)) is not None:
                self.ring.push(frame)
                self.decider.picker.observe(frame)  # motion scored as frames come, not per event
                self.health.last_frame = frame.t
        self.health.camera_expected = self.camera is not None
        decisions = []
        for event in self.assembler.due(now):
            decisions.append(self._decide(event))
        self._apply_answers()
        return decisions

    def _basket_lines(self) -> list[BasketLine]:
        return [BasketLine(i["sku"], int(i["qty"]),
                           (i["unit_weight_g"] or 0) * int(i["qty"]) or None)
                for i in self.basket.view()["items"] if int(i["qty"]) > 0]

    def _decide(self, event: Any) -> Decision:
        ring = self.ring if self.health.camera_ok(time.monotonic()) else None
        decision = self.decider.decide(event, ring, self._basket_lines())
        for cmd in decision.commands:
            self._apply(cmd)
        if decision.prompt_id is not None:
            self._prompts[decision.prompt_id] = decision
            self.stats.prompts += 1
        self.stats.events += 1
        self.stats.decisions[decision.decision] = self.stats.decisions.get(decision.decision,
                                                                           0) + 1
        for kind in decision.alerts:
            self.stats.alerts[kind] = self.stats.alerts.get(kind, 0) + 1
        self.stats.last_decision = decision.to_dict()
        if self.metrics is not None:
            self._record(decision)
        log.info("event %s: %s", event.key, decision.to_dict())
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    def _apply_answers(self) -> None:
        while True:
            try:
                prompt_id, answer, recorded = self._answers.get_nowait()
            except queue.Empty:
                return
            if not recorded and not self._apply(
                PromptAnswered(f"{prompt_id}:answered", prompt_id, answer)
            ):
                continue
            if self.metrics is not None:
                self.metrics.prompt_answered()
            self.stats.answers += 1
            decision = self._prompts.pop(prompt_id, None)
            qty = decision.quantity if decision is not None else 1
            weight = (decision.event.settled.delta_g
                      if decision is not None and decision.event.settled is not None else None)
            removal = decision is not None and decision.kind == "remove"
            if answer in self.decider.catalogue and removal:
                self._apply(ItemRemoved(f"{prompt_id}:item", answer, qty, evidence_id=prompt_id,
                                        corrects=prompt_id))
            elif answer in self.decider.catalogue:
                # The shopper's answer is a correction: a labelled example of ``answer``.
                unit = abs(weight) / qty if weight else None
                self._apply(ItemAdded(f"{prompt_id}:item", answer, qty, unit_weight_g=unit,
                                      evidence_id=prompt_id, corrects=prompt_id))
                if decision is not None and decision.embedding is not None:
                    self._learn(answer, decision.embedding, prompt_id)
                if self.metrics is not None:
                    self.metrics.correction(answer)
            elif answer == NONE_OF_THESE and decision is not None:
                self._apply(ReviewQueued(f"{prompt_id}:review", decision.crop_path,
                                         "shopper: none of these", (), weight))

    def _learn(self, sku: str, embedding: Any, correction_id: str) -> None:
        """Add the answered crop to the SKU's exemplar memory; recognition uses it at once."""
        try:
            with CatalogStore(self.catalogue_db) as store:
                result = apply_correction(store, None, sku, embedding, correction_id)
                if result.applied and self.decider.recognizer is not None:
                    self.decider.recognizer = Recognizer.from_store(
                        store, self.decider.recognizer.embedder)
        except CartosError as exc:  # a refused correction never stops the cart
            log.warning("correction %s for %s not applied: %s", correction_id, sku, exc)

    def _apply(self, cmd: Command) -> bool:
        """Write one command; a refused command is logged and raised as an alert, never fatal."""
        try:
            self.basket.apply(cmd)
            return True
        except InvalidCommandError as exc:
            log.error("basket refused %s: %s", cmd, exc)
            self.basket.apply(AlertRaised(f"{cmd.key}:refused", "runtime_error",
                                          {"command": type(cmd).__name__, "error": str(exc)}))
            return False

    def _record(self, decision: Decision) -> None:
        m = self.metrics
        m.decision(decision.decision, decision.sku)
        if decision.decision == "unknown":
            m.unknown_item()
        if decision.prompt_id is not None:
            m.prompt_opened()
        m.observe_decision_latency(decision.latency_s)
        if decision.backbone_s:
            m.observe_backbone_latency(decision.backbone_s)

    @property
    def mode(self) -> str:
        return mode_for(self.health, time.monotonic())
