"""One item event in, basket commands out: camera crop → recognition → fusion → basket.

The decider owns no threads and no devices: it gets the event, the recent
camera frames and the basket as it stands, and returns what to write. That
keeps every decision reproducible in tests and benchmarks, and the loop in
:mod:`cartos.runtime.cart` thin.

Privacy: only the crop of the region that changed is ever written to disk
(for the review queue), with its margin masked and never near a whole frame's
size (:mod:`cartos.runtime.privacy`); whole frames stay in the RAM ring.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
from cartos.drift.features import embedding_features, input_features
from cartos.drift.monitor import Alert as DriftAlert
from cartos.drift.monitor import DriftMonitor
from cartos.fusion.answer import FusedAnswer
from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.fuse import fuse
from cartos.fusion.policy import FusionPolicy
from cartos.fusion.removal import BasketLine, RemovalAnswer, match_removal
from cartos.inference.recognizer import Recognition, Recognizer
from cartos.runtime.errors import PrivacyError
from cartos.runtime.item_events import ItemEvent
from cartos.runtime.privacy import DEFAULT_MAX_CROP_SHARE, review_crop
from cartos.sensors.barcode import InvalidBarcodeError, parse_barcode
from cartos.sensors.camera import EventFramePicker, EventFrames, FrameRing

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


def _top_skus(vision: VisionEvidence, k: int) -> list[str]:
    """The camera's ``k`` most likely SKUs, best first."""
    return [sku for sku, _ in sorted(vision.posterior.items(), key=lambda kv: -kv[1])[:k]]


def prompt_context(decision: Decision) -> dict[str, Any]:
    """What answering the decision's prompt needs, as JSON for the basket's prompt row.

    The embedding travels as base64 float16: 2.5 KB for 1280 values, and a unit
    vector loses nothing recognition can tell apart at that precision.
    """
    settled = decision.event.settled
    context: dict[str, Any] = {
        "kind": decision.kind,
        "quantity": decision.quantity,
        "weight_g": round(settled.delta_g, 2) if settled is not None else None,
        "crop_path": decision.crop_path,
        "event": decision.event.key,
    }
    if decision.embedding is not None:
        context["embedding_f16"] = embedding_f16(decision.embedding)
    if decision.vision_candidates:  # answered otherwise: the camera's top answer was wrong
        context["vision_top"] = decision.vision_candidates[0]
    return context


def embedding_f16(vector: np.ndarray) -> str:
    """An embedding as the hub and the prompt context carry it: little-endian float16, base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


REVIEW_CROP_MAX_BYTES = 64 * 1024
"""Largest JPEG a review item carries to the hub; a larger crop file is re-encoded smaller."""

REVIEW_CROP_MAX_SIDE = 1024
"""Longest side of the crop a review item carries (the hub refuses larger images as not crops)."""

_REENCODE_QUALITIES = (85, 70, 55, 40)


def review_crop_jpeg(crop_path: str) -> bytes | None:
    """The masked crop at ``crop_path`` as JPEG bytes of at most :data:`REVIEW_CROP_MAX_BYTES`.

    The file the decider wrote is used as it is when it fits; otherwise it is re-encoded at
    lower quality, then smaller, until it does. None when there is no crop (``NO_CROP``),
    the file is gone (the retention sweep took it) or it is not a readable image.
    """
    if not crop_path or crop_path == NO_CROP:
        return None
    try:
        data = Path(crop_path).read_bytes()
    except OSError:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("review crop %s is not a readable image; sent without it", crop_path)
        return None
    height, width = image.shape[:2]
    if (data[:3] == b"\xff\xd8\xff" and len(data) <= REVIEW_CROP_MAX_BYTES
            and max(height, width) <= REVIEW_CROP_MAX_SIDE):
        return data
    scale = min(1.0, REVIEW_CROP_MAX_SIDE / max(height, width))
    while True:
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        small = image if size == (width, height) else cv2.resize(
            image, size, interpolation=cv2.INTER_AREA)
        for quality in _REENCODE_QUALITIES:
            ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= REVIEW_CROP_MAX_BYTES:
                return bytes(encoded.tobytes())
        if min(size) <= 16:  # cannot happen for a real crop; never loop forever
            return None
        scale *= 0.7


def review_exemplar(embedding: str | None, crop_path: str) -> dict[str, str] | None:
    """A review item's ``exemplar``: the crop's embedding (``embedding_f16``, as
    :func:`embedding_f16` writes it) and the masked crop read from ``crop_path`` now
    (``crop_jpeg``, base64; left out when the file is gone). None when there is neither."""
    exemplar: dict[str, str] = {}
    if isinstance(embedding, str) and embedding:
        exemplar["embedding_f16"] = embedding
    crop = review_crop_jpeg(crop_path)
    if crop is not None:
        exemplar["crop_jpeg"] = base64.b64encode(crop).decode("ascii")
    return exemplar or None


def context_embedding(context: Mapping[str, Any]) -> np.ndarray | None:
    """The embedding stored by :func:`prompt_context`, as float32, or None."""
    text = context.get("embedding_f16")
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        log.warning("prompt context holds an unreadable embedding; not learning from it")
        return None
    if len(raw) % 2:
        return None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


@dataclass(frozen=True)
class DeciderSettings:
    scale_sigma_g: float = 1.5
    frames_per_event: int = 3
    """After-frames recognised per add event (same region); they agree or lower confidence."""
    max_crop_share: float = DEFAULT_MAX_CROP_SHARE
    """Largest share of the frame a stored review crop may cover (profile ``privacy``)."""


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
        self.drift: DriftMonitor | None = None
        """Watches every recognised crop (``cartos.drift``); the runtime raises its alerts."""
        self.drift_alerts: list[DriftAlert] = []

    # -- evidence -----------------------------------------------------------------

    def _vision(
        self, event: ItemEvent, ring: FrameRing | None
    ) -> tuple[VisionEvidence | None, EventFrames | None, np.ndarray | None, float]:
        """Recognise the changed region in the frames after the event.

        Returns the event frames themselves (not only the recognition crop): the review crop
        is cut from them again, masked, by :meth:`_save_crop`.
        """
        if self.recognizer is None or self.recognizer.embedder is None or ring is None:
            return None, None, None, 0.0
        frames = self.picker.pick(ring, event.t)
        if frames is None or frames.region is None or frames.crop is None:
            return None, None, None, 0.0
        crops = [frames.crop]
        for later in ring.after(frames.after.t, self.settings.frames_per_event - 1):
            crops.append(frames.region.crop(later.image))
        vision, vectors, backbone_s = self._recognise(crops)
        return vision, frames, vectors[0], backbone_s

    def _recognise(self, crops: list[np.ndarray]) -> tuple[VisionEvidence, np.ndarray, float]:
        """Embed crops of one item in one batch and pool their recognitions into evidence."""
        assert self.recognizer is not None and self.recognizer.embedder is not None
        start = time.perf_counter()
        vectors = self.recognizer.embedder.embed_arrays(crops)
        backbone_s = time.perf_counter() - start
        recognitions: list[Recognition] = self.recognizer.recognize_vectors(vectors)
        vision = VisionEvidence.from_recognitions(recognitions, self.recognizer.temperature)
        if self.drift is not None and crops and recognitions:
            first = recognitions[0]
            features = input_features(crops[0]) | embedding_features(
                np.array([c.score for c in first.topk] or [0.0]))
            self.drift_alerts += self.drift.observe(
                features, answer=first.topk[0].sku if first.topk else None)
        return vision, vectors, backbone_s

    def _removal_vision(
        self, event: ItemEvent, ring: FrameRing | None
    ) -> tuple[VisionEvidence | None, float]:
        """Recognise what left: the changed region in the still frames *before* the event.

        A removal's "after" frame shows the gap; the item is in the frames from
        before the hand came in, at the same place. Weight alone cannot tell two
        basket lines of similar weight apart; the camera usually can.
        """
        if self.recognizer is None or self.recognizer.embedder is None or ring is None:
            return None, 0.0
        frames = self.picker.pick(ring, event.t)
        if frames is None or frames.region is None:
            return None, 0.0
        box = frames.region.padded(self.picker.params.crop_pad, frames.before.width,
                                   frames.before.height)
        earlier = ring.before(frames.before.t - 1e-6, self.settings.frames_per_event - 1)
        crops = [box.crop(f.image) for f in (frames.before, *reversed(earlier))
                 if f.image.shape == frames.before.image.shape]
        vision, _vectors, backbone_s = self._recognise(crops)
        return vision, backbone_s

    def parse_scans(self, event: ItemEvent) -> tuple[BarcodeEvidence | None, list[str]]:
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
        barcode, problems = self.parse_scans(event)
        if event.kind == "remove":
            decision = self._remove(event, ring, basket)
        else:
            vision, frames, embedding, backbone_s = (
                self._vision(event, ring) if event.kind == "add" else (None, None, None, 0.0)
            )
            weight = (
                WeightEvidence(event.settled.delta_g, self.settings.scale_sigma_g)
                if event.settled is not None else None
            )
            answer = fuse(vision, weight, barcode, self.catalogue, self.policy)
            decision = self._add(event, answer, frames, vision)
            decision.embedding = embedding
            decision.backbone_s = backbone_s
        for problem in problems:
            decision.commands.append(AlertRaised(f"{event.key}:badscan:{len(decision.commands)}",
                                                 "invalid_scan", {"detail": problem}))
        if any(isinstance(c, ReviewQueued) for c in decision.commands):
            exemplar = review_exemplar(
                embedding_f16(decision.embedding) if decision.embedding is not None else None,
                decision.crop_path)
            decision.commands = [replace(c, exemplar=exemplar) if isinstance(c, ReviewQueued)
                                 else c for c in decision.commands]
        if decision.prompt_id is not None:
            context = prompt_context(decision)
            decision.commands = [replace(c, context=context) if isinstance(c, PromptOpened)
                                 else c for c in decision.commands]
        decision.latency_s = time.perf_counter() - start
        return decision

    def _add(self, event: ItemEvent, answer: FusedAnswer, frames: EventFrames | None,
             vision: VisionEvidence | None = None) -> Decision:
        crop = frames.crop if frames is not None else None
        d = Decision(event, event.kind, answer.decision, answer.sku, answer.quantity,
                     answer.confidence, alerts=answer.alert_kinds, reason=answer.reason, crop=crop)
        if vision is not None:
            d.vision_candidates = _top_skus(vision, 3)
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
        path = self._save_crop(event, frames)
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
        vision, backbone_s = self._removal_vision(event, ring)
        answer: RemovalAnswer = match_removal(weight, basket, self.catalogue, self.policy,
                                              vision=vision)
        d = Decision(event, "remove", answer.decision, answer.sku, answer.quantity,
                     answer.confidence, alerts=answer.alert_kinds, reason=answer.reason,
                     backbone_s=backbone_s)
        if vision is not None:
            d.vision_candidates = _top_skus(vision, 3)
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

    def _save_crop(self, event: ItemEvent, frames: EventFrames | None) -> Path | None:
        """Write the item crop (never a whole frame) for the review queue.

        The stored image is the recognition crop's box with everything outside the changed
        region masked (:func:`cartos.runtime.privacy.review_crop`); one that would cover the
        whole frame or more than ``max_crop_share`` of it is refused and not written, and the
        review item records :data:`NO_CROP` instead.
        """
        if frames is None or frames.region is None:
            return None
        try:
            crop = review_crop(frames.after.image, frames.region, self.picker.params.crop_pad,
                               self.settings.max_crop_share)
        except PrivacyError as exc:
            log.warning("review crop of %s not stored: %s", event.key, exc)
            return None
        self.review_dir.mkdir(parents=True, exist_ok=True)
        path = self.review_dir / f"{event.key.replace(':', '_')}.jpg"
        if not cv2.imwrite(str(path), crop):
            log.warning("could not write review crop %s", path)
            return None
        return path
