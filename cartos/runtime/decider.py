"""One item event in, basket commands out: camera crop → recognition → fusion → basket.

The decider owns no threads and no devices: it gets the event, the recent
camera frames and the basket as it stands, and returns what to write. That
keeps every decision reproducible in tests and benchmarks, and the loop in
:mod:`cartos.runtime.cart` thin.

Privacy: only the crop of the region that changed is ever written to disk
(for the review queue); whole frames stay in the RAM ring.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cartos.basket.events import (
    AlertRaised,
    ItemAdded,
    ItemRemoved,
    PromptAnswered,
    PromptOpened,
    ReviewQueued,
)
from cartos.fusion.answer import FusedAnswer
from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.fuse import fuse
from cartos.fusion.policy import FusionPolicy
from cartos.fusion.removal import BasketLine, RemovalAnswer, match_removal
from cartos.inference.recognizer import Recognition, Recognizer
from cartos.runtime.item_events import ItemEvent
from cartos.sensors.barcode import InvalidBarcodeError, parse_barcode
from cartos.sensors.camera import EventFramePicker, FrameRing

log = logging.getLogger(__name__)

Command = ItemAdded | ItemRemoved | PromptOpened | AlertRaised | ReviewQueued | PromptAnswered
NONE_OF_THESE = "none of these"
NO_CROP = "no-crop"  # review items the camera did not see (camera down, item out of view)
SCAN_IT = "I'll scan it"


@dataclass
class Decision:
    """What the runtime decided for one event, and the basket commands that record it."""

    event: ItemEvent
    kind: str  # add | remove | scan_only
    decision: str  # accept | confirm | fallback | unknown
    sku: str | None
    quantity: int
    confidence: float
    commands: list[Command] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    reason: str = ""
    crop: np.ndarray | None = None
    embedding: np.ndarray | None = None
    latency_s: float = 0.0
    backbone_s: float = 0.0
    prompt_id: str | None = None
    crop_path: str = NO_CROP
    vision_candidates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.key,
            "kind": self.kind,
            "decision": self.decision,
            "sku": self.sku,
            "quantity": self.quantity,
            "confidence": round(self.confidence, 4),
            "alerts": self.alerts,
            "reason": self.reason,
            "prompt": self.prompt_id,
            "latency_ms": round(self.latency_s * 1000, 1),
        }


@dataclass(frozen=True)
class DeciderSettings:
    scale_sigma_g: float = 1.5
    frames_per_event: int = 3
    """After-frames recognised per add event (same region); they agree or lower confidence."""


class EventDecider:
    """Turns assembled item events into basket commands."""

    def __init__(
        self,
        recognizer: Recognizer | None,
        catalogue: CatalogueView,
        policy: FusionPolicy,
        review_dir: Path,
        settings: DeciderSettings | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.catalogue = catalogue
        self.policy = policy
        self.review_dir = review_dir
        self.settings = settings or DeciderSettings()
        self.picker = EventFramePicker()

    # -- evidence -----------------------------------------------------------------

    def _vision(
        self, event: ItemEvent, ring: FrameRing | None
    ) -> tuple[VisionEvidence | None, np.ndarray | None, np.ndarray | None, float]:
        """Recognise the changed region in the frames after the event."""
        if self.recognizer is None or self.recognizer.embedder is None or ring is None:
            return None, None, None, 0.0
        frames = self.picker.pick(ring, event.t)
        if frames is None or frames.region is None or frames.crop is None:
            return None, None, None, 0.0
        crops = [frames.crop]
        for later in ring.after(frames.after.t, self.settings.frames_per_event - 1):
            crops.append(frames.region.crop(later.image))
        start = time.perf_counter()
        vectors = self.recognizer.embedder.embed_arrays(crops)
        backbone_s = time.perf_counter() - start
        recognitions: list[Recognition] = self.recognizer.recognize_vectors(vectors)
        vision = VisionEvidence.from_recognitions(recognitions, self.recognizer.temperature)
        return vision, frames.crop, vectors[0], backbone_s

    def _barcode(self, event: ItemEvent) -> tuple[BarcodeEvidence | None, list[str]]:
        """The last valid scan of the event; invalid ones are reported, never used."""
        problems: list[str] = []
        chosen: BarcodeEvidence | None = None
        for scan in event.scans:
            try:
                chosen = BarcodeEvidence(parse_barcode(scan.code))
            except InvalidBarcodeError as exc:
                problems.append(f"scan {scan.code!r} rejected: {exc}")
        return chosen, problems

    # -- decisions ----------------------------------------------------------------

    def decide(self, event: ItemEvent, ring: FrameRing | None,
               basket: list[BasketLine]) -> Decision:
        start = time.perf_counter()
        barcode, problems = self._barcode(event)
        if event.kind == "remove":
            decision = self._remove(event, ring, basket)
        else:
            vision, crop, embedding, backbone_s = (
                self._vision(event, ring) if event.kind == "add" else (None, None, None, 0.0)
            )
            weight = (
                WeightEvidence(event.settled.delta_g, self.settings.scale_sigma_g)
                if event.settled is not None else None
            )
            answer = fuse(vision, weight, barcode, self.catalogue, self.policy)
            decision = self._add(event, answer, crop, vision)
            decision.embedding = embedding
            decision.backbone_s = backbone_s
        for problem in problems:
            decision.commands.append(AlertRaised(f"{event.key}:badscan:{len(decision.commands)}",
                                                 "invalid_scan", {"detail": problem}))
        decision.latency_s = time.perf_counter() - start
        return decision

    def _add(self, event: ItemEvent, answer: FusedAnswer, crop: np.ndarray | None,
             vision: VisionEvidence | None = None) -> Decision:
        d = Decision(event, event.kind, answer.decision, answer.sku, answer.quantity,
                     answer.confidence, alerts=answer.alert_kinds, reason=answer.reason, crop=crop)
        if vision is not None:
            ranked = sorted(vision.posterior.items(), key=lambda kv: -kv[1])
            d.vision_candidates = [sku for sku, _ in ranked[:3]]
        weight = event.settled.delta_g if event.settled is not None else None
        evidence = {"event": event.key, "weight_g": weight,
                    "scans": [s.code for s in event.scans], "reason": answer.reason}
        for i, alert in enumerate(answer.alerts):
            d.commands.append(AlertRaised(f"{event.key}:alert:{i}", alert.kind,
                                          {**evidence, "message": alert.message}))
        if answer.decision == "accept" and answer.sku is not None:
            unit = weight / max(answer.quantity, 1) if weight is not None else None
            d.commands.append(ItemAdded(f"{event.key}:add", answer.sku, answer.quantity,
                                        unit_weight_g=unit, evidence_id=event.key))
            return d
        if event.kind == "scan_only":
            d.prompt_id = f"{event.key}:place"
            d.commands.append(PromptOpened(
                f"{event.key}:prompt", d.prompt_id,
                "The scanned item was not put in the basket. Put it in, or tap to cancel.",
                ("cancel",)))
            return d
        options = [s.sku for s in answer.suggestions[:3]] or ([answer.sku] if answer.sku else [])
        # What the camera saw is always offered too: with a scanned label that the weight
        # contradicts, the truth is usually the camera's answer, not the label's.
        for sku in d.vision_candidates:
            if sku not in options and len(options) < 4:
                options.append(sku)
        path = self._save_crop(event, crop)
        d.crop_path = str(path) if path else NO_CROP
        if answer.decision == "unknown" or not options:
            candidates = tuple((s.sku, round(s.probability, 4)) for s in answer.suggestions[:5])
            d.commands.append(ReviewQueued(f"{event.key}:review", d.crop_path,
                                           answer.reason or "unknown item", candidates, weight))
            d.prompt_id = f"{event.key}:scan"
            d.commands.append(PromptOpened(f"{event.key}:prompt", d.prompt_id,
                                           "We could not recognise this item. Please scan it.",
                                           (SCAN_IT,)))
            return d
        d.prompt_id = f"{event.key}:pick"
        question = (f"Is this {self._name(options[0])}?" if answer.decision == "confirm"
                    else "Which of these did you put in?")
        d.commands.append(PromptOpened(f"{event.key}:prompt", d.prompt_id, question,
                                       (*options, NONE_OF_THESE)))
        return d

    def _remove(self, event: ItemEvent, ring: FrameRing | None,
                basket: list[BasketLine]) -> Decision:
        assert event.settled is not None
        weight = WeightEvidence(event.settled.delta_g, self.settings.scale_sigma_g)
        answer: RemovalAnswer = match_removal(weight, basket, self.catalogue, self.policy)
        d = Decision(event, "remove", answer.decision, answer.sku, answer.quantity,
                     answer.confidence, alerts=answer.alert_kinds, reason=answer.reason)
        for i, alert in enumerate(answer.alerts):
            d.commands.append(AlertRaised(f"{event.key}:alert:{i}", alert.kind,
                                          {"event": event.key, "weight_g": event.settled.delta_g,
                                           "message": alert.message}))
        if answer.decision == "accept" and answer.sku is not None:
            d.commands.append(ItemRemoved(f"{event.key}:remove", answer.sku, answer.quantity,
                                          evidence_id=event.key))
        elif answer.candidates:
            d.prompt_id = f"{event.key}:removed"
            d.commands.append(PromptOpened(
                f"{event.key}:prompt", d.prompt_id, "Which item did you take out?",
                (*[c.sku for c in answer.candidates[:3]], NONE_OF_THESE)))
        return d

    def _name(self, sku: str) -> str:
        item = self.catalogue.get(sku)
        name = getattr(item, "name", None) if item is not None else None
        return str(name or sku)

    def _save_crop(self, event: ItemEvent, crop: np.ndarray | None) -> Path | None:
        """Write the item crop (never a whole frame) for the review queue."""
        if crop is None:
            return None
        self.review_dir.mkdir(parents=True, exist_ok=True)
        path = self.review_dir / f"{event.key.replace(':', '_')}.jpg"
        if not cv2.imwrite(str(path), crop):
            log.warning("could not write review crop %s", path)
            return None
        return path
