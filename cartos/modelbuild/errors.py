"""Errors raised while building or exporting models."""

from __future__ import annotations

from cartos.errors import CartosError


class ModelBuildError(CartosError):
    """The model could not be exported, quantised or checked."""
