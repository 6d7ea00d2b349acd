"""Draw loose produce: a pile of fruit or vegetables, photographed like a pack.

Produce has no printed artwork, so what identifies it is what a shopper sees:
the outline of one piece (round, oval, long, leafy), its colour, its skin
(gloss, pores, stripes, blush, fuzz) and the detail at its ends (stalk, calyx,
fronds, dark tips). A pile of a few pieces is drawn on a transparent canvas
and handed to the same :func:`~cartos.synth.render.photograph` step the packs
go through, so produce shots get the same backgrounds, light, blur, noise and
hands, and references differ from queries the way they do for packs.

Unlike a pack face, a pile is not a pure function of the design: every shot
piles the pieces afresh (count, placement, orientation), because a bag of
apples never lies the same way twice and recognition has to cope with that.

Images are BGR uint8, OpenCV's native order, as decoded by the runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from cartos.synth.design import (
    Colour,
    LeafyForm,
    ProduceDesign,
    ProduceEnd,
    ProduceKind,
    ProduceShape,
)
from cartos.synth.render import FloatImage, Image, PackImage, ShotStyle, photograph

_AA = cv2.LINE_AA
_SAMPLES = 64
"""Points per side of a piece's outline."""
_LIGHT = (-0.6, -0.8)
"""Unit vector towards the key light in canvas coordinates: from the top left."""
_STALK: Colour = (45, 80, 110)
_SEPAL: Colour = (40, 120, 50)
_FROND: Colour = (45, 150, 60)
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

Float = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Piece:
    """One fruit or vegetable in a pile: where it lies and its own small irregularities."""

    cx: float
    cy: float
    angle: float
    """Direction of the spine, radians."""
    length: float
    width: float
    phases: tuple[float, ...]
    """Phases of the outline's lumps, so no two pieces have the same silhouette."""
    tint: tuple[float, float, float]
    """Per-channel colour factor: pieces of one pile are never quite the same colour."""


# --------------------------------------------------------------------------- geometry


def _raw_width(kind: ProduceKind, piece: _Piece, t: Float, side: int) -> Float:
    """Unnormalised half-width profile of one side (0 or 1) at spine positions ``t``."""
    s = np.abs(2.0 * t - 1.0).clip(0.0, 1.0)
    p = 2.0 + 2.0 * kind.boxy
    q = 1.0 + kind.tip
    base = (1.0 - s**p).clip(0.0, None) ** (q / p)
    base = base * (1.0 - kind.taper * t)
    p0, p1, p2 = piece.phases[3 * side : 3 * side + 3]
    lump = 1.0 + kind.lump * (
        0.6 * np.sin(2 * math.pi * 1.5 * t + p0) + 0.4 * np.sin(2 * math.pi * 2.5 * t + p1)
    )
    wavy = 1.0 + kind.wavy * np.sin(2 * math.pi * 13.0 * t + p2)
    return np.asarray(base * lump * wavy, dtype=np.float64)


def _width_norm(kind: ProduceKind) -> float:
    """Largest smooth half-width factor, so ``width`` is the widest point even when tapered."""
    t = np.linspace(0.0, 1.0, 201)
    s = np.abs(2.0 * t - 1.0)
    p = 2.0 + 2.0 * kind.boxy
    base = (1.0 - s**p).clip(0.0, None) ** ((1.0 + kind.tip) / p) * (1.0 - kind.taper * t)
    return float(max(base.max(), 1e-3))


def _spine(kind: ProduceKind, piece: _Piece, t: Float) -> Float:
    """Offset of the spine from the piece's axis: bananas bow, everything else is straight."""
    s = 2.0 * t - 1.0
    return np.asarray(-kind.bend * piece.length * (1.0 - s**2) / 2.0, dtype=np.float64)


def _to_world(piece: _Piece, u: Float, v: Float) -> npt.NDArray[np.float64]:
    c, s = math.cos(piece.angle), math.sin(piece.angle)
    return np.stack([piece.cx + u * c - v * s, piece.cy + u * s + v * c], axis=-1)


def _outline(kind: ProduceKind, piece: _Piece) -> npt.NDArray[np.float64]:
    """The piece's silhouette as a closed polygon in canvas coordinates."""
    t = np.linspace(0.0, 1.0, _SAMPLES)
    u = (t - 0.5) * piece.length
    spine = _spine(kind, piece, t)
    half = piece.width / 2.0 / _width_norm(kind)
    upper = spine - half * _raw_width(kind, piece, t, 0)
    lower = spine + half * _raw_width(kind, piece, t, 1)
    local_u = np.concatenate([u, u[::-1]])
    local_v = np.concatenate([upper, lower[::-1]])
    return _to_world(piece, local_u, local_v)


def _point(kind: ProduceKind, piece: _Piece, t: float, across: float = 0.0) -> tuple[int, int]:
    """Canvas pixel at spine position ``t``, ``across`` half-widths off the spine."""
    tt = np.array([t])
    v = float(_spine(kind, piece, tt)[0]) + across * piece.width / 2.0
    xy = _to_world(piece, np.array([(t - 0.5) * piece.length]), np.array([v]))[0]
    return (round(float(xy[0])), round(float(xy[1])))


# --------------------------------------------------------------------------- surfaces


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> FloatImage:
    """Noise in [0, 1] with about ``cells`` blobs across: blush and mottling."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), np.float32)


def _mix(field: FloatImage, colour: Colour, amount: FloatImage) -> None:
    """Blend ``colour`` into ``field`` where ``amount`` (0..1) says, in place."""
    target = np.asarray(colour, dtype=np.float32)
    field += (target - field) * amount[..., None]


def _dots(
    field: FloatImage,
    mask: npt.NDArray[np.uint8],
    rng: np.random.Generator,
    density: float,
    radius: int,
    colour: Colour,
) -> None:
    """Speckles (lenticels, pores, eyes, fuzz) scattered over the piece's skin."""
    ys, xs = np.nonzero(mask > 200)
    if density <= 0 or len(ys) == 0:
        return
    count = int(density * len(ys) / 100.0)
    picks = rng.integers(len(ys), size=count)
    ink = tuple(float(c) for c in colour)
    for i in picks:
        cv2.circle(field, (int(xs[i]), int(ys[i])), radius, ink, -1, _AA)


def _star(cx: float, cy: float, r: float, points: int, turn: float) -> npt.NDArray[np.int32]:
    pts = []
    for i in range(points * 2):
        radius = r if i % 2 == 0 else r * 0.35
        a = turn + i * math.pi / points
        pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return np.round(np.array(pts)).astype(np.int32)


# --------------------------------------------------------------------------- one piece


@dataclass
class _Patch:
    """The canvas window one piece is drawn in, with its pixel grid in piece coordinates."""

    x0: int
    y0: int
    u: FloatImage
    """Distance along the spine's axis from the piece's centre."""
    v: FloatImage
    """Distance across it."""

    def local(self, xy: tuple[int, int]) -> tuple[int, int]:
        """A canvas pixel in the patch's own pixel coordinates."""
        return (xy[0] - self.x0, xy[1] - self.y0)


def _patch(
    piece: _Piece, points: npt.NDArray[np.float64], margin: float, shape: tuple[int, int]
) -> _Patch | None:
    """The canvas window around ``points`` plus ``margin``, clipped to the canvas."""
    h, w = shape
    x0 = max(0, math.floor(float(points[:, 0].min()) - margin))
    y0 = max(0, math.floor(float(points[:, 1].min()) - margin))
    x1 = min(w, math.ceil(float(points[:, 0].max()) + margin))
    y1 = min(h, math.ceil(float(points[:, 1].max()) + margin))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = gx - np.float32(piece.cx), gy - np.float32(piece.cy)
    c, s = np.float32(math.cos(piece.angle)), np.float32(math.sin(piece.angle))
    return _Patch(x0=x0, y0=y0, u=dx * c + dy * s, v=-dx * s + dy * c)


def _skin(
    kind: ProduceKind,
    design: ProduceDesign,
    piece: _Piece,
    patch: _Patch,
    mask: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> FloatImage:
    """Colour, blush, stripes, speckles and grain of one piece, before shading."""
    h, w = mask.shape
    colour = tuple(c * f for c, f in zip(design.colour, piece.tint, strict=True))
    field = np.empty((h, w, 3), dtype=np.float32)
    field[:] = colour
    t = np.clip(patch.u / np.float32(piece.length) + 0.5, 0.0, 1.0).astype(np.float64)
    spine = _spine(kind, piece, t).astype(np.float32)
    half = np.float32(piece.width / 2.0)
    across = np.clip((patch.v - spine) / half, -1.0, 1.0)

    if kind.blush > 0:
        noise = _smooth_noise(rng, h, w, 3)
        _mix(field, design.accent, np.clip((noise - (1.0 - kind.blush)) * 4.0, 0.0, 0.85))
    if kind.stripes > 0:
        # Meridians: stripes converge towards the ends, as on an onion or a courgette.
        squeeze = np.sqrt(np.clip(1.0 - (2.0 * t - 1.0) ** 2, 0.05, 1.0)).astype(np.float32)
        pattern = 0.5 + 0.5 * np.cos(np.pi * kind.stripes * across / squeeze)
        _mix(field, design.accent, np.clip((pattern - 0.55) * 3.0, 0.0, 0.8).astype(np.float32))
    elif kind.stripes < 0:
        phase = rng.uniform(0, 2 * math.pi)
        pattern = np.cos(2 * math.pi * -kind.stripes * t + phase).astype(np.float32)
        _mix(field, design.accent, np.clip((pattern - 0.8) * 5.0, 0.0, 0.7))
    if kind.end is ProduceEnd.TIPS:
        ends = np.clip((np.abs(2.0 * t - 1.0) - 0.86) * 10.0, 0.0, 1.0).astype(np.float32)
        _mix(field, design.accent, ends)
    if kind.speckle > 0:
        radius = max(1, round(piece.width * 0.014))
        _dots(field, mask, rng, kind.speckle, radius, design.accent)
    if kind.end is ProduceEnd.NAVEL:
        centre = patch.local(_point(kind, piece, 0.62, 0.1))
        cv2.circle(
            field,
            centre,
            max(1, round(piece.width * 0.05)),
            tuple(0.6 * c for c in design.accent),
            -1,
            _AA,
        )
    if kind.grain > 0:
        grain = rng.standard_normal((h, w)).astype(np.float32)
        grain = np.asarray(cv2.GaussianBlur(grain, (0, 0), 0.8), dtype=np.float32)
        field *= (1.0 + np.float32(0.35 * kind.grain) * grain)[..., None]
    return field


def _shade(
    kind: ProduceKind,
    piece: _Piece,
    patch: _Patch,
    field: FloatImage,
    mask: npt.NDArray[np.uint8],
    flat: bool,
) -> FloatImage:
    """Light the piece: a dome falling off to the rim, the key light's side, a gloss highlight."""
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    dome = np.sqrt(dist / np.float32(max(float(dist.max()), 1.0)))
    if flat:
        dome = dome**0.4
    lx, ly = _LIGHT
    c, s = math.cos(piece.angle), math.sin(piece.angle)
    half = piece.width / 2.0
    towards = ((patch.u * c - patch.v * s) * lx + (patch.u * s + patch.v * c) * ly) / half
    light = np.clip(1.0 + 0.18 * towards, 0.7, 1.25)
    out = field * ((0.42 + 0.58 * dome) * light)[..., None]
    if kind.gloss > 0:
        lu, lv = lx * c + ly * s, -lx * s + ly * c
        u_h = 0.3 * half * lu
        v_h = float(_spine(kind, piece, np.array([u_h / piece.length + 0.5]))[0]) + 0.45 * half * lv
        sigma_u = max(0.25 * half, 0.28 * (piece.length - piece.width))
        sigma_v = 0.2 * half
        spot = np.exp(-0.5 * (((patch.u - u_h) / sigma_u) ** 2 + ((patch.v - v_h) / sigma_v) ** 2))
        out += (np.float32(170.0 * kind.gloss) * spot)[..., None]
    return np.asarray(out, dtype=np.float32)


def _ends(
    kind: ProduceKind,
    design: ProduceDesign,
    piece: _Piece,
    patch: _Patch,
    img: FloatImage,
    mask: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> None:
    """Stalk, calyx or fronds, drawn over the lit piece and added to its silhouette."""
    long = kind.shape is ProduceShape.ELONGATED
    if kind.end is ProduceEnd.STEM and kind.form is None:
        base = patch.local(_point(kind, piece, 0.97 if long else 0.88))
        tip = patch.local(_point(kind, piece, 1.1 if long else 1.04, rng.uniform(-0.15, 0.15)))
        thick = max(2, round(piece.width * (0.16 if long else 0.07)))
        cv2.circle(
            img,
            base,
            max(2, round(piece.width * 0.08)),
            tuple(0.55 * c for c in design.colour),
            -1,
            _AA,
        )
        for layer, ink in ((img, tuple(float(c) for c in _STALK)), (mask, (255.0,))):
            cv2.line(layer, base, tip, ink, thick, _AA)
    elif kind.end is ProduceEnd.CALYX:
        t = 0.96 if long else 0.8
        cx, cy = patch.local(_point(kind, piece, t))
        r = piece.width * (0.42 if long else 0.26)
        star = _star(cx, cy, r, 5 if long else 6, rng.uniform(0, math.pi))
        for layer, ink in ((img, tuple(float(c) for c in _SEPAL)), (mask, (255.0,))):
            cv2.fillPoly(layer, [star], ink, _AA)
        cv2.circle(img, (cx, cy), max(2, round(r * 0.25)), tuple(float(c) for c in _STALK), -1)
    elif kind.end is ProduceEnd.FRONDS and kind.form is None:
        base = _point(kind, piece, 0.02)
        for _ in range(int(rng.integers(4, 8))):
            a = piece.angle + math.pi + rng.uniform(-0.5, 0.5)
            reach = piece.length * rng.uniform(0.25, 0.45)
            end = (round(base[0] + reach * math.cos(a)), round(base[1] + reach * math.sin(a)))
            thick = max(2, round(piece.width * 0.09))
            tone = tuple(float(c) * rng.uniform(0.8, 1.15) for c in _FROND)
            for layer, ink in ((img, tone), (mask, (255.0,))):
                cv2.line(layer, patch.local(base), patch.local(end), ink, thick, _AA)
                cv2.ellipse(
                    layer,
                    patch.local(end),
                    (max(2, round(reach * 0.3)), max(1, round(piece.width * 0.12))),
                    math.degrees(a),
                    0,
                    360,
                    ink,
                    -1,
                    _AA,
                )


def _leafy_under(
    kind: ProduceKind,
    design: ProduceDesign,
    piece: _Piece,
    patch: _Patch,
    img: FloatImage,
    mask: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> None:
    """What lies under a head of florets: broccoli's stalk, cauliflower's wrapper leaves."""
    if kind.form is not LeafyForm.FLORETS:
        return
    if kind.end is ProduceEnd.STEM:
        top = patch.local(_point(kind, piece, 0.35))
        foot = patch.local(_point(kind, piece, -0.12))
        thick = max(3, round(piece.width * 0.3))
        ink = tuple(float(c) for c in design.accent)
        for layer, colour in ((img, ink), (mask, (255.0,))):
            cv2.line(layer, top, foot, colour, thick, _AA)
    elif kind.end is ProduceEnd.FRONDS:
        for k in range(int(rng.integers(5, 8))):
            a = piece.angle + k * 2 * math.pi / 6 + rng.uniform(-0.3, 0.3)
            reach = piece.length * rng.uniform(0.42, 0.58)
            centre = (piece.cx + 0.6 * reach * math.cos(a), piece.cy + 0.6 * reach * math.sin(a))
            axes = (max(2, round(reach * 0.55)), max(2, round(piece.width * 0.2)))
            tone = tuple(float(c) * rng.uniform(0.8, 1.1) for c in design.accent)
            local = patch.local((round(centre[0]), round(centre[1])))
            for layer, ink in ((img, tone), (mask, (255.0,))):
                cv2.ellipse(layer, local, axes, math.degrees(a), 0, 360, ink, -1, _AA)
            rib_end = patch.local(
                (round(piece.cx + reach * math.cos(a)), round(piece.cy + reach * math.sin(a)))
            )
            cv2.line(
                img,
                patch.local((round(piece.cx), round(piece.cy))),
                rib_end,
                tuple(min(255.0, c * 1.6) for c in tone),
                1,
                _AA,
            )


def _leafy_detail(
    kind: ProduceKind,
    design: ProduceDesign,
    piece: _Piece,
    patch: _Patch,
    field: FloatImage,
    mask: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> None:
    """Veins and leaf edges of a head, florets of broccoli, midrib and veins of a leaf."""
    accent = tuple(float(c) for c in design.accent)
    thin = max(1, round(piece.width * 0.022))
    if kind.form is LeafyForm.HEAD:
        core = patch.local(_point(kind, piece, rng.uniform(0.35, 0.55), rng.uniform(-0.2, 0.2)))
        radius = piece.width * 0.55
        darker = tuple(float(c) * 0.62 for c in design.colour)
        for k in range(int(rng.integers(3, 6))):
            edge = round(radius * rng.uniform(0.3, 0.95))
            start = rng.uniform(0, 360)
            axes = (edge, round(edge * rng.uniform(0.8, 1.0)))
            cv2.ellipse(
                field,
                core,
                axes,
                rng.uniform(0, 180),
                start,
                start + rng.uniform(70, 160),
                darker,
                thin + (k % 2),
                _AA,
            )
        for k in range(int(rng.integers(7, 11))):
            a = rng.uniform(0, 2 * math.pi)
            r = radius * rng.uniform(0.6, 1.05)
            bend = rng.uniform(-0.25, 0.25)
            mid = (core[0] + 0.5 * r * math.cos(a + bend), core[1] + 0.5 * r * math.sin(a + bend))
            end = (core[0] + r * math.cos(a), core[1] + r * math.sin(a))
            pts = np.round(np.array([core, mid, end])).astype(np.int32)
            cv2.polylines(field, [pts], False, accent, thin + (1 if k % 3 == 0 else 0), _AA)
    elif kind.form is LeafyForm.FLORETS:
        field *= np.float32(0.55)
        ys, xs = np.nonzero(mask > 200)
        if len(ys) == 0:
            return
        size = max(2.0, piece.width * 0.11)
        count = int(len(ys) / (size * size * 1.6))
        picks = rng.integers(len(ys), size=count)
        order = picks[np.argsort(ys[picks])]
        base = np.asarray(design.colour, dtype=np.float64)
        for i in order:
            tone = tuple(float(c) for c in np.clip(base * rng.uniform(0.8, 1.2), 0, 255))
            x, y = int(xs[i]), int(ys[i])
            rr = round(size * rng.uniform(0.7, 1.15))
            cv2.circle(field, (x, y), rr, tuple(c * 0.6 for c in tone), -1, _AA)
            cv2.circle(field, (x - 1, y - 1), max(1, rr - 2), tone, -1, _AA)
            cv2.circle(
                field,
                (x - rr // 3, y - rr // 3),
                max(1, rr // 3),
                tuple(min(255.0, c * 1.3) for c in tone),
                -1,
                _AA,
            )
    else:
        stalk, apex = patch.local(_point(kind, piece, 0.02)), patch.local(_point(kind, piece, 0.95))
        cv2.line(field, stalk, apex, accent, max(2, round(piece.width * 0.05)), _AA)
        side = 1.0
        for t in np.linspace(0.15, 0.8, int(rng.integers(4, 7))):
            side = -side
            root = patch.local(_point(kind, piece, float(t)))
            tip = patch.local(_point(kind, piece, float(t) + 0.12, 0.75 * side))
            cv2.line(field, root, tip, accent, thin, _AA)


def _extent(
    kind: ProduceKind, piece: _Piece, outline: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], float]:
    """Points and a margin that together bound everything drawn for a piece.

    Fronds fan out of one end only, so they add points there rather than a
    wide margin all round: patch area is what a pile's drawing time goes on.
    """
    if kind.end is ProduceEnd.FRONDS and kind.form is None:
        base = _point(kind, piece, 0.02)
        fan = np.linspace(-0.6, 0.6, 5) + piece.angle + math.pi
        reach = 0.62 * piece.length
        tips = np.stack([base[0] + reach * np.cos(fan), base[1] + reach * np.sin(fan)], axis=-1)
        return np.concatenate([outline, tips]), 0.1 * piece.length + 4
    if kind.form is LeafyForm.FLORETS:
        return outline, 0.2 * piece.length + 4
    return outline, 0.15 * piece.length + 4


def _draw_piece(
    canvas: FloatImage,
    alpha: FloatImage,
    design: ProduceDesign,
    piece: _Piece,
    rng: np.random.Generator,
) -> None:
    """Draw one piece over what is already on the canvas, with a soft contact shadow."""
    kind = design.kind
    outline = _outline(kind, piece)
    points, margin = _extent(kind, piece, outline)
    patch = _patch(piece, points, margin, alpha.shape)
    if patch is None:
        return
    h, w = patch.u.shape
    body = np.zeros((h, w), dtype=np.uint8)
    local = np.round(outline - [patch.x0, patch.y0]).astype(np.int32)
    cv2.fillPoly(body, [local], 255, _AA)

    under = np.zeros((h, w, 3), dtype=np.float32)
    under_mask = np.zeros((h, w), dtype=np.uint8)
    _leafy_under(kind, design, piece, patch, under, under_mask, rng)

    field = _skin(kind, design, piece, patch, body, rng)
    if kind.form is not None:
        _leafy_detail(kind, design, piece, patch, field, body, rng)
    img = _shade(kind, piece, patch, field, body, flat=kind.form is LeafyForm.LEAVES)
    shaded_under = (
        _shade(kind, piece, patch, under, under_mask, flat=True) if under_mask.any() else under
    )
    # Over-composite the body on what lies under it, so anti-aliased rims stay clean.
    b = (body.astype(np.float32) / 255.0)[..., None]
    ub = (under_mask.astype(np.float32) / 255.0)[..., None] * (1.0 - b)
    img = (img * b + shaded_under * ub) / np.maximum(b + ub, 1e-6)
    mask = np.maximum(body, under_mask)
    _ends(kind, design, piece, patch, img, mask, rng)

    a = mask.astype(np.float32) / 255.0
    region = canvas[patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w]
    seen = alpha[patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w]
    shift = np.array([[1, 0, piece.width * 0.06], [0, 1, piece.width * 0.08]], dtype=np.float32)
    shadow = cv2.warpAffine(a, shift, (w, h))
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(1.0, piece.width * 0.05)) * seen
    region *= (1.0 - 0.45 * shadow)[..., None]
    region *= (1.0 - a)[..., None]
    region += a[..., None] * np.clip(img, 0, 255)
    np.maximum(seen, a, out=seen)


# --------------------------------------------------------------------------- piles


def _layout(design: ProduceDesign, rng: np.random.Generator) -> list[_Piece]:
    """Where the pieces of one pile lie, back to front.

    Long things (bananas, carrots, leaves) lie roughly side by side along one
    direction; round things heap in a spiral around the centre.
    """
    kind = design.kind
    lo, hi = kind.pieces
    n = int(rng.integers(lo, hi + 1))
    aligned = kind.shape is ProduceShape.ELONGATED
    heading = rng.uniform(0, 2 * math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    pieces: list[_Piece] = []
    for i in range(n):
        length = kind.length_px * design.scale * rng.uniform(0.9, 1.1)
        width = length / kind.aspect
        if aligned:
            angle = heading + rng.normal(0.0, 0.12)
            across = (i - (n - 1) / 2) * width * rng.uniform(0.6, 0.85)
            along = length * rng.uniform(-0.15, 0.15)
            cx = along * math.cos(heading) - across * math.sin(heading)
            cy = along * math.sin(heading) + across * math.cos(heading)
        else:
            angle = rng.uniform(0, 2 * math.pi)
            r = 0.5 * width * math.sqrt(i + rng.uniform(0.0, 0.6))
            theta = phase + i * _GOLDEN_ANGLE
            cx, cy = r * math.cos(theta), r * math.sin(theta)
        tint_b, tint_g, tint_r = (float(f) for f in rng.uniform(0.92, 1.08, 3))
        pieces.append(
            _Piece(
                cx=cx,
                cy=cy,
                angle=angle,
                length=length,
                width=width,
                phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 6)),
                tint=(tint_b, tint_g, tint_r),
            )
        )
    pieces.sort(key=lambda p: p.cy)
    return pieces


def render_pile(design: ProduceDesign, rng: np.random.Generator) -> PackImage:
    """One freshly piled heap of the SKU's pieces, cropped to its silhouette.

    Returns the same :class:`PackImage` a pack face is, so
    :func:`~cartos.synth.render.photograph` poses, lights and degrades it.
    """
    pieces = _layout(design, rng)
    reach = max(max(p.length, p.width) for p in pieces) * 1.2 + 8
    xs = [p.cx for p in pieces]
    ys = [p.cy for p in pieces]
    left, top = min(xs) - reach, min(ys) - reach
    w = math.ceil(max(xs) - left + reach)
    h = math.ceil(max(ys) - top + reach)
    canvas = np.zeros((h, w, 3), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    for p in pieces:
        moved = _Piece(p.cx - left, p.cy - top, p.angle, p.length, p.width, p.phases, p.tint)
        _draw_piece(canvas, alpha, design, moved, rng)
    rows = np.nonzero(alpha.max(axis=1) > 0.02)[0]
    cols = np.nonzero(alpha.max(axis=0) > 0.02)[0]
    y0, y1 = max(0, int(rows[0]) - 2), min(h, int(rows[-1]) + 3)
    x0, x1 = max(0, int(cols[0]) - 2), min(w, int(cols[-1]) + 3)
    bgr = np.clip(canvas[y0:y1, x0:x1], 0, 255).astype(np.uint8)
    cut = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    bgr.setflags(write=False)
    cut.setflags(write=False)
    return PackImage(bgr=bgr, alpha=cut)


def photograph_produce(
    design: ProduceDesign,
    pile_rng: np.random.Generator,
    shot_rng: np.random.Generator,
    style: ShotStyle,
) -> Image:
    """A camera crop of a fresh pile: piled by ``pile_rng``, photographed by ``shot_rng``.

    Two streams so the photograph step draws exactly what it draws for packs,
    whatever the pile consumed.
    """
    return photograph(render_pile(design, pile_rng), shot_rng, style)
