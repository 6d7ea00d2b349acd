"""The design of a synthetic store catalogue: brands, product lines, SKUs.

A design is pure data and a pure function of ``(seed, slot)``: SKU number
``slot`` always gets the same brand, family, flavour, barcode and weight, no
matter how many other SKUs are generated. That is what lets a test grow a
catalogue and still compare the earlier SKUs byte for byte, and what lets the
demo say "syn-00007" in two runs and mean the same product.

Structure mirrors a real assortment so recognition meets realistic difficulty:

* a *brand* owns a palette, a layout, a logo glyph, a font and a wordmark, and
  consecutive brands never share a layout or glyph, so brands are easy to tell
  apart;
* a brand has two *product lines* in different *families* (category + pack
  shape);
* a line has ``variants_per_line`` *variants* (flavours) that share everything
  except a flavour band, a corner flash, the fruit pictogram and sometimes the
  size label: the near-duplicates a frozen embedding struggles with, and which
  the basket scale can sometimes settle.

Loose produce (fruit and vegetables sold by weight) is designed separately by
:func:`design_produce`: no brand, no barcode, no unit weight, just a kind of
produce whose look (outline, colour, skin, end detail) is all there is to
recognise it by. Produce slots are numbered on their own, so adding produce
never changes a packaged SKU.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from cartos.synth.errors import SynthError

Colour = tuple[int, int, int]
"""A BGR colour, the channel order OpenCV draws and encodes in."""

LINES_PER_BRAND = 2
NOVEL_SLOT_BASE = 90_000
"""Held-out (never catalogued) SKUs live at slots from here, ids ``syn-90001`` on.

Keeping them in their own region means a catalogue of any allowed size can
never contain them, and their designs do not depend on the catalogue size.
"""
MAX_CATALOGUE_SKUS = NOVEL_SLOT_BASE
MAX_NOVEL_SKUS = 9_999
_NOVEL_BRAND_BASE = 50_000
_NOVEL_LINE_BASE = 1_000_000

# Random-stream domains: every consumer of randomness gets its own stream, so
# adding a draw in one place never shifts the numbers another place sees.
DOMAIN_BRAND = 1
DOMAIN_LINE = 2
DOMAIN_POPULARITY = 3
DOMAIN_IMAGE = 4
DOMAIN_PALETTE = 5
DOMAIN_PRODUCE = 6
DOMAIN_PRODUCE_IMAGE = 7
DOMAIN_PRODUCE_POPULARITY = 8


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys``.

    SeedSequence mixes the whole key tuple, so (seed, slot, image) streams are
    independent of each other and of how many slots or images exist.
    """
    if seed < 0 or any(k < 0 for k in keys):
        raise SynthError(f"seed and stream keys must be non-negative, got {seed}, {keys}")
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


class PackShape(StrEnum):
    """The silhouette a family's products are sold in."""

    BOX = "box"
    CAN = "can"
    BOTTLE = "bottle"
    BAG = "bag"
    TRAY = "tray"


class Layout(StrEnum):
    """How a brand arranges its colour fields on the front face."""

    BAND = "band"
    SPLIT = "split"
    DIAGONAL = "diagonal"
    FRAME = "frame"
    BADGE = "badge"
    COLUMNS = "columns"


class Glyph(StrEnum):
    """The brand's logo mark, drawn next to the wordmark."""

    CIRCLE = "circle"
    STAR = "star"
    STRIPES = "stripes"
    TRIANGLE = "triangle"
    DIAMOND = "diamond"


FONTS: tuple[int, ...] = (0, 2, 3, 4)
"""OpenCV Hershey fonts used for wordmarks (simplex, duplex, complex, triplex)."""


@dataclass(frozen=True)
class Brand:
    """A manufacturer's visual identity."""

    index: int
    name: str
    palette: tuple[Colour, ...]
    layout: Layout
    glyph: Glyph
    font: int
    gs1_prefix: str
    company_code: str


@dataclass(frozen=True)
class Family:
    """A product category and the pack it comes in."""

    name: str
    shape: PackShape
    sizes_g: tuple[int, ...]
    tare_g: int
    content_colour: Colour
    """What shows through a bottle or a tray lid (juice, berries, ...)."""


class Fruit(StrEnum):
    """The pictogram a flavour is illustrated with on the pack."""

    BALL = "ball"
    WEDGE = "wedge"
    CLUSTER = "cluster"
    LEAF = "leaf"
    POD = "pod"
    CHUNK = "chunk"
    RING = "ring"
    FLOWER = "flower"


@dataclass(frozen=True)
class Flavour:
    """A variant's flavour: the band colour and the fruit pictogram that illustrate it.

    Shape as well as colour differs between flavours, as on real packs, so
    variants are near-duplicates rather than recolourings.
    """

    name: str
    colour: Colour
    fruit: Fruit


def _bgr(r: int, g: int, b: int) -> Colour:
    return (b, g, r)


FAMILIES: tuple[Family, ...] = (
    Family("Cereal", PackShape.BOX, (375, 500, 750), 30, _bgr(215, 170, 90)),
    Family("Crackers", PackShape.BOX, (200, 250, 300), 15, _bgr(225, 185, 120)),
    Family("Tea", PackShape.BOX, (75, 100, 150), 12, _bgr(120, 150, 60)),
    Family("Cola", PackShape.CAN, (330, 500), 15, _bgr(60, 30, 20)),
    Family("Soup", PackShape.CAN, (400, 800), 60, _bgr(200, 80, 40)),
    Family("Beans", PackShape.CAN, (400, 420), 55, _bgr(190, 110, 60)),
    Family("Juice", PackShape.BOTTLE, (500, 750, 1000), 40, _bgr(250, 160, 30)),
    Family("Ketchup", PackShape.BOTTLE, (500, 750), 35, _bgr(180, 20, 20)),
    Family("Oil", PackShape.BOTTLE, (500, 750, 1000), 60, _bgr(220, 200, 60)),
    Family("Water", PackShape.BOTTLE, (500, 1500), 30, _bgr(200, 225, 240)),
    Family("Crisps", PackShape.BAG, (150, 175, 200), 6, _bgr(235, 200, 90)),
    Family("Coffee", PackShape.BAG, (250, 500), 12, _bgr(90, 55, 30)),
    Family("Pasta", PackShape.BAG, (500, 1000), 6, _bgr(240, 215, 140)),
    Family("Cookies", PackShape.TRAY, (200, 300), 15, _bgr(170, 110, 50)),
    Family("Berries", PackShape.TRAY, (250, 500), 20, _bgr(90, 30, 80)),
    Family("Cheese", PackShape.TRAY, (200, 400), 10, _bgr(250, 215, 80)),
)

FLAVOURS: tuple[Flavour, ...] = (
    Flavour("Original", _bgr(205, 30, 40), Fruit.BALL),
    Flavour("Lemon", _bgr(250, 225, 40), Fruit.WEDGE),
    Flavour("Berry", _bgr(130, 30, 140), Fruit.CLUSTER),
    Flavour("Mint", _bgr(60, 205, 150), Fruit.LEAF),
    Flavour("Spicy", _bgr(240, 95, 20), Fruit.POD),
    Flavour("Cocoa", _bgr(95, 55, 30), Fruit.CHUNK),
    Flavour("Light", _bgr(120, 190, 245), Fruit.RING),
    Flavour("Organic", _bgr(90, 170, 40), Fruit.LEAF),
    Flavour("Zero", _bgr(25, 25, 30), Fruit.RING),
    Flavour("Vanilla", _bgr(245, 235, 195), Fruit.FLOWER),
)
MAX_VARIANTS_PER_LINE = len(FLAVOURS)

_SYLLABLES_1 = (
    "Ka", "Lo", "Mi", "Ve", "Zu", "Bra", "Ori", "Sol", "Nu", "Pe",
    "Ta", "Gri", "Fen", "Du", "Ro", "Cle", "Ha", "Jo", "Qui", "Sa",
)  # fmt: skip
_SYLLABLES_2 = (
    "ra", "mo", "li", "ven", "ta", "xo", "del", "nor",
    "pi", "lu", "sto", "ber", "vi", "ko", "san", "me",
)  # fmt: skip
_ENDINGS = ("", "a", "o", "ix", "en", "ia", "ly", "co", "s", "er")
_NAME_SPACE = len(_SYLLABLES_1) * len(_SYLLABLES_2) * len(_ENDINGS)
_GS1_PREFIXES = ("40", "41", "42", "43", "50", "54", "57", "73", "76", "80", "87", "90")
_PRIMARIES: tuple[Colour, ...] = (
    _bgr(200, 30, 35),  # red
    _bgr(30, 80, 190),  # blue
    _bgr(250, 205, 25),  # yellow
    _bgr(35, 140, 60),  # green
    _bgr(240, 120, 20),  # orange
    _bgr(115, 45, 145),  # purple
    _bgr(30, 30, 35),  # black
    _bgr(238, 238, 232),  # white
    _bgr(0, 150, 150),  # teal
    _bgr(230, 90, 150),  # pink
    _bgr(125, 75, 40),  # brown
    _bgr(95, 175, 230),  # sky
)
_SECONDARIES: tuple[Colour, ...] = (
    _bgr(250, 250, 245),  # white
    _bgr(25, 25, 28),  # black
    _bgr(225, 180, 40),  # gold
    _bgr(210, 35, 40),  # red
    _bgr(25, 40, 95),  # navy
    _bgr(245, 230, 190),  # cream
    _bgr(60, 170, 70),  # green
    _bgr(170, 175, 180),  # silver
)
_ACCENTS: tuple[Colour, ...] = (
    _bgr(255, 215, 0),  # gold
    _bgr(230, 30, 50),  # red
    _bgr(0, 170, 230),  # cyan
    _bgr(250, 250, 250),  # white
    _bgr(20, 20, 20),  # black
    _bgr(120, 220, 60),  # lime
    _bgr(240, 100, 200),  # magenta
)


@dataclass(frozen=True)
class SkuDesign:
    """Everything needed to render, name and weigh one SKU."""

    sku_id: str
    slot: int
    brand: Brand
    family: Family
    line: int
    variant: int
    flavour: Flavour
    size_g: int
    weight_g: int
    """Gross weight the basket scale sees: net contents plus packaging."""
    weight_tol_g: int
    barcode: str
    name: str
    motif_seed: int
    """Seeds the line's pictorial motif, so all variants of a line share it."""

    @property
    def line_key(self) -> tuple[int, int]:
        """(brand index, line): equal for near-duplicate variants of one line."""
        return (self.brand.index, self.line)


def ean13_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for a 12-digit body."""
    if len(body) != 12 or not body.isdigit():
        raise SynthError(f"EAN-13 body must be 12 digits, got {body!r}")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return (10 - total % 10) % 10


def is_valid_ean13(code: str) -> bool:
    """True for a 13-digit string whose last digit is the correct check digit."""
    return len(code) == 13 and code.isdigit() and ean13_check_digit(code[:12]) == int(code[12])


def weight_tolerance_g(weight_g: int) -> int:
    """How far a correct item may read off nominal: 3 %, never under 5 g.

    Five grams floors the tolerance at what a cart load cell resolves; three
    per cent covers fill variation allowed for packaged goods.
    """
    return max(5, round(0.03 * weight_g))


def _hsv_colour(h: float, s: float, v: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return _bgr(round(r * 255), round(g * 255), round(b * 255))


def _brand_name(seed: int, index: int) -> str:
    """A pronounceable wordmark, unique for the first few thousand brands.

    An affine map with a multiplier coprime to the name space is a bijection,
    so distinct brand indices below the space size get distinct names.
    """
    offset = int(derive_rng(seed, DOMAIN_BRAND).integers(_NAME_SPACE))
    code = (index * 1103 + offset) % _NAME_SPACE
    code, end = divmod(code, len(_ENDINGS))
    first, second = divmod(code, len(_SYLLABLES_2))
    return _SYLLABLES_1[first] + _SYLLABLES_2[second] + _ENDINGS[end]


def _distance(a: Colour, b: Colour) -> float:
    return math.dist(a, b)


def _jitter(colour: Colour, rng: np.random.Generator, amount: float) -> Colour:
    b, g, r = colour
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    h += rng.uniform(-amount, amount)
    s *= rng.uniform(1 - 2 * amount, 1 + amount)
    v *= rng.uniform(1 - 2 * amount, 1 + amount)
    return _hsv_colour(h, s, v)


def _pick_distinct(
    rng: np.random.Generator, candidates: Sequence[Colour], avoid: Sequence[Colour]
) -> Colour:
    """A candidate far (in RGB) from every colour in ``avoid``, so fields stay legible."""
    order = rng.permutation(len(candidates))
    for threshold in (140.0, 100.0, 0.0):
        for i in order:
            colour = candidates[int(i)]
            if all(_distance(colour, other) >= threshold for other in avoid):
                return colour
    raise AssertionError("unreachable: threshold 0 accepts any candidate")


def _brand_palette(seed: int, index: int) -> tuple[Colour, ...]:
    """Primary, secondary and (usually) accent colours for one brand.

    Primaries come from a curated set of clearly different brand colours
    (black and white included, as on real shelves), dealt out as a shuffled
    deck: any run of brands within one deck never repeats a primary. Later
    decks are jittered so they are not exact repeats.
    """
    deck, card = divmod(index, len(_PRIMARIES))
    order = derive_rng(seed, DOMAIN_PALETTE, deck).permutation(len(_PRIMARIES))
    rng = derive_rng(seed, DOMAIN_PALETTE, index, 1)
    primary = _jitter(_PRIMARIES[int(order[card])], rng, 0.02 if deck == 0 else 0.05)
    secondary = _pick_distinct(rng, _SECONDARIES, [primary])
    if rng.random() < 0.25:
        return (primary, secondary)
    return (primary, secondary, _pick_distinct(rng, _ACCENTS, [primary, secondary]))


def make_brand(seed: int, index: int) -> Brand:
    """The brand with number ``index``; layout and glyph cycle so neighbours differ."""
    rng = derive_rng(seed, DOMAIN_BRAND, index)
    layouts = tuple(Layout)
    glyphs = tuple(Glyph)
    return Brand(
        index=index,
        name=_brand_name(seed, index),
        palette=_brand_palette(seed, index),
        layout=layouts[index % len(layouts)],
        glyph=glyphs[(index * 2 + index // len(glyphs)) % len(glyphs)],
        font=FONTS[index % len(FONTS)],
        gs1_prefix=_GS1_PREFIXES[int(rng.integers(len(_GS1_PREFIXES)))],
        company_code=f"{(index * 7919 + 4099) % 100_000:05d}",
    )


def _line_family(seed: int, line: int) -> Family:
    """The family of a product line; pack shapes rotate so every catalogue mixes them.

    Consecutive lines (the two lines of one brand among them) always get
    different shapes, and any five consecutive lines cover all five.
    """
    shapes = tuple(PackShape)
    offset = int(derive_rng(seed, DOMAIN_LINE).integers(len(shapes)))
    shape = shapes[(line + offset) % len(shapes)]
    candidates = [f for f in FAMILIES if f.shape is shape]
    pick = derive_rng(seed, DOMAIN_LINE, line, 1).integers(len(candidates))
    return candidates[int(pick)]


def _locate(slot: int, variants_per_line: int) -> tuple[int, int, int, int]:
    """Map a slot to (brand index, line, line number within brand, variant)."""
    if slot >= NOVEL_SLOT_BASE:
        k = slot - NOVEL_SLOT_BASE
        return (_NOVEL_BRAND_BASE + k, _NOVEL_LINE_BASE + k, 0, 0)
    line, variant = divmod(slot, variants_per_line)
    return (line // LINES_PER_BRAND, line, line % LINES_PER_BRAND, variant)


def design_sku(seed: int, slot: int, variants_per_line: int) -> SkuDesign:
    """The SKU at ``slot``: a pure function of its arguments."""
    if not 1 <= variants_per_line <= MAX_VARIANTS_PER_LINE:
        raise SynthError(
            f"variants_per_line must be between 1 and {MAX_VARIANTS_PER_LINE}, "
            f"got {variants_per_line}"
        )
    if not 0 <= slot < NOVEL_SLOT_BASE + MAX_NOVEL_SKUS:
        raise SynthError(f"SKU slot {slot} is out of range")
    brand_index, line, line_in_brand, variant = _locate(slot, variants_per_line)
    brand = make_brand(seed, brand_index)
    family = _line_family(seed, line)

    line_rng = derive_rng(seed, DOMAIN_LINE, line)
    flavour_order = line_rng.permutation(len(FLAVOURS))
    base_size = int(line_rng.choice(family.sizes_g))
    size_draws = line_rng.random(MAX_VARIANTS_PER_LINE)
    other_sizes = line_rng.integers(len(family.sizes_g), size=MAX_VARIANTS_PER_LINE)
    motif_seed = int(line_rng.integers(2**31))

    flavour = FLAVOURS[int(flavour_order[variant])]
    size_g = base_size
    if variant > 0 and size_draws[variant] < 0.35:
        size_g = family.sizes_g[int(other_sizes[variant])]
    weight_g = size_g + family.tare_g

    item_ref = (line_in_brand * 100 + variant + 37 * brand_index) % 100_000
    body = f"{brand.gs1_prefix}{brand.company_code}{item_ref:05d}"
    barcode = body + str(ean13_check_digit(body))
    return SkuDesign(
        sku_id=f"syn-{slot + 1:05d}",
        slot=slot,
        brand=brand,
        family=family,
        line=line,
        variant=variant,
        flavour=flavour,
        size_g=size_g,
        weight_g=weight_g,
        weight_tol_g=weight_tolerance_g(weight_g),
        barcode=barcode,
        name=f"{brand.name} {family.name} {flavour.name} {size_g}g",
        motif_seed=motif_seed,
    )


def catalogue_designs(seed: int, n_skus: int, variants_per_line: int) -> list[SkuDesign]:
    """The first ``n_skus`` SKUs of the assortment (slots 0..n_skus-1)."""
    if not 1 <= n_skus <= MAX_CATALOGUE_SKUS:
        raise SynthError(f"n_skus must be between 1 and {MAX_CATALOGUE_SKUS}, got {n_skus}")
    return [design_sku(seed, slot, variants_per_line) for slot in range(n_skus)]


def novel_designs(seed: int, n_new: int) -> list[SkuDesign]:
    """Held-out SKUs, each of a brand the catalogue never contains.

    New brands rather than new flavours of known lines: the open-set question
    "is this in the catalogue at all?" should have a clear right answer in the
    demo; flavour near-duplicates are already covered inside the catalogue.
    """
    if not 0 <= n_new <= MAX_NOVEL_SKUS:
        raise SynthError(f"n_new must be between 0 and {MAX_NOVEL_SKUS}, got {n_new}")
    # Every novel SKU is a one-variant line of its own brand, so the line size is moot.
    return [design_sku(seed, NOVEL_SLOT_BASE + k, 1) for k in range(n_new)]


class HasSlot(Protocol):
    """Anything with a stable slot number: packaged SKU designs and produce designs."""

    @property
    def slot(self) -> int: ...


def reference_counts(
    seed: int,
    skus: Sequence[HasSlot],
    refs_per_sku: int,
    long_tail_ratio: float,
    domain: int = DOMAIN_POPULARITY,
) -> list[int]:
    """How many reference images each SKU gets, head-heavy when asked.

    Real enrolment data is long-tailed: best sellers are photographed often,
    slow movers a couple of times. The most popular SKU gets ``refs_per_sku``,
    the least popular ``refs_per_sku / long_tail_ratio`` (at least one), with
    a geometric fall-off in between. Popularity is a per-SKU random draw, so
    the head is not simply the first lines. With a ratio of 1 every SKU gets
    ``refs_per_sku`` and counts do not depend on the catalogue size.

    ``domain`` picks the popularity stream: produce ranks among produce on a
    stream of its own, so adding produce never changes a packaged SKU's count.
    """
    if refs_per_sku < 1:
        raise SynthError(f"refs_per_sku must be at least 1, got {refs_per_sku}")
    if not math.isfinite(long_tail_ratio) or long_tail_ratio < 1.0:
        raise SynthError(f"long_tail_ratio must be a finite number >= 1, got {long_tail_ratio}")
    n = len(skus)
    if long_tail_ratio == 1.0 or n <= 1:
        return [refs_per_sku] * n
    popularity = [float(derive_rng(seed, domain, s.slot).random()) for s in skus]
    order = sorted(range(n), key=lambda i: (-popularity[i], skus[i].slot))
    counts = [0] * n
    for rank, i in enumerate(order):
        fraction = rank / (n - 1)
        counts[i] = max(1, round(refs_per_sku * long_tail_ratio ** (-fraction)))
    return counts


# --------------------------------------------------------------------------- loose produce

PRODUCE_FAMILY = "produce"
"""Family name of every produce SKU; the runtime treats it as sold by weight."""
MAX_PRODUCE_SKUS = 50
PRODUCE_SKU_PREFIX = "P"
"""Produce ids are ``P0001`` on: never equal to a packaged ``syn-NNNNN`` id."""


class ProduceShape(StrEnum):
    """The silhouette family a piece of produce is drawn from."""

    ROUND = "round"
    OVAL = "oval"
    ELONGATED = "elongated"
    LEAFY = "leafy"


class LeafyForm(StrEnum):
    """How a leafy vegetable is built up: a head of leaves, florets, or loose leaves."""

    HEAD = "head"
    FLORETS = "florets"
    LEAVES = "leaves"


class ProduceEnd(StrEnum):
    """The detail at a piece's ends that people (and CNNs) recognise produce by."""

    NONE = "none"
    STEM = "stem"
    """A short woody stalk (apples, pears, courgettes); the thick stalk under broccoli."""
    CALYX = "calyx"
    """A green star of sepals (tomatoes, aubergines)."""
    FRONDS = "fronds"
    """Green leafy tops out of the wide end (carrots, beetroot); cauliflower's wrapper leaves."""
    TIPS = "tips"
    """Dark ends (bananas)."""
    NAVEL = "navel"
    """A small dark dot (citrus)."""


@dataclass(frozen=True)
class ProduceKind:
    """One kind of fruit or vegetable: the parameters its pieces are drawn from.

    Outline parameters describe one piece along its spine (length along the
    spine, width across it); surface parameters say how its skin reads. Kinds
    of one shape still differ in colour, proportions, skin and end detail,
    which is what a generic image embedding keys on.
    """

    name: str
    shape: ProduceShape
    colour: Colour
    accent: Colour
    """Second skin colour: blush, speckles, stripes, veins or tips."""
    pieces: tuple[int, int]
    """Inclusive range of pieces in one pile."""
    length_px: int
    """Nominal length of one piece on the unposed canvas."""
    aspect: float
    """Length over width of one piece."""
    bend: float = 0.0
    """Spine curvature (bananas); the middle bulges by ``bend * length / 2``."""
    taper: float = 0.0
    """How much the far end narrows (carrots come to a point at 1)."""
    tip: float = 0.0
    """Pointed ends (lemons): 0 is a rounded end."""
    boxy: float = 0.0
    """Blunt, parallel-sided pieces (cucumbers): 0 is an ellipse."""
    lump: float = 0.03
    """Low-frequency outline irregularity, as a fraction of the width."""
    wavy: float = 0.0
    """High-frequency frilly edge (kale)."""
    gloss: float = 0.3
    speckle: float = 0.0
    """Dots per 100 square pixels of skin, in the accent colour."""
    stripes: int = 0
    """Stripes along the spine when positive, rings across it when negative."""
    blush: float = 0.0
    """Share of the skin washed in the accent colour."""
    grain: float = 0.1
    """Fine surface noise: fuzz, pores, wrinkles."""
    end: ProduceEnd = ProduceEnd.NONE
    form: LeafyForm | None = None
    """Leafy vegetables only: how the head is built."""


PRODUCE_KINDS: tuple[ProduceKind, ...] = (
    # Round: whole fruit seen from any side.
    ProduceKind("red apples", ProduceShape.ROUND, _bgr(190, 25, 35), _bgr(235, 190, 70),
                (3, 7), 74, 1.05, lump=0.04, gloss=0.8, speckle=0.5, blush=0.3,
                grain=0.05, end=ProduceEnd.STEM),
    ProduceKind("green apples", ProduceShape.ROUND, _bgr(150, 205, 70), _bgr(225, 235, 140),
                (3, 7), 72, 1.05, lump=0.04, gloss=0.6, speckle=0.8, grain=0.05,
                end=ProduceEnd.STEM),
    ProduceKind("oranges", ProduceShape.ROUND, _bgr(250, 140, 15), _bgr(205, 95, 5),
                (3, 7), 80, 1.0, lump=0.02, gloss=0.3, speckle=5.0, grain=0.3,
                end=ProduceEnd.NAVEL),
    ProduceKind("tomatoes", ProduceShape.ROUND, _bgr(225, 35, 20), _bgr(245, 110, 60),
                (4, 7), 60, 0.9, lump=0.08, gloss=1.0, grain=0.03, end=ProduceEnd.CALYX),
    ProduceKind("red onions", ProduceShape.ROUND, _bgr(125, 35, 80), _bgr(200, 130, 170),
                (3, 6), 78, 1.0, tip=0.6, lump=0.04, gloss=0.25, stripes=7, grain=0.1,
                end=ProduceEnd.STEM),
    ProduceKind("peaches", ProduceShape.ROUND, _bgr(250, 175, 105), _bgr(215, 50, 45),
                (3, 6), 76, 1.0, lump=0.05, gloss=0.05, blush=0.55, grain=0.35),
    ProduceKind("beetroot", ProduceShape.ROUND, _bgr(105, 20, 45), _bgr(70, 10, 30),
                (3, 6), 68, 0.95, taper=0.35, tip=0.5, lump=0.06, gloss=0.1, grain=0.4,
                end=ProduceEnd.FRONDS),
    # Oval: citrus, tubers, stone fruit.
    ProduceKind("lemons", ProduceShape.OVAL, _bgr(250, 225, 40), _bgr(225, 195, 20),
                (3, 7), 84, 1.35, tip=1.2, lump=0.02, gloss=0.4, speckle=4.0, grain=0.25),
    ProduceKind("limes", ProduceShape.OVAL, _bgr(95, 175, 35), _bgr(160, 210, 90),
                (4, 7), 62, 1.18, tip=0.4, gloss=0.5, speckle=3.0, grain=0.2,
                end=ProduceEnd.NAVEL),
    ProduceKind("potatoes", ProduceShape.OVAL, _bgr(200, 165, 105), _bgr(120, 85, 45),
                (4, 7), 82, 1.45, lump=0.12, gloss=0.0, speckle=0.7, grain=0.45),
    ProduceKind("kiwis", ProduceShape.OVAL, _bgr(135, 100, 55), _bgr(95, 70, 35),
                (4, 7), 70, 1.3, lump=0.03, gloss=0.0, speckle=6.0, grain=0.6),
    ProduceKind("avocados", ProduceShape.OVAL, _bgr(45, 70, 30), _bgr(90, 110, 45),
                (3, 6), 92, 1.45, taper=0.4, lump=0.05, gloss=0.2, speckle=3.5, grain=0.5,
                end=ProduceEnd.STEM),
    ProduceKind("plums", ProduceShape.OVAL, _bgr(105, 30, 75), _bgr(150, 120, 170),
                (4, 7), 56, 1.15, lump=0.03, gloss=0.35, stripes=1, grain=0.15,
                end=ProduceEnd.STEM),
    ProduceKind("pears", ProduceShape.OVAL, _bgr(195, 200, 75), _bgr(150, 110, 50),
                (3, 6), 100, 1.65, taper=0.55, lump=0.04, gloss=0.2, speckle=1.5,
                blush=0.15, grain=0.1, end=ProduceEnd.STEM),
    # Elongated: roughly aligned in a pile, like a hand of bananas.
    ProduceKind("bananas", ProduceShape.ELONGATED, _bgr(245, 210, 45), _bgr(90, 65, 25),
                (3, 6), 190, 4.6, bend=0.28, tip=0.3, boxy=0.6, lump=0.0, gloss=0.2,
                speckle=0.15, grain=0.05, end=ProduceEnd.TIPS),
    ProduceKind("carrots", ProduceShape.ELONGATED, _bgr(245, 120, 15), _bgr(200, 85, 10),
                (3, 7), 170, 6.0, taper=0.9, lump=0.02, gloss=0.15, stripes=-9, grain=0.1,
                end=ProduceEnd.FRONDS),
    ProduceKind("cucumbers", ProduceShape.ELONGATED, _bgr(35, 100, 35), _bgr(120, 170, 80),
                (2, 5), 220, 5.0, boxy=1.5, lump=0.02, gloss=0.5, speckle=1.0, stripes=4,
                grain=0.1),
    ProduceKind("courgettes", ProduceShape.ELONGATED, _bgr(55, 120, 40), _bgr(175, 205, 120),
                (3, 5), 190, 4.4, taper=-0.3, boxy=0.8, lump=0.02, gloss=0.45, stripes=9,
                grain=0.08, end=ProduceEnd.STEM),
    ProduceKind("aubergines", ProduceShape.ELONGATED, _bgr(60, 20, 60), _bgr(120, 70, 130),
                (2, 4), 180, 2.4, taper=0.35, lump=0.03, gloss=1.0, grain=0.03,
                end=ProduceEnd.CALYX),
    ProduceKind("parsnips", ProduceShape.ELONGATED, _bgr(235, 222, 185), _bgr(170, 140, 90),
                (3, 6), 175, 4.5, taper=0.95, lump=0.05, gloss=0.05, stripes=-12, grain=0.3,
                end=ProduceEnd.STEM),
    ProduceKind("sweet potatoes", ProduceShape.ELONGATED, _bgr(165, 75, 55), _bgr(120, 50, 35),
                (3, 5), 150, 2.6, bend=0.08, tip=0.9, lump=0.1, gloss=0.05, speckle=0.6,
                grain=0.45),
    # Leafy: heads, florets and loose leaves.
    ProduceKind("iceberg lettuce", ProduceShape.LEAFY, _bgr(175, 215, 120),
                _bgr(225, 240, 190), (1, 3), 170, 1.05, lump=0.06, gloss=0.15, grain=0.15,
                form=LeafyForm.HEAD),
    ProduceKind("savoy cabbage", ProduceShape.LEAFY, _bgr(85, 145, 65), _bgr(175, 210, 140),
                (1, 3), 170, 1.05, lump=0.07, gloss=0.0, grain=0.8, form=LeafyForm.HEAD),
    ProduceKind("red cabbage", ProduceShape.LEAFY, _bgr(105, 40, 100), _bgr(200, 170, 210),
                (1, 3), 160, 1.0, lump=0.05, gloss=0.3, grain=0.1, form=LeafyForm.HEAD),
    ProduceKind("broccoli", ProduceShape.LEAFY, _bgr(35, 100, 40), _bgr(150, 190, 110),
                (1, 3), 150, 1.1, lump=0.08, gloss=0.0, grain=0.3, end=ProduceEnd.STEM,
                form=LeafyForm.FLORETS),
    ProduceKind("cauliflower", ProduceShape.LEAFY, _bgr(240, 232, 205), _bgr(70, 130, 55),
                (1, 2), 170, 1.05, lump=0.06, gloss=0.0, grain=0.3, end=ProduceEnd.FRONDS,
                form=LeafyForm.FLORETS),
    ProduceKind("spinach", ProduceShape.LEAFY, _bgr(40, 105, 35), _bgr(130, 180, 100),
                (5, 8), 110, 1.8, tip=0.8, lump=0.06, gloss=0.5, grain=0.05,
                form=LeafyForm.LEAVES),
    ProduceKind("kale", ProduceShape.LEAFY, _bgr(45, 80, 60), _bgr(140, 165, 140),
                (4, 7), 150, 2.3, tip=0.6, lump=0.05, wavy=0.12, gloss=0.1, grain=0.4,
                form=LeafyForm.LEAVES),
)  # fmt: skip


@dataclass(frozen=True)
class ProduceDesign:
    """A loose-produce SKU: sold by weight, no barcode, no brand, no unit weight.

    ``colour``, ``accent`` and ``scale`` are the kind's values jittered per
    SKU, so two SKUs of one kind (conventional and organic) are near-duplicates
    rather than identical. Pile arrangement is not part of the design: each
    photograph piles the pieces afresh, as a shopper's bag of apples never
    lies the same way twice.
    """

    sku_id: str
    slot: int
    kind: ProduceKind
    organic: bool
    name: str
    colour: Colour
    accent: Colour
    scale: float
    """Piece size relative to the kind's nominal size."""
    family: str = PRODUCE_FAMILY

    @property
    def shape(self) -> ProduceShape:
        """The kind's silhouette family."""
        return self.kind.shape

    @property
    def barcode(self) -> str:
        """Always empty: loose produce is weighed, not scanned."""
        return ""

    @property
    def brand(self) -> str:
        """Always empty: loose produce carries no brand."""
        return ""

    @property
    def weight_g(self) -> None:
        """No nominal unit weight: the price follows the weight on the scale."""
        return None

    @property
    def weight_tol_g(self) -> None:
        """No tolerance either, as there is no nominal weight to be near."""
        return None


_SHAPE_KINDS: dict[ProduceShape, tuple[ProduceKind, ...]] = {
    shape: tuple(k for k in PRODUCE_KINDS if k.shape is shape) for shape in ProduceShape
}
_PRODUCE_GENERATIONS = 2
"""Each kind appears at most twice: conventional, then organic."""


def design_produce(seed: int, slot: int) -> ProduceDesign:
    """The produce SKU at ``slot`` (0-based): a pure function of its arguments.

    Shapes rotate from a seeded offset, so any four consecutive produce SKUs
    cover all four shapes and a small produce section is not four kinds of
    round fruit. Within a shape, kinds come in a seeded order; once a shape's
    kinds are used up, its organic versions follow.
    """
    if not 0 <= slot < MAX_PRODUCE_SKUS:
        raise SynthError(f"produce slot {slot} is out of range 0..{MAX_PRODUCE_SKUS - 1}")
    shapes = tuple(ProduceShape)
    offset = int(derive_rng(seed, DOMAIN_PRODUCE).integers(len(shapes)))
    shape_index = (slot + offset) % len(shapes)
    kinds = _SHAPE_KINDS[shapes[shape_index]]
    generation, position = divmod(slot // len(shapes), len(kinds))
    if generation >= _PRODUCE_GENERATIONS:  # pragma: no cover - excluded by MAX_PRODUCE_SKUS
        raise SynthError(f"produce slot {slot} is out of range")
    order = derive_rng(seed, DOMAIN_PRODUCE, 1, shape_index).permutation(len(kinds))
    kind = kinds[int(order[position])]
    organic = generation == 1

    rng = derive_rng(seed, DOMAIN_PRODUCE, 2, slot)
    spread = 0.05 if organic else 0.02
    colour = _jitter(kind.colour, rng, spread)
    accent = _jitter(kind.accent, rng, spread)
    if organic:
        # Organic produce reads duller and a little smaller on the shelf.
        colour = _scaled_saturation(colour, 0.85)
    scale = float(rng.uniform(0.85, 0.95) if organic else rng.uniform(0.95, 1.08))
    label = f"organic {kind.name}" if organic else kind.name
    return ProduceDesign(
        sku_id=f"{PRODUCE_SKU_PREFIX}{slot + 1:04d}",
        slot=slot,
        kind=kind,
        organic=organic,
        name=f"Loose {label}",
        colour=colour,
        accent=accent,
        scale=scale,
    )


def _scaled_saturation(colour: Colour, factor: float) -> Colour:
    b, g, r = colour
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    return _hsv_colour(h, s * factor, v)


def produce_designs(seed: int, n_produce: int) -> list[ProduceDesign]:
    """The first ``n_produce`` produce SKUs (slots 0..n_produce-1)."""
    if not 0 <= n_produce <= MAX_PRODUCE_SKUS:
        raise SynthError(f"n_produce must be between 0 and {MAX_PRODUCE_SKUS}, got {n_produce}")
    return [design_produce(seed, slot) for slot in range(n_produce)]
