"""The API's JSON shapes as pydantic models, so ``/openapi.json`` documents them.

They mirror the plain dicts of :mod:`cartos.basket.view` and
:mod:`cartos.api.view` field for field; the server validates every response
against them, so a change in the basket view that the screen does not know
about fails loudly in the tests instead of silently on the cart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OperatingMode = Literal["full", "barcode_weight", "vision_barcode", "barcode_only", "camera_only"]
"""Same values as :data:`cartos.telemetry.metrics.OPERATING_MODES` (a test keeps them equal)."""


class BasketItem(BaseModel):
    sku: str
    qty: int = Field(gt=0)
    unit_price_cents: int | None = None
    unit_weight_g: float | None = None
    evidence_id: str | None = None


class Prompt(BaseModel):
    """A question to the shopper; answer it with one of ``options``."""

    id: str
    question: str
    options: list[str]
    opened_at: float = Field(description="Unix time the prompt was opened.")
    expires_at: float | None = Field(default=None, description="Unix time it times out, if ever.")


class Alert(BaseModel):
    """Something for staff to look at (``unscanned``, ``weight_mismatch``, ...)."""

    id: int
    kind: str
    evidence: dict[str, Any]
    raised_at: float


class Basket(BaseModel):
    """The committed basket of the open (or else the latest) shopping session."""

    session: str | None
    status: Literal["open", "closed"] | None
    version: int = Field(description="Number of commands applied to the session.")
    items: list[BasketItem]
    pending_prompts: list[Prompt]
    alerts: list[Alert]
    review: int = Field(description="Crops of this session queued for human labelling.")


class Health(BaseModel):
    """How well the cart can currently see, weigh and scan."""

    model_config = ConfigDict(extra="allow")

    mode: OperatingMode
    sensors: dict[str, bool] = Field(description="Sensor name -> working.")
    headroom: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Fraction of the memory budget still free."
    )


class AnswerRequest(BaseModel):
    answer: str = Field(min_length=1, description="One of the prompt's options.")


class AnswerResult(BaseModel):
    prompt_id: str
    answer: str
    basket_version: int


class ErrorBody(BaseModel):
    detail: str
