"""The cart runtime loop: sensors in, decisions out, basket kept, degraded modes announced.

One thread runs :meth:`CartRuntime.step` in a loop; the sensor drivers have
their own threads and are only ever polled, so a dead camera or board cannot
stall the basket. Everything that changes the basket goes through
:class:`~cartos.basket.store.BasketStore` (idempotent commands, same-
transaction outbox), so a restart after ``kill -9`` resumes the same session.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from cartos.catalog.records import DISCONTINUED
from cartos.catalog.store import CatalogStore
from cartos.drift.monitor import DriftMonitor, DriftSettings
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
from cartos.runtime.decider import (
    NO_CROP,
    NONE_OF_THESE,
    Command,
    DeciderSettings,
    Decision,
    EventDecider,
    context_embedding,
    review_exemplar,
)
from cartos.runtime.errors import RuntimeStartError
from cartos.runtime.inbox import EventInbox
from cartos.runtime.item_events import ItemEvent, ItemEventAssembler
from cartos.runtime.memory import MemoryGuard
from cartos.runtime.modes import Health, mode_for
from cartos.runtime.privacy import RetentionSweeper, retention_seconds
from cartos.sensors.bridge.client import BridgeClient
from cartos.sensors.bridge.events import LinkState, ScaleState, Scan, Settled
from cartos.sensors.bridge.profile import scale_config
from cartos.sensors.camera import FrameRing, FrameSource
from cartos.sync.catalogue_apply import installed_model

log = logging.getLogger(__name__)

class BasketPort(Protocol):
    """What the runtime needs of the basket: a :class:`BasketStore`, or the API's
    :class:`~cartos.api.store_view.StoreView` (which owns the store on its own thread
    so HTTP handlers and the loop can share it) through :class:`StoreViewBasket`."""

    def apply(self, cmd: Any) -> Any: ...

    def view(self) -> dict[str, Any]: ...

    def prompt_context(self, prompt_id: str) -> dict[str, Any] | None: ...

    def has_command(self, key: str) -> bool: ...

    def close(self) -> None: ...


class StoreViewBasket:
    """Adapts the API's store view to :class:`BasketPort`."""

    def __init__(self, store_view: Any) -> None:
        self._sv = store_view

    def apply(self, cmd: Any) -> Any:
        return self._sv.apply(cmd)

    def view(self) -> dict[str, Any]:
        return dict(self._sv.basket())

    def has_command(self, key: str) -> bool:
        return bool(self._sv.run_on_store(lambda store: store.has_command(key)))

    def prompt_context(self, prompt_id: str) -> dict[str, Any] | None:
        context: dict[str, Any] | None = self._sv.run_on_store(
            lambda store: store.prompt_context(prompt_id))
        return context

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
        watch_memory: bool = True,
    ) -> None:
        """``watch_memory``: compare this process's resident size with the profile's budget
        (off where the runtime shares its process with other work: tests, simulations)."""
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
        self._lock = threading.Lock()
        self.basket: BasketPort = basket if basket is not None else BasketStore(basket_db)
        self.assembler = ItemEventAssembler()
        self.inbox = EventInbox(basket_db.with_name(basket_db.stem + "-inbox.db"))
        self._replayed: set[str] = set()
        self.memory = MemoryGuard(float(profile.memory.budget_mib), profile.memory.headroom)
        self.watch_memory = watch_memory
        self.decider = self._load_decider()
        self.sweeper = RetentionSweeper(self.state_dir / "review", retention_seconds(profile))
        self.bridge = self._bridge()
        self._reload = threading.Event()
        self._built: Recognizer | None = None
        self.drift_reference = self.state_dir / "drift-reference.json"
        self.decider.drift = self._drift_monitor()
        self._drift_windows = 0

    # -- start-up -----------------------------------------------------------------

    def _load_decider(self) -> EventDecider:
        if not self.catalogue_db.exists():
            raise RuntimeStartError(f"catalogue {self.catalogue_db} does not exist")
        with CatalogStore(self.catalogue_db) as store:
            catalogue = CatalogueView.from_store(store)
            policy = load_policy(store)
            recognizer = self._load_recognizer(store)
        if not policy.calibrated:
            log.warning("fusion policy not calibrated: camera x scale answers will ask, not accept")
        return EventDecider(recognizer, catalogue, policy, self.state_dir / "review",
                            DeciderSettings(max_crop_share=self.profile.privacy.max_crop_share))

    def _model_path(self, store: CatalogStore) -> Path:
        """The backbone to run: the one a hub release installed (already loaded, warmed up
        and sanity-checked before it was accepted, ``cartos.sync.catalogue_apply``), else the
        profile's. Releases carry ONNX models: a cart on another backend keeps its own."""
        inf = self.profile.inference
        installed = installed_model(store)
        if installed is not None and inf.backend == "onnxruntime":
            return installed
        return model_file_for(inf)

    def _embedder(self, path: Path) -> Embedder:
        inf = self.profile.inference
        return Embedder(path, backend=inf.backend,
                        options=BackendOptions(threads=inf.threads, spin_wait=inf.spin_wait))

    def _load_recognizer(self, store: CatalogStore) -> Recognizer | None:
        try:
            embedder = self._embedder(self._model_path(store))
            recognizer = Recognizer.from_store(store, embedder)
            self.health.model = True
            self.health.detail.pop("model", None)
            return recognizer
        except Exception as exc:  # a model that will not load degrades, never stops, the cart
            log.error("recognition unavailable, barcode-only mode: %s", exc)
            self.health.model = False
            self.health.detail["model"] = str(exc)
            return None

    def _watch_memory(self, now: float) -> None:
        """Release the model when headroom is lost, load it again when there is room."""
        if not self.watch_memory:
            return
        changed = self.memory.update(now)
        self.health.headroom = self.memory.headroom
        if not changed:
            return
        if self.memory.low and self.decider.recognizer is not None:
            log.error("memory headroom %.0f%% below the required %.0f%%: releasing the model, "
                      "barcode-only", 100 * (self.memory.headroom or 0), 100 * self.memory.required)
            embedder = self.decider.recognizer.embedder
            self.decider.recognizer = None
            if embedder is not None:
                embedder.close()
            gc.collect()
            self.health.model = False
            self.health.detail["model"] = "released: memory headroom lost"
        elif not self.memory.low and self.decider.recognizer is None \
                and self.health.detail.get("model", "").startswith("released"):
            log.warning("memory headroom back to %.0f%%: loading the model again",
                        100 * (self.memory.headroom or 0))
            with CatalogStore(self.catalogue_db) as store:
                self.decider.recognizer = self._load_recognizer(store)

    def _bridge(self) -> BridgeClient:
        b = self.profile.bridge
        return BridgeClient(self.port, baud=b.baud, scale=scale_config(self.profile),
                            clock_sync_interval_s=b.clock_sync_interval_s,
                            reconnect_max_backoff_s=b.reconnect_max_backoff_s)

    def start(self) -> CartRuntime:
        view = self.basket.view()
        if view.get("status") != "open":
            self.basket.apply(SessionOpened(f"session:{uuid.uuid4()}", str(uuid.uuid4())))
        self._replay_journal()
        self.sweeper.tick()  # what expired while the cart was off
        self.bridge.start()
        if self.camera is not None:
            self.camera.start()
        return self

    def _replay_journal(self) -> None:
        """Put the sensor events a crash interrupted back in the assembler (see
        :mod:`cartos.runtime.inbox`); they fall due at once, without camera frames."""
        pending = self.inbox.undecided()
        self.inbox.prune()
        if not pending:
            return
        window = max(self.assembler.params.scan_after_s, self.assembler.params.camera_settle_s)
        latest = max(j.event.t for j in pending)
        # After a power cut the host clock restarted: shift so the events are due now.
        shift = min(0.0, time.monotonic() - window - latest)
        for j in pending:
            event = replace(j.event, t=j.event.t + shift)
            if isinstance(event, Settled):
                self.assembler.add_settled(event, key=j.key)
            else:
                self.assembler.add_scan(event, key=j.key)
            self._replayed.add(j.key)
        log.warning("replaying %d sensor event(s) received before the restart", len(pending))

    def _outcome_recorded(self, event: ItemEvent) -> bool:
        """Whether the basket already holds what this event decided (item, removal or
        question): then a replay must write nothing, or the item would be billed twice."""
        return any(self.basket.has_command(f"{event.key}:{suffix}")
                   for suffix in ("add", "remove", "prompt"))

    def stop(self) -> None:
        self.bridge.stop()
        if self.camera is not None:
            self.camera.stop()
        self.inbox.close()
        self.basket.close()

    # -- the loop -----------------------------------------------------------------

    def answer_prompt(self, prompt_id: str, answer: str, recorded: bool = False) -> None:
        """Called from the screen's thread; applied by the loop.

        ``recorded``: the answer is already in the basket (the local API writes
        it before telling the runtime), so only its consequences are applied.
        """
        self._answers.put((prompt_id, answer, recorded))

    def _drift_monitor(self) -> DriftMonitor:
        with CatalogStore(self.catalogue_db) as store:
            gone = [r.sku for r in store.list_skus(status=DISCONTINUED)]
        monitor = DriftMonitor(DriftSettings(), discontinued=gone)
        try:
            if self.drift_reference.exists():
                monitor.restore(json.loads(self.drift_reference.read_text()))
        except (OSError, ValueError, KeyError, CartosError) as exc:
            log.warning("drift reference %s unusable, building a new one: %s",
                        self.drift_reference, exc)
        return monitor

    def _raise_drift_alerts(self) -> None:
        """Record the drift monitor's alerts in the basket (they reach the hub on the events
        stream) and in the metrics; save its reference once it has one."""
        monitor = self.decider.drift
        if monitor is None or monitor.windows == self._drift_windows:
            return  # nothing happens between the close of two windows
        self._drift_windows = monitor.windows
        if monitor.reference is not None and not self.drift_reference.exists():
            tmp = self.drift_reference.with_suffix(".tmp")
            tmp.write_text(json.dumps(monitor.reference))
            os.replace(tmp, self.drift_reference)
        if self.metrics is not None and monitor.last_psi:
            self.metrics.set_drift_psi(monitor.last_psi)
        alerts, self.decider.drift_alerts = self.decider.drift_alerts, []
        for alert in alerts:
            log.warning("drift: %s %s", alert.trigger, alert.evidence)
            self._apply(AlertRaised(f"drift:{alert.trigger}:{uuid.uuid4().hex}", "drift",
                                    {"trigger": alert.trigger, "window": alert.window,
                                     **alert.evidence}))
            if self.metrics is not None:
                self.metrics.drift_alert(alert.trigger)

    def request_reload(self, built: Recognizer | None = None) -> None:
        """Reload the catalogue at the next step (thread-safe): the hub link applied a
        release. The runtime's thread does it, so no recogniser is swapped mid-decision.
        ``built``: the recogniser the release's health check already built from the new
        catalogue (without a backbone); its index is adopted instead of built again."""
        self._built = built
        self._reload.set()

    def _reload_catalogue(self) -> None:
        self._reload.clear()
        try:
            with CatalogStore(self.catalogue_db) as store:
                catalogue = CatalogueView.from_store(store)
                policy = load_policy(store)
                current = self.decider.recognizer
                wanted = self._model_path(store)
                embedder = current.embedder if current is not None else None
                swap = current is not None and (
                    embedder is None or Path(embedder.model_path) != wanted)
                if swap:
                    embedder = self._embedder(wanted)
                built, self._built = self._built, None
                if current is None:
                    recognizer = None
                elif built is not None:
                    recognizer = Recognizer(built.index, built.calibration, embedder,
                                            current.top_k)
                else:
                    recognizer = Recognizer.from_store(store, embedder)
        except Exception as exc:  # keep recognising with what was loaded
            log.error("catalogue reload failed, keeping the previous one: %s", exc)
            return
        self.decider.catalogue, self.decider.policy = catalogue, policy
        if recognizer is not None:
            old = self.decider.recognizer
            self.decider.recognizer = recognizer
            if swap and old is not None and old.embedder is not None:
                old.embedder.close()
                log.warning("backbone swapped to %s after a hub release", wanted.name)
        log.info("catalogue reloaded after a hub release")

    def step(self, now: float | None = None) -> list[Decision]:
        """One pass: sensors, due events, answers. Returns the decisions taken."""
        now = time.monotonic() if now is None else now
        if self._reload.is_set():
            self._reload_catalogue()
        decisions: list[Decision] = []
        for ev in self.bridge.poll():
            if isinstance(ev, Settled):
                self.inbox.journal(self.assembler.settled_key(ev), ev, self.assembler.boot_id)
                self.assembler.add_settled(ev)
            elif isinstance(ev, Scan):
                key = self.assembler.scan_key(ev)
                self.inbox.journal(key, ev, self.assembler.boot_id)
                # While the cart is asking what went in, the next scan is the answer (the
                # screen asks for it); otherwise it is paired with a weight change.
                answered = self._scan_answers_prompt(ItemEvent(key, None, [ev]))
                if answered is not None:
                    self.inbox.decided(key)
                    decisions.append(self._record_decision(answered))
                else:
                    self.assembler.add_scan(ev)
            elif isinstance(ev, ScaleState):
                self.health.scale = ev.state in ("ok", "unstable")
            elif isinstance(ev, LinkState):
                self.health.link = ev.state == "ready"
                if ev.state == "ready":  # a rebooted board numbers its events afresh
                    self.assembler.boot_id = self.bridge.stats().boot_id
        if self.camera is not None:
            while (frame := self.camera.read(0)) is not None:
                self.ring.push(frame)
                self.decider.picker.observe(frame)  # motion scored as frames come, not per event
                self.health.last_frame = frame.t
        self.health.camera_expected = self.camera is not None
        self._watch_memory(now)
        self.sweeper.tick(now)  # review crops past their retention; at most once a minute
        self.health.headroom = self.memory.headroom
        for event in self.assembler.due(now):
            if event.key in self._replayed and self._outcome_recorded(event):
                log.info("replayed event %s was decided before the restart", event.key)
            else:
                decisions.append(self._decide(event))
            self._replayed.discard(event.key)
            self.inbox.decided(event.key, *(self.assembler.scan_key(s) for s in event.scans))
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
        return self._record_decision(decision)

    def _record_decision(self, decision: Decision) -> Decision:
        drift = self.decider.drift
        if (drift is not None and decision.kind == "add" and decision.decision == "accept"
                and decision.sku is not None):
            drift.outcome(decision.sku, corrected=False)
        self._raise_drift_alerts()
        if decision.prompt_id is not None:
            self.stats.prompts += 1
        self.stats.events += 1
        self.stats.decisions[decision.decision] = self.stats.decisions.get(decision.decision,
                                                                           0) + 1
        for kind in decision.alerts:
            self.stats.alerts[kind] = self.stats.alerts.get(kind, 0) + 1
        self.stats.last_decision = decision.to_dict()
        if self.metrics is not None and decision.kind != "scan_answer":
            self._record(decision)  # a scanned answer is a correction, not a recognition
        log.info("event %s: %s", decision.event.key, decision.to_dict())
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
            self._answered(prompt_id, answer)

    def _scan_answers_prompt(self, event: ItemEvent) -> Decision | None:
        """A scan with no weight change while the cart asks what went in answers that question.

        The shopper told "please scan it" (or unsure between suggestions) scans
        the item already lying in the basket: no weight changes, and the scan
        names the item. The newest open question about an added item takes it;
        a code in no catalogue closes the question too (the shopper did what
        was asked) but bills nothing and leaves the item with the attendant.
        """
        open_prompts = sorted(self.basket.view()["pending_prompts"],
                              key=lambda p: p["opened_at"], reverse=True)
        for prompt in open_prompts:
            context = self.basket.prompt_context(prompt["id"]) or {}
            if context.get("kind") == "add":
                break
        else:
            return None
        code = event.scans[-1].code
        barcode, problems = self.decider.parse_scans(event)
        sku = self.decider.catalogue.sku_for_barcode(barcode.barcode) if barcode else None
        answer = sku if sku is not None else f"barcode:{code}"
        prompt_id = str(prompt["id"])
        decision = Decision(event, "scan_answer", "accept" if sku else "unknown", sku,
                            int(context.get("quantity") or 1), 1.0 if sku else 0.0,
                            reason=f"scan answered prompt {prompt_id}")
        if not self._apply(PromptAnswered(f"{event.key}:answers", prompt_id, answer,
                                          scanned=code)):
            return decision
        self.stats.answers += 1
        if self.metrics is not None:
            self.metrics.prompt_answered()
        self._answered(prompt_id, answer)
        if sku is None:
            detail = "; ".join(problems) or "the scanned code is in no catalogue"
            self._apply(AlertRaised(f"{event.key}:unlisted", "unlisted_barcode",
                                    {"event": event.key, "prompt": prompt_id, "scans": [code],
                                     "message": detail}))
            decision.alerts.append("unlisted_barcode")
        return decision

    def _answered(self, prompt_id: str, answer: str) -> None:
        """The consequences of an answer, from the context stored with the prompt.

        The context comes from the basket file, not from memory, so a prompt
        opened before a restart is answered exactly as one opened since.
        """
        context = self.basket.prompt_context(prompt_id) or {}
        qty = int(context.get("quantity") or 1)
        top = context.get("vision_top")
        if self.decider.drift is not None and isinstance(top, str) \
                and answer in self.decider.catalogue:
            self.decider.drift.outcome(top, corrected=answer != top)
        weight = context.get("weight_g")
        if answer in self.decider.catalogue and context.get("kind") == "remove":
            self._apply(ItemRemoved(f"{prompt_id}:item", answer, qty, evidence_id=prompt_id,
                                    corrects=prompt_id))
        elif answer in self.decider.catalogue:
            # The shopper's answer is a correction: a labelled example of ``answer``.
            unit = abs(float(weight)) / qty if weight else None
            learned = context.get("embedding_f16")
            self._apply(ItemAdded(f"{prompt_id}:item", answer, qty, unit_weight_g=unit,
                                  evidence_id=prompt_id, corrects=prompt_id,
                                  exemplar={"embedding_f16": learned}
                                  if isinstance(learned, str) else None))
            embedding = context_embedding(context)
            if embedding is not None:
                self._learn(answer, embedding, prompt_id)
            if self.metrics is not None:
                self.metrics.correction(answer)
        elif answer == NONE_OF_THESE and context:
            crop_path = str(context.get("crop_path") or NO_CROP)
            learned = context.get("embedding_f16")
            self._apply(ReviewQueued(f"{prompt_id}:review", crop_path,
                                     "shopper: none of these", (),
                                     float(weight) if weight is not None else None,
                                     exemplar=review_exemplar(
                                         learned if isinstance(learned, str) else None,
                                         crop_path)))

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
