"""Draw a SKU's pack and "photograph" it the way a cart camera crop looks.

Two stages, because they change at different rates: the pack face is a pure
function of the design (render it once per SKU), while every photograph is a
fresh random draw of pose, light, blur, noise, background and the occasional
shopper's hand. Everything is OpenCV drawing on small arrays, a few
milliseconds per image, so unit tests can afford real images.

Images are BGR uint8, OpenCV's native order, as decoded by the runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from cartos.synth.design import Colour, Flavour, Fruit, Glyph, Layout, PackShape, SkuDesign

Image = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]

_FACE_SIZE: dict[PackShape, tuple[int, int]] = {
    PackShape.BOX: (176, 248),
    PackShape.CAN: (150, 250),
    PackShape.BOTTLE: (112, 256),
    PackShape.BAG: (190, 250),
    PackShape.TRAY: (280, 180),
}
"""(width, height) of each pack's front face; the aspect ratio is part of the look."""

_SKIN_TONES: tuple[Colour, ...] = (
    (170, 195, 235),
    (150, 180, 225),
    (120, 160, 210),
    (90, 130, 190),
    (60, 90, 140),
)
_DARK: Colour = (30, 30, 30)
_LIGHT: Colour = (250, 250, 250)
_AA = cv2.LINE_AA


@dataclass(frozen=True)
class PackImage:
    """A rendered front face and its silhouette (alpha in [0, 1])."""

    bgr: Image
    alpha: FloatImage


@dataclass(frozen=True)
class ShotStyle:
    """How hard a photograph is: the ranges each random draw comes from."""

    max_rotation_deg: float = 12.0
    perspective: float = 0.05
    """Largest corner displacement, as a fraction of the pack's width/height."""
    blur_sigma: tuple[float, float] = (0.0, 0.8)
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    gain: tuple[float, float] = (0.85, 1.15)
    colour_temperature: float = 0.08
    """Largest opposite shift of the blue and red channel gains."""
    occlusion_rate: float = 0.05
    glare_rate: float = 0.1
    margin: tuple[float, float] = (0.03, 0.1)
    """Crop margin around the item per side, as a fraction of the item's size."""
    crop_long_side: tuple[int, int] = (170, 250)


def reference_style(occlusion_rate: float) -> ShotStyle:
    """Enrolment shots: someone held the item up deliberately, so fewer hands in the way."""
    return ShotStyle(occlusion_rate=occlusion_rate / 3.0)


def query_style(occlusion_rate: float) -> ShotStyle:
    """In-basket shots: steeper angles, more blur and noise, hands, looser detector boxes."""
    return ShotStyle(
        max_rotation_deg=15.0,
        perspective=0.08,
        blur_sigma=(0.2, 1.1),
        noise_sigma=(1.5, 6.0),
        gain=(0.75, 1.2),
        colour_temperature=0.12,
        occlusion_rate=occlusion_rate,
        glare_rate=0.2,
        margin=(-0.02, 0.12),
        crop_long_side=(160, 260),
    )


# --------------------------------------------------------------------------- pack face


def _luma(colour: Colour) -> float:
    b, g, r = colour
    return 0.114 * b + 0.587 * g + 0.299 * r


def _contrast(background: Colour) -> Colour:
    return _DARK if _luma(background) > 140 else _LIGHT


def _scaled(colour: Colour, factor: float) -> Colour:
    b, g, r = colour
    return (
        min(255, round(b * factor)),
        min(255, round(g * factor)),
        min(255, round(r * factor)),
    )


def _pixel(img: Image, x: float, y: float) -> Colour:
    h, w = img.shape[:2]
    b, g, r = img[min(h - 1, max(0, int(y))), min(w - 1, max(0, int(x)))]
    return (int(b), int(g), int(r))


def _text(
    img: Image,
    text: str,
    centre: tuple[float, float],
    max_w: float,
    max_h: float,
    font: int,
    thickness: int,
    colour: Colour | None = None,
) -> None:
    """Centre ``text`` in a box, scaled to fit; contrast colour picked from what is under it."""
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = min(max_w / max(tw, 1), max_h / max(th, 1))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    x = round(centre[0] - tw / 2)
    y = round(centre[1] + th / 2)
    ink = colour if colour is not None else _contrast(_pixel(img, centre[0], centre[1]))
    cv2.putText(img, text, (x, y), font, scale, ink, thickness, _AA)


def _star_points(cx: float, cy: float, r: float, points: int = 5) -> npt.NDArray[np.int32]:
    pts = []
    for i in range(points * 2):
        radius = r if i % 2 == 0 else r * 0.45
        a = -math.pi / 2 + i * math.pi / points
        pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return np.round(np.array(pts)).astype(np.int32)


def _glyph(img: Image, glyph: Glyph, cx: float, cy: float, r: float, colour: Colour) -> None:
    """The brand's logo mark; shape is what identifies it, so it is drawn large and flat."""
    outline = _contrast(colour)
    c = (round(cx), round(cy))
    if glyph is Glyph.CIRCLE:
        cv2.circle(img, c, round(r), colour, -1, _AA)
        cv2.circle(img, c, round(r * 0.55), outline, max(1, round(r * 0.15)), _AA)
    elif glyph is Glyph.STAR:
        cv2.fillPoly(img, [_star_points(cx, cy, r)], colour, _AA)
    elif glyph is Glyph.STRIPES:
        for k in range(3):
            y = round(cy - r + k * r * 0.8)
            cv2.rectangle(img, (round(cx - r), y), (round(cx + r), round(y + r * 0.45)), colour, -1)
    elif glyph is Glyph.TRIANGLE:
        pts = np.array([[cx, cy - r], [cx + r, cy + r * 0.8], [cx - r, cy + r * 0.8]])
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, _AA)
    else:
        pts = np.array([[cx, cy - r], [cx + r * 0.8, cy], [cx, cy + r], [cx - r * 0.8, cy]])
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, _AA)
        cv2.circle(img, c, max(1, round(r * 0.25)), outline, -1, _AA)


def _layout_fields(img: Image, layout: Layout, primary: Colour, secondary: Colour) -> None:
    h, w = img.shape[:2]
    img[:] = primary
    if layout is Layout.BAND:
        cv2.rectangle(img, (0, round(0.17 * h)), (w, round(0.42 * h)), secondary, -1)
    elif layout is Layout.SPLIT:
        pts = [(0, round(0.5 * h))]
        pts += [
            (x, round(0.5 * h + 0.05 * h * math.sin(x / w * 2 * math.pi))) for x in range(0, w, 8)
        ]
        pts += [(w, round(0.5 * h)), (w, h), (0, h)]
        cv2.fillPoly(img, [np.array(pts, dtype=np.int32)], secondary, _AA)
    elif layout is Layout.DIAGONAL:
        wedge = [[0, round(0.75 * h)], [w, round(0.2 * h)], [w, h], [0, h]]
        cv2.fillPoly(img, [np.array(wedge, dtype=np.int32)], secondary, _AA)
    elif layout is Layout.FRAME:
        img[:] = secondary
        inset = max(4, round(0.09 * min(w, h)))
        cv2.rectangle(img, (inset, inset), (w - inset, h - inset), primary, -1)
    elif layout is Layout.BADGE:
        cv2.circle(img, (w // 2, round(0.33 * h)), round(0.42 * min(w, h)), secondary, -1, _AA)
    else:
        cv2.rectangle(img, (0, 0), (round(0.28 * w), h), secondary, -1)
        cv2.rectangle(img, (round(0.72 * w), 0), (w, h), secondary, -1)


def _motif(img: Image, sku: SkuDesign, rng: np.random.Generator) -> None:
    """The "product photo": line-specific shapes in the contents' colour plus flavour fruit.

    Positions come from the line's seed, so variants of a line share the
    picture and differ only in the fruit pictogram: near-duplicates by design.
    """
    h, w = img.shape[:2]
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.55, 0.62)
    base = sku.family.content_colour
    cv2.ellipse(
        img,
        (round(cx), round(cy)),
        (round(w * rng.uniform(0.28, 0.4)), round(h * rng.uniform(0.07, 0.11))),
        0,
        0,
        360,
        _scaled(base, 0.7),
        -1,
        _AA,
    )
    for _ in range(int(rng.integers(3, 7))):
        x = cx + w * rng.uniform(-0.3, 0.3)
        y = cy + h * rng.uniform(-0.09, 0.03)
        r = min(w, h) * rng.uniform(0.05, 0.1)
        cv2.circle(img, (round(x), round(y)), round(r), _scaled(base, rng.uniform(0.85, 1.2)), -1)
    for _ in range(int(rng.integers(2, 4))):
        x = cx + w * rng.uniform(-0.32, 0.32)
        y = cy - h * rng.uniform(0.02, 0.12)
        r = min(w, h) * rng.uniform(0.09, 0.13)
        angle = rng.uniform(0.0, 180.0)
        _fruit(img, sku.flavour, x, y, r, angle)


def _fruit(img: Image, flavour: Flavour, x: float, y: float, r: float, angle: float) -> None:
    """One flavour pictogram; draws no random numbers, so variants stay aligned."""
    colour = flavour.colour
    dark, light = _scaled(colour, 0.55), _scaled(colour, 1.5)
    if _luma(colour) < 50:
        dark, light = (90, 90, 90), (120, 120, 120)
    c = (round(x), round(y))
    ri = max(2, round(r))
    kind = flavour.fruit
    if kind is Fruit.BALL:
        cv2.circle(img, c, ri, colour, -1, _AA)
        cv2.circle(img, c, ri, dark, max(1, ri // 6), _AA)
        cv2.circle(img, (round(x - r * 0.35), round(y - r * 0.35)), max(1, ri // 4), light, -1)
    elif kind is Fruit.WEDGE:
        cv2.ellipse(img, c, (ri, ri), angle, 0, 180, light, -1, _AA)
        cv2.ellipse(img, c, (round(r * 0.8), round(r * 0.8)), angle, 0, 180, colour, -1, _AA)
        for k in range(1, 4):
            a = math.radians(angle + k * 45)
            tip = (round(x + r * 0.8 * math.cos(a)), round(y + r * 0.8 * math.sin(a)))
            cv2.line(img, c, tip, light, max(1, ri // 8), _AA)
    elif kind is Fruit.CLUSTER:
        for k in range(7):
            a = math.radians(angle + k * 51.4)
            dist = 0.0 if k == 0 else r * 0.55
            p = (round(x + dist * math.cos(a)), round(y + dist * math.sin(a)))
            cv2.circle(img, p, max(1, round(r * 0.38)), colour, -1, _AA)
            cv2.circle(img, p, max(1, round(r * 0.38)), dark, 1, _AA)
    elif kind is Fruit.LEAF:
        axes = (round(r * 1.3), max(1, round(r * 0.5)))
        cv2.ellipse(img, c, axes, angle, 0, 360, colour, -1, _AA)
        a = math.radians(angle)
        dx, dy = r * 1.2 * math.cos(a), r * 1.2 * math.sin(a)
        cv2.line(img, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)), dark, 1, _AA)
    elif kind is Fruit.POD:
        axes = (round(r * 1.4), max(1, round(r * 0.38)))
        cv2.ellipse(img, c, axes, angle, 0, 360, colour, -1, _AA)
        a = math.radians(angle)
        stem = (round(x + r * 1.4 * math.cos(a)), round(y + r * 1.4 * math.sin(a)))
        cv2.circle(img, stem, max(1, round(r * 0.25)), (40, 140, 40), -1, _AA)
    elif kind is Fruit.CHUNK:
        box = cv2.boxPoints(((x, y), (r * 1.6, r * 1.6), angle))
        pts = np.round(box).astype(np.int32)
        cv2.fillPoly(img, [pts], colour, _AA)
        cv2.polylines(img, [pts], True, dark, max(1, ri // 6), _AA)
        mid = np.round((box[0] + box[2]) / 2).astype(np.int32)
        for i in (0, 1):
            edge = np.round((box[i] + box[i + 1]) / 2).astype(np.int32)
            far = 2 * mid - edge
            cv2.line(img, (int(edge[0]), int(edge[1])), (int(far[0]), int(far[1])), dark, 1, _AA)
    elif kind is Fruit.RING:
        cv2.circle(img, c, ri, colour, max(2, round(r * 0.45)), _AA)
    else:
        for k in range(5):
            a = math.radians(angle + k * 72)
            p = (round(x + r * 0.6 * math.cos(a)), round(y + r * 0.6 * math.sin(a)))
            cv2.circle(img, p, max(1, round(r * 0.45)), colour, -1, _AA)
        cv2.circle(img, c, max(1, round(r * 0.3)), (40, 180, 240), -1, _AA)


def _label(sku: SkuDesign, w: int, h: int) -> Image:
    """The printed artwork: colour fields, logo, wordmark, picture, flavour band, size."""
    brand = sku.brand
    rng = np.random.default_rng(sku.motif_seed)
    primary, secondary = brand.palette[0], brand.palette[1]
    accent = brand.palette[2] if len(brand.palette) > 2 else _contrast(primary)
    img = np.empty((h, w, 3), dtype=np.uint8)
    _layout_fields(img, brand.layout, primary, secondary)
    _motif(img, sku, rng)
    # A flavour-coloured corner flash: variants must differ somewhere besides the band.
    leg = round(0.3 * min(w, h))
    corner = np.array([[w - leg, 0], [w, 0], [w, leg]], dtype=np.int32)
    cv2.fillPoly(img, [corner], sku.flavour.colour, _AA)

    title_y = 0.29 * h
    gr = 0.11 * min(w, h) if w < h else 0.13 * h
    gx = 0.17 * w if brand.index % 2 == 0 else 0.5 * w
    _glyph(img, brand.glyph, gx, 0.09 * h + gr * 0.4, gr, accent)
    wordmark = brand.name.upper() if brand.index % 3 == 0 else brand.name
    _text(img, wordmark, (0.5 * w, title_y), 0.84 * w, 0.1 * h, brand.font, 2)
    _text(img, sku.family.name.upper(), (0.5 * w, title_y + 0.085 * h), 0.5 * w, 0.035 * h, 0, 1)

    band_top = round(h * rng.uniform(0.68, 0.72))
    band_bottom = round(band_top + 0.17 * h)
    flavour = sku.flavour.colour
    cv2.rectangle(img, (0, band_top), (w, band_bottom), flavour, -1)
    cv2.rectangle(img, (0, band_top), (w, band_top + max(1, h // 80)), _scaled(flavour, 0.6), -1)
    ink = _contrast(flavour)
    band_mid = (band_top + band_bottom) / 2
    _text(img, sku.flavour.name, (0.5 * w, band_mid), 0.7 * w, 0.07 * h, 0, 2, ink)

    size = f"{sku.size_g}g"
    (tw, th), _ = cv2.getTextSize(size, 0, 1.0, 1)
    scale = 0.045 * h / th
    bw, bh = round(tw * scale) + 8, round(th * scale) + 8
    x1, y1 = w - 4, h - 4
    cv2.rectangle(img, (x1 - bw, y1 - bh), (x1, y1), _LIGHT, -1)
    cv2.putText(img, size, (x1 - bw + 4, y1 - 4), 0, scale, _DARK, 1, _AA)
    return img


def _cylinder_shade(img: Image, highlight: float = 0.3) -> Image:
    """Darken towards the edges and add a specular stripe: a flat label reads as round."""
    w = img.shape[1]
    x = (np.arange(w, dtype=np.float32) + 0.5) / w * 2.0 - 1.0
    shade = 0.55 + 0.45 * np.cos(x * 1.25)
    spec = 70.0 * np.exp(-(((x + 1.0 - 2.0 * highlight) / 0.12) ** 2))
    out = img.astype(np.float32) * shade[None, :, None] + spec[None, :, None]
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def _box(sku: SkuDesign, w: int, h: int) -> tuple[Image, FloatImage]:
    side = round(0.14 * w)
    face_w = w - side
    label = _label(sku, face_w, h)
    strip = cv2.resize(label[:, face_w - round(0.3 * face_w) :], (side, h))
    strip = (strip.astype(np.float32) * 0.62).astype(np.uint8)
    img = np.concatenate([label, strip], axis=1)
    cv2.line(img, (0, 5), (face_w, 5), _scaled(sku.brand.palette[0], 0.7), 1, _AA)
    cv2.line(img, (face_w, 0), (face_w, h), (20, 20, 20), 1, _AA)
    alpha = np.ones((h, w), dtype=np.float32)
    return img, alpha


def _can(sku: SkuDesign, w: int, h: int) -> tuple[Image, FloatImage]:
    rim = 12
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[rim : h - rim] = _label(sku, w, h - 2 * rim)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.rectangle(mask, (0, rim), (w - 1, h - rim), 255, -1)
    silver = (190, 192, 196)
    for cy in (rim, h - rim):
        cv2.ellipse(img, (w // 2, cy), (w // 2 - 1, rim - 1), 0, 0, 360, silver, -1, _AA)
        cv2.ellipse(mask, (w // 2, cy), (w // 2 - 1, rim - 1), 0, 0, 360, 255, -1, _AA)
    cv2.ellipse(img, (w // 2, rim), (w // 2 - 8, rim - 5), 0, 0, 360, (140, 142, 146), 2, _AA)
    img = _cylinder_shade(img)
    return img, mask.astype(np.float32) / 255.0


def _bottle(sku: SkuDesign, w: int, h: int) -> tuple[Image, FloatImage]:
    outline = [
        (0.34, 0.0), (0.66, 0.0), (0.66, 0.1), (0.62, 0.1), (0.62, 0.19),
        (0.8, 0.24), (0.93, 0.3), (0.97, 0.36), (0.97, 0.96), (0.9, 1.0),
        (0.1, 1.0), (0.03, 0.96), (0.03, 0.36), (0.07, 0.3), (0.2, 0.24),
        (0.38, 0.19), (0.38, 0.1), (0.34, 0.1),
    ]  # fmt: skip
    pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in outline], dtype=np.int32)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [pts], 255, _AA)
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = sku.family.content_colour
    cap_h = round(0.1 * h)
    img[: cap_h + 1] = sku.brand.palette[1]
    for y in range(2, cap_h, 4):
        cv2.line(img, (0, y), (w, y), _scaled(sku.brand.palette[1], 0.75), 1)
    top, bottom = round(0.37 * h), round(0.9 * h)
    img[top:bottom, round(0.03 * w) : round(0.97 * w) + 1] = _label(
        sku, round(0.97 * w) + 1 - round(0.03 * w), bottom - top
    )
    img = _cylinder_shade(img, highlight=0.25)
    return img, mask.astype(np.float32) / 255.0


def _bag(sku: SkuDesign, w: int, h: int) -> tuple[Image, FloatImage]:
    seal = 16
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[seal : h - seal] = _label(sku, w, h - 2 * seal)
    dark = _scaled(sku.brand.palette[0], 0.7)
    for y0 in (0, h - seal):
        img[y0 : y0 + seal] = dark
        for x in range(3, w, 6):
            cv2.line(img, (x, y0 + 2), (x, y0 + seal - 3), _scaled(dark, 1.35), 1)
    teeth = list(range(0, w + 1, 8))
    top = [(x, 0 if i % 2 else 5) for i, x in enumerate(teeth)]
    bottom = [(x, h - 1 if i % 2 else h - 6) for i, x in reversed(list(enumerate(teeth)))]
    ys = np.linspace(seal, h - seal, 12)
    right = [(round(w - 1 - 7 * math.sin(math.pi * (y - seal) / (h - 2 * seal))), y) for y in ys]
    left = [(round(7 * math.sin(math.pi * (y - seal) / (h - 2 * seal))), y) for y in ys[::-1]]
    outline = [*top, *[(x, round(y)) for x, y in right], *bottom, *[(x, round(y)) for x, y in left]]
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [np.array(outline, dtype=np.int32)], 255, _AA)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pillow = 1.08 - 0.3 * (((xx / w - 0.5) * 2) ** 2) - 0.12 * (((yy / h - 0.5) * 2) ** 4)
    sheen = 55.0 * np.exp(-(((xx / w - 0.7 + 0.3 * yy / h) / 0.06) ** 2))
    out = img.astype(np.float32) * pillow[..., None] + sheen[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), mask.astype(np.float32) / 255.0


def _tray(sku: SkuDesign, w: int, h: int) -> tuple[Image, FloatImage]:
    rng = np.random.default_rng(sku.motif_seed + 1)
    plastic = _scaled(sku.brand.palette[0], 0.5)
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = plastic
    inset = 10
    inner = img[inset : h - inset, inset : w - inset]
    base = sku.family.content_colour
    inner[:] = _scaled(base, 0.6)
    ih, iw = inner.shape[:2]
    for _ in range(40):
        x, y = int(rng.integers(iw)), int(rng.integers(ih))
        r = int(rng.integers(9, 17))
        tone = _scaled(base, float(rng.uniform(0.8, 1.25)))
        cv2.circle(inner, (x, y), r, tone, -1, _AA)
        cv2.circle(inner, (x - r // 3, y - r // 3), max(1, r // 4), _scaled(tone, 1.4), -1, _AA)
    film = np.full_like(img, 255)
    img = np.asarray(cv2.addWeighted(img, 0.85, film, 0.15, 0.0), dtype=np.uint8)
    lw, lh = round(0.6 * w), round(0.84 * h)
    x0, y0 = round(0.05 * w), round(0.08 * h)
    img[y0 : y0 + lh, x0 : x0 + lw] = _label(sku, lw, lh)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.rectangle(mask, (6, 6), (w - 7, h - 7), 255, -1)
    cv2.rectangle(mask, (6, 6), (w - 7, h - 7), 255, 12, _AA)
    return np.asarray(img, dtype=np.uint8), mask.astype(np.float32) / 255.0


_PACK_DRAWERS = {
    PackShape.BOX: _box,
    PackShape.CAN: _can,
    PackShape.BOTTLE: _bottle,
    PackShape.BAG: _bag,
    PackShape.TRAY: _tray,
}


def render_pack(sku: SkuDesign) -> PackImage:
    """The SKU's front face, unlit and undistorted; deterministic from the design alone."""
    w, h = _FACE_SIZE[sku.family.shape]
    img, alpha = _PACK_DRAWERS[sku.family.shape](sku, w, h)
    img.setflags(write=False)
    alpha.setflags(write=False)
    return PackImage(bgr=img, alpha=alpha)


# --------------------------------------------------------------------------- photograph


def _background(rng: np.random.Generator, h: int, w: int) -> FloatImage:
    """Basket mesh, a plain surface or clutter: what surrounds an item in a detector box."""
    kind = int(rng.integers(3))
    if kind == 0:
        plastic = rng.uniform(20, 200, size=3)
        img = np.empty((h, w, 3), dtype=np.float32)
        img[:] = plastic
        wire = tuple(float(c) for c in np.clip(plastic * 0.6 + rng.uniform(40, 90), 0, 255))
        pitch = float(rng.uniform(12, 24))
        thick = int(rng.integers(2, 4))
        angle = rng.uniform(0, math.pi / 2)
        span = int(math.hypot(w, h)) + 1
        cx, cy = w / 2, h / 2
        for direction in (angle, angle + math.pi / 2):
            dx, dy = math.cos(direction), math.sin(direction)
            for k in range(-int(span / pitch), int(span / pitch) + 1):
                ox, oy = cx - dy * k * pitch, cy + dx * k * pitch
                p1 = (round(ox - dx * span), round(oy - dy * span))
                p2 = (round(ox + dx * span), round(oy + dy * span))
                cv2.line(img, p1, p2, wire, thick, _AA)
        return img
    if kind == 1:
        img = np.empty((h, w, 3), dtype=np.float32)
        img[:] = rng.uniform(40, 220) + rng.uniform(-20, 20, size=3)
        return img
    grey = rng.uniform(40, 200, size=(6, 6, 1))
    coarse = (grey + rng.uniform(-25, 25, size=(6, 6, 3))).astype(np.float32)
    img = np.asarray(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.float32)
    for _ in range(int(rng.integers(0, 3))):
        x, y = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        size = (int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2)))
        colour = tuple(float(c) for c in rng.uniform(40, 200) + rng.uniform(-40, 40, size=3))
        cv2.rectangle(img, (x, y), (x + size[0], y + size[1]), colour, -1)
    return img


def _hand(
    img: FloatImage, rng: np.random.Generator, item_box: tuple[float, float, float, float]
) -> None:
    """A shopper's hand entering from an edge and covering part of the item."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = item_box
    size = math.sqrt((x1 - x0) * (y1 - y0))
    side = int(rng.integers(4))
    t = rng.uniform(0.2, 0.8)
    edge = [(x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0)), (x1, y0 + t * (y1 - y0))]
    edge.append((x0 + t * (x1 - x0), y0))
    ex, ey = edge[side]
    inward = math.atan2((y0 + y1) / 2 - ey, (x0 + x1) / 2 - ex)
    mask = np.zeros((h, w), dtype=np.uint8)
    palm = (round(ex), round(ey))
    axes = (round(size * rng.uniform(0.16, 0.24)), round(size * rng.uniform(0.12, 0.17)))
    cv2.ellipse(mask, palm, axes, math.degrees(inward), 0, 360, 255, -1, _AA)
    for k in range(int(rng.integers(2, 5))):
        a = inward + (k - 1.5) * 0.28 + rng.uniform(-0.08, 0.08)
        length = size * rng.uniform(0.14, 0.24)
        fx = ex + math.cos(a) * (axes[0] + length * 0.6)
        fy = ey + math.sin(a) * (axes[0] + length * 0.6)
        finger_axes = (round(length * 0.6), max(3, round(size * 0.045)))
        cv2.ellipse(mask, (round(fx), round(fy)), finger_axes, math.degrees(a), 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.2)[..., None]
    skin = np.asarray(_SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], dtype=np.float32)
    img *= 1.0 - alpha
    img += alpha * skin * rng.uniform(0.85, 1.05)


def _pose(
    pack: PackImage, rng: np.random.Generator, style: ShotStyle
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int, int]:
    """Source corners, destination quad and crop size for one perspective view."""
    ph, pw = pack.alpha.shape
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], dtype=np.float32)
    quad = src + rng.uniform(-style.perspective, style.perspective, (4, 2)) * [pw, ph]
    a = math.radians(rng.uniform(-style.max_rotation_deg, style.max_rotation_deg))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    quad = (quad - src.mean(axis=0)) @ rot.T
    ml, mt, mr, mb = rng.uniform(*style.margin, size=4)
    bw, bh = np.ptp(quad, axis=0)
    long_side = rng.uniform(*style.crop_long_side)
    scale = long_side / max(bw * (1 + ml + mr), bh * (1 + mt + mb))
    quad *= scale
    quad -= quad.min(axis=0) - [ml * bw * scale, mt * bh * scale]
    cw = max(48, math.ceil(bw * scale * (1 + ml + mr)))
    ch = max(48, math.ceil(bh * scale * (1 + mt + mb)))
    return src, quad.astype(np.float32), cw, ch


def photograph(pack: PackImage, rng: np.random.Generator, style: ShotStyle) -> Image:
    """One camera crop of the pack: pose, background, shadow, hand, light, blur, noise."""
    src, quad, cw, ch = _pose(pack, rng, style)
    warp = cv2.getPerspectiveTransform(src, quad)
    item = cv2.warpPerspective(pack.bgr, warp, (cw, ch), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(pack.alpha, warp, (cw, ch), flags=cv2.INTER_LINEAR)[..., None]

    img = _background(rng, ch, cw)
    shift = np.array([[1, 0, rng.uniform(2, 7)], [0, 1, rng.uniform(3, 9)]], dtype=np.float32)
    shadow = cv2.warpAffine(alpha[..., 0], shift, (cw, ch))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 4.0)[..., None]
    img *= 1.0 - 0.45 * shadow
    img *= 1.0 - alpha
    img += alpha * item.astype(np.float32)

    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    if rng.random() < style.occlusion_rate:
        _hand(img, rng, (float(x0), float(y0), float(x1), float(y1)))
    if rng.random() < style.glare_rate:
        glare = np.zeros((ch, cw), dtype=np.float32)
        gx, gy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        axes = (round(cw * rng.uniform(0.08, 0.2)), round(ch * rng.uniform(0.04, 0.1)))
        cv2.ellipse(glare, (round(gx), round(gy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        glare = np.asarray(cv2.GaussianBlur(glare, (0, 0), 5.0), dtype=np.float32)
        img += (rng.uniform(60, 140) * glare)[..., None]

    temp = rng.uniform(-style.colour_temperature, style.colour_temperature)
    gains = np.array([1 + temp, 1.0, 1 - temp], dtype=np.float32) * rng.uniform(*style.gain)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (np.arange(cw, dtype=np.float32)[None, :] - cw / 2) * math.cos(direction) / cw
    ramp = ramp + (np.arange(ch, dtype=np.float32)[:, None] - ch / 2) * math.sin(direction) / ch
    light = 1.0 + rng.uniform(0.0, 0.35) * ramp
    img *= gains
    img *= light[..., None]

    sigma = rng.uniform(*style.blur_sigma)
    if sigma > 0.3:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), sigma), dtype=np.float32)
    noise = rng.standard_normal((ch, cw, 3), dtype=np.float32)
    img += noise * np.float32(rng.uniform(*style.noise_sigma))
    return np.clip(img, 0, 255).astype(np.uint8)


def render_image(sku: SkuDesign, rng: np.random.Generator, style: ShotStyle) -> Image:
    """Render and photograph in one call; callers making many shots should reuse the pack."""
    return photograph(render_pack(sku), rng, style)
