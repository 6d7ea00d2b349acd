"""Errors raised by the catalogue package.

The catalogue is edited by people (manifests, imports) and read by the cart, so
every expected failure gets its own type: the CLI turns them into one-line
messages, and callers can tell "that SKU does not exist" apart from "this file
is not a catalogue at all".
"""

from __future__ import annotations

from cartos.errors import CartosError


class CatalogError(CartosError):
    """Base class for catalogue failures."""


class UnknownSkuError(CatalogError):
    """A SKU (or a successor SKU) named by the caller is not in the catalogue."""


class ManifestError(CatalogError):
    """A whole manifest file is unusable: unreadable, not CSV, or missing a required header.

    Problems confined to single rows are not raised; they are collected in
    :attr:`cartos.catalog.manifest.Manifest.problems` so one bad line does not
    block an import of thousands of good ones.
    """


class CatalogStateError(CatalogError):
    """The catalogue is asked to do something its current state forbids.

    Examples: a mutation outside a change block, a nested change block, or
    vectors whose dimension differs from the catalogue's embedding dimension.
    """
