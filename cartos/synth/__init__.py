"""Procedural packaged-goods catalogues for the demo and the tests.

Real product photos cannot ship with the project, yet recognition, open-set
rejection and weight fusion all need a store to work on. This package draws
one: brands with distinct palettes, logos and pack shapes, product lines whose
flavour variants are near-duplicates, valid EAN-13 barcodes and plausible
weights, photographed the way a cart camera's detector crops look. Optional
loose produce (piles of fruit and vegetables with no barcode, sold by weight)
exercises the cart's camera-and-scale path. Output is deterministic by seed
down to the byte.
"""

from __future__ import annotations

from cartos.synth.design import (
    FAMILIES,
    FLAVOURS,
    MAX_PRODUCE_SKUS,
    PRODUCE_FAMILY,
    PRODUCE_KINDS,
    Brand,
    Family,
    Flavour,
    Fruit,
    Glyph,
    Layout,
    LeafyForm,
    PackShape,
    ProduceDesign,
    ProduceEnd,
    ProduceKind,
    ProduceShape,
    SkuDesign,
    catalogue_designs,
    design_produce,
    design_sku,
    ean13_check_digit,
    is_valid_ean13,
    novel_designs,
    produce_designs,
    reference_counts,
    weight_tolerance_g,
)
from cartos.synth.errors import SynthError
from cartos.synth.generator import (
    MANIFEST_HEADER,
    SynthCatalogue,
    SynthConfig,
    generate_catalogue,
    split_queries,
    validate_config,
)
from cartos.synth.render import (
    PackImage,
    ShotStyle,
    photograph,
    query_style,
    reference_style,
    render_image,
    render_pack,
)
from cartos.synth.render_produce import photograph_produce, render_pile

__all__ = [
    "FAMILIES",
    "FLAVOURS",
    "MANIFEST_HEADER",
    "MAX_PRODUCE_SKUS",
    "PRODUCE_FAMILY",
    "PRODUCE_KINDS",
    "Brand",
    "Family",
    "Flavour",
    "Fruit",
    "Glyph",
    "Layout",
    "LeafyForm",
    "PackImage",
    "PackShape",
    "ProduceDesign",
    "ProduceEnd",
    "ProduceKind",
    "ProduceShape",
    "ShotStyle",
    "SkuDesign",
    "SynthCatalogue",
    "SynthConfig",
    "SynthError",
    "catalogue_designs",
    "design_produce",
    "design_sku",
    "ean13_check_digit",
    "generate_catalogue",
    "is_valid_ean13",
    "novel_designs",
    "photograph",
    "photograph_produce",
    "produce_designs",
    "query_style",
    "reference_counts",
    "reference_style",
    "render_image",
    "render_pack",
    "render_pile",
    "split_queries",
    "validate_config",
    "weight_tolerance_g",
]
