"""Fine-tuning the backbone on the store's own images (build-time: imports torch).

The objective suits prototypes: a cosine-softmax head (normalised embeddings against
normalised class weights, scaled), so training pulls each SKU's images together on the
unit sphere where the catalogue's dot products live, rather than shaping logits for a
classifier that carts never run. The head starts at the pretrained model's class means,
so the first steps already mean something, and is thrown away afterwards: only the
backbone ships, with the same input contract and embedding size.

Augmentations mimic what a basket camera does to a pack shot: off-centre crops, mirror
images, a different lamp (brightness, contrast, colour temperature) and motion blur.
BatchNorm statistics stay frozen: a CPU batch of 16 estimates them worse than ImageNet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from cartos.inference.preprocess import InputSpec, to_tensor
from cartos.modelbuild.export import Backbone, import_torch
from cartos.refresh.errors import RefreshError

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    time_budget_s: float = 20 * 60.0
    """Training stops when this is spent, between two steps, whatever the epoch."""
    batch_size: int = 16
    lr_backbone: float = 1e-4
    lr_head: float = 1e-2
    weight_decay: float = 1e-4
    scale: float = 30.0
    """Cosine-softmax temperature: logits = scale * cos(embedding, class weight)."""
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class TrainReport:
    steps: int
    epochs_done: float
    seconds: float
    stopped_by: str
    """``epochs`` or ``time_budget``."""
    first_loss: float
    last_loss: float


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One basket-camera look at a pack shot (BGR uint8 in, BGR uint8 out)."""
    h, w = image.shape[:2]
    area = rng.uniform(0.6, 1.0)
    aspect = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    ch = min(h, max(8, round(h * math.sqrt(area / aspect))))
    cw = min(w, max(8, round(w * math.sqrt(area * aspect))))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = image[y : y + ch, x : x + cw].astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain = rng.uniform(0.7, 1.3)
    contrast = rng.uniform(0.8, 1.2)
    lamp = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)], np.float32)
    mean = out.mean()
    out = ((out - mean) * contrast + mean) * gain * lamp
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def _freeze_batchnorm(module: Any, torch: Any) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def fine_tune(
    backbone: Backbone,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    settings: TrainSettings,
    log: LogFn = print,
) -> TrainReport:
    """Fine-tune ``backbone.module`` in place on decoded BGR ``images``."""
    torch = import_torch()
    if len(images) != len(labels) or not images:
        raise RefreshError("fine-tuning needs images, one label each")
    classes = int(max(labels)) + 1
    if classes < 2:
        raise RefreshError("fine-tuning needs at least two SKUs")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    spec = InputSpec(size=backbone.input_size)
    device = torch.device(settings.device)
    net = backbone.module.to(device)
    y_all = np.asarray(labels, dtype=np.int64)

    def batch_tensor(rows: np.ndarray, augmented: bool) -> Any:
        shots = [augment(images[i], rng) if augmented else images[i] for i in rows]
        return torch.from_numpy(np.stack([to_tensor(s, spec) for s in shots])).to(device)

    start = time.monotonic()  # the budget covers the head's initialisation too
    # The head starts at the class means of the pretrained embeddings.
    net.eval()
    with torch.no_grad():
        feats = torch.cat([
            net(batch_tensor(np.arange(i, min(i + 32, len(images))), augmented=False))
            for i in range(0, len(images), 32)
        ])
    feats = torch.nn.functional.normalize(feats, dim=1)
    centres = torch.zeros(classes, feats.shape[1], device=device)
    centres.index_add_(0, torch.from_numpy(y_all).to(device), feats)
    head = torch.nn.Parameter(torch.nn.functional.normalize(centres, dim=1))

    optimiser = torch.optim.AdamW(
        [{"params": [p for p in net.parameters() if p.requires_grad],
          "lr": settings.lr_backbone},
         {"params": [head], "lr": settings.lr_head}],
        weight_decay=settings.weight_decay,
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    steps, first, last = 0, float("nan"), float("nan")
    stopped_by = "epochs"
    per_epoch = math.ceil(len(images) / settings.batch_size)
    net.train()
    _freeze_batchnorm(net, torch)
    for epoch in range(settings.epochs):
        order = rng.permutation(len(images))
        for b in range(per_epoch):
            if time.monotonic() - start > settings.time_budget_s:
                stopped_by = "time_budget"
                break
            rows = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            x = batch_tensor(rows, augmented=True)
            y = torch.from_numpy(y_all[rows]).to(device)
            emb = torch.nn.functional.normalize(net(x), dim=1)
            logits = settings.scale * emb @ torch.nn.functional.normalize(head, dim=1).T
            loss = loss_fn(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
            last = float(loss.detach())
            if steps == 1:
                first = last
        else:
            log(f"  epoch {epoch + 1}/{settings.epochs}: loss {last:.3f} "
                f"({time.monotonic() - start:.0f} s)")
            continue
        break
    net.eval()
    return TrainReport(
        steps=steps,
        epochs_done=round(steps / per_epoch, 2),
        seconds=round(time.monotonic() - start, 1),
        stopped_by=stopped_by,
        first_loss=first,
        last_loss=last,
    )
