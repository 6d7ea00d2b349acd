"""Errors raised by the inference package."""

from __future__ import annotations

from cartos.errors import CartosError


class InferenceError(CartosError):
    """Base class for recognition-path failures."""


class ImageDecodeError(InferenceError):
    """An image could not be read or decoded (corrupt, truncated, not an image)."""


class BackendUnavailableError(InferenceError):
    """No inference backend could be loaded (missing library or unknown name)."""


class ModelIntegrityError(InferenceError):
    """A model file does not match its model card (checksum, size or shape)."""


class CorrectionError(InferenceError):
    """A shopper's or attendant's correction cannot be applied to the local catalogue."""


class DiscontinuedSkuError(CorrectionError):
    """A correction names a discontinued SKU: its exemplars would never be scored."""


class CorrectionConflictError(CorrectionError):
    """A correction id already applied is re-sent with a different SKU."""


class ModelMismatchError(InferenceError):
    """A catalogue and an embedder are in different embedding spaces (model or views)."""
