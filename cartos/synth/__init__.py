"""Procedural packaged-goods catalogues for the demo and the tests.

Real product photos cannot ship with the project, yet recognition, open-set
rejection and weight fusion all need a store to work on. This package draws
one: brands with distinct palettes, logos and pack shapes, product lines whose
flavour variants are near-duplicates, valid EAN-13 barcodes and plausible
weights, photographed the way a cart camera's detector crops look. Output is
deterministic by seed down to the byte.
"""

from __future__ import annotations

from cartos.synth.design import (
    FAMILIES,
    FLAVOURS,
    Brand,
    Family,
    Flavour,
    Fruit,
    Glyph,
    Layout,
    PackShape,
    SkuDesign,
    catalogue_designs,
    design_sku,
    ean13_check_digit,
    is_valid_ean13,
    novel_designs,
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

__all__ = [
    "FAMILIES",
    "FLAVOURS",
    "MANIFEST_HEADER",
    "Brand",
    "Family",
    "Flavour",
    "Fruit",
    "Glyph",
    "Layout",
    "PackImage",
    "PackShape",
    "ShotStyle",
    "SkuDesign",
    "SynthCatalogue",
    "SynthConfig",
    "SynthError",
    "catalogue_designs",
    "design_sku",
    "ean13_check_digit",
    "generate_catalogue",
    "is_valid_ean13",
    "novel_designs",
    "photograph",
    "query_style",
    "reference_counts",
    "reference_style",
    "render_image",
    "render_pack",
    "split_queries",
    "validate_config",
    "weight_tolerance_g",
]
