"""The attendants' HTTP API at the hub: look at review crops, label them, register new SKUs.

Routes reach the queue through the :class:`~cartos.hub.review.ReviewStore` and the
master catalogue stored on ``app.state`` and map the queue's refusals onto HTTP: an
unknown item is 404, an item that is no longer open (or a SKU that already exists) is
409, a label the catalogue cannot take (unknown or discontinued SKU) is 422, and a
database that refuses the write is 503. After a label or a registration the app calls
``on_change`` (the hub's :meth:`~cartos.hub.service.Hub.request_release`), so the next
catalogue release takes it to every cart.

The list never carries image bytes; a crop is fetched on its own (``image/jpeg``,
``Cache-Control: no-store``) and is 404 once retention or a purge deleted it. The
interactive ``/docs`` pages are switched off (they load scripts from a CDN);
``/openapi.json`` stays. The API has no authentication of its own: it binds to
``127.0.0.1`` unless configured otherwise, and anything wider belongs behind the
store's authenticating reverse proxy (``docs/hub-review.md``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cartos.catalog.records import SkuRecord
from cartos.hub.catalogue import HubCatalogue
from cartos.hub.drift import DriftLedger
from cartos.hub.errors import HubError, HubStorageError
from cartos.hub.review import (
    ReviewLabelError,
    ReviewNotFoundError,
    ReviewStateError,
    ReviewStore,
)

API_TITLE: Final = "cartos hub review API"
API_VERSION: Final = "1"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8081

Status = Literal["open", "labelled", "registered", "dismissed"]
_CODE = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
"""A SKU code or name: printable, no surrounding spaces."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReviewItemModel(BaseModel):
    """One review item (its crop is ``GET /api/v1/review/{id}/crop``)."""

    id: str = Field(description="The item id (the cart's uplink message id).")
    cart: str
    store: str
    received_at: float = Field(description="Unix time the hub took the item in.")
    reason: str = Field(description="Why the cart could not settle the item.")
    candidates: list[tuple[str, float]] = Field(
        description="The recogniser's best guesses, [sku, probability].")
    weight_g: float | None = Field(description="The weight change the scale measured.")
    dim: int | None = Field(description="Dimensions of the crop's embedding.")
    has_crop: bool = Field(description="False once retention or a purge deleted the image.")
    status: Status
    label: str | None = Field(description="The SKU it was labelled or registered as.")
    labelled_at: float | None
    closed_at: float | None = Field(description="When it was labelled, registered or "
                                                "dismissed: crop retention counts from here.")


class ReviewList(BaseModel):
    items: list[ReviewItemModel]


class LabelRequest(_Request):
    sku: str = Field(min_length=1, max_length=64, pattern=_CODE,
                     description="A SKU of the master catalogue.")


class RegisterRequest(_Request):
    """A new SKU for the whole fleet, learned from the crops of ``review_ids``."""

    sku: str = Field(min_length=1, max_length=64, pattern=_CODE)
    name: str = Field(min_length=1, max_length=200, pattern=_CODE)
    brand: str | None = Field(default=None, min_length=1, max_length=200, pattern=_CODE)
    family: str | None = Field(default=None, min_length=1, max_length=200, pattern=_CODE)
    barcode: str | None = Field(default=None, pattern=r"^[0-9]{6,14}$",
                                description="GTIN digits (a string: leading zeros count).")
    weight_g: float | None = Field(default=None, gt=0, le=100_000)
    weight_tol_g: float | None = Field(default=None, ge=0, le=100_000)
    review_ids: list[str] = Field(min_length=1, max_length=50,
                                  description="Open review items showing this SKU.")


class RegisterResult(BaseModel):
    sku: str
    items: list[ReviewItemModel]


class PurgeRequest(_Request):
    crops_only: bool = Field(default=True, description="False: delete the items too.")


class PurgeResult(BaseModel):
    crops_deleted: int
    items_deleted: int


class HubReviewHealth(BaseModel):
    status: Literal["ok"]
    items: dict[str, int] = Field(description="Items per status.")
    skipped: dict[str, int] = Field(description="Review messages skipped, by reason.")
    catalogue_version: int


class ErrorBody(BaseModel):
    detail: str


def create_review_app(review: ReviewStore, catalogue: HubCatalogue,
                      on_change: Callable[[], None] | None = None,
                      drift: DriftLedger | None = None) -> FastAPI:
    """The attendants' API over ``review``, labelling into ``catalogue``; with ``drift``,
    also the store's drift summary."""
    app = FastAPI(title=API_TITLE, version=API_VERSION,
                  summary="Review queue of the store hub: label crops, register new SKUs.",
                  docs_url=None, redoc_url=None)
    app.state.review = review
    app.state.catalogue = catalogue
    app.state.on_change = on_change or (lambda: None)
    app.state.drift = drift
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _review(request: Request) -> ReviewStore:
    store: ReviewStore = request.app.state.review
    return store


def _catalogue(request: Request) -> HubCatalogue:
    catalogue: HubCatalogue = request.app.state.catalogue
    return catalogue


def _changed(request: Request) -> None:
    request.app.state.on_change()


def _add_error_handlers(app: FastAPI) -> None:
    def handler(code: int) -> Callable[[Request, Exception], Any]:
        async def handle(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return handle

    app.add_exception_handler(ReviewNotFoundError, handler(404))
    app.add_exception_handler(ReviewStateError, handler(409))
    app.add_exception_handler(ReviewLabelError, handler(422))
    app.add_exception_handler(HubStorageError, handler(503))


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such review item."}}
_NOT_OPEN: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The item is no longer open."}}


def _add_routes(app: FastAPI) -> None:
    @app.get("/api/v1/health", response_model=HubReviewHealth, tags=["hub"])
    def health(request: Request) -> dict[str, Any]:
        """Items per status, messages skipped, the master catalogue's version."""
        review = _review(request)
        return {"status": "ok", "items": review.counts(), "skipped": review.skipped(),
                "catalogue_version": _catalogue(request).version()}

    @app.get("/api/v1/drift", tags=["hub"])
    def drift(request: Request,
              hours: float = Query(default=6.0, gt=0, le=24 * 31),
              store_wide_carts: int = Query(default=3, ge=1, le=10_000)) -> dict[str, Any]:
        """Drift alerts the carts raised recently, per trigger; ``store_wide`` when enough
        carts raised the same one (then ``refresh_backbone``)."""
        ledger: DriftLedger | None = request.app.state.drift
        if ledger is None:
            raise HTTPException(404, "this hub keeps no drift ledger")
        return ledger.summary(hours * 3600.0, store_wide_carts)

    @app.get("/api/v1/review", response_model=ReviewList, tags=["review"])
    def list_items(request: Request, status: Status | None = None,
                   limit: int = Query(default=200, ge=1, le=1000)) -> dict[str, Any]:
        """Review items, oldest first (all, or those with ``status``); no image bytes."""
        return {"items": [i.to_dict() for i in _review(request).items(status, limit)]}

    @app.get("/api/v1/review/{item_id}", response_model=ReviewItemModel, tags=["review"],
             responses=_NOT_FOUND)
    def get_item(item_id: str, request: Request) -> dict[str, Any]:
        return _review(request).get(item_id).to_dict()

    @app.get("/api/v1/review/{item_id}/crop", tags=["review"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}},
                              "description": "The masked item crop."},
                        404: {"model": ErrorBody,
                              "description": "No such item, or its crop was deleted."}})
    def get_crop(item_id: str, request: Request) -> Response:
        """The item's masked crop as the cart sent it."""
        crop = _review(request).crop(item_id)
        if crop is None:
            return JSONResponse({"detail": f"the crop of review item {item_id} was deleted "
                                           "(retention or purge)"}, status_code=404)
        return Response(crop, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/v1/review/{item_id}/label", response_model=ReviewItemModel,
              tags=["review"],
              responses={**_NOT_FOUND, **_NOT_OPEN,
                         422: {"model": ErrorBody,
                               "description": "Unknown or discontinued SKU."}})
    def label(item_id: str, body: LabelRequest, request: Request) -> dict[str, Any]:
        """Label the item: the master catalogue learns its embedding as ``sku``."""
        item = _review(request).label(item_id, body.sku, _catalogue(request))
        _changed(request)
        return item.to_dict()

    @app.post("/api/v1/review/{item_id}/dismiss", response_model=ReviewItemModel,
              tags=["review"], responses={**_NOT_FOUND, **_NOT_OPEN})
    def dismiss(item_id: str, request: Request) -> dict[str, Any]:
        """Close the item without teaching anything."""
        return _review(request).dismiss(item_id).to_dict()

    @app.post("/api/v1/skus", response_model=RegisterResult, status_code=201, tags=["review"],
              responses={404: {"model": ErrorBody, "description": "A review item is unknown."},
                         409: {"model": ErrorBody,
                               "description": "An item is not open, or the SKU exists."}})
    def register(body: RegisterRequest, request: Request) -> dict[str, Any]:
        """Register a new SKU for the whole fleet from review items' crops."""
        record = SkuRecord(body.sku, name=body.name, barcode=body.barcode, brand=body.brand,
                           family=body.family, weight_g=body.weight_g,
                           weight_tol_g=body.weight_tol_g)
        items = _review(request).register(record, body.review_ids, _catalogue(request))
        _changed(request)
        return {"sku": body.sku, "items": [i.to_dict() for i in items]}

    @app.post("/api/v1/purge", response_model=PurgeResult, tags=["review"])
    def purge(request: Request, body: PurgeRequest | None = None) -> dict[str, int]:
        """Delete every crop now (or, with ``crops_only: false``, every item)."""
        crops_only = True if body is None else body.crops_only
        count = _review(request).purge(crops_only=crops_only)
        return {"crops_deleted": count if crops_only else 0,
                "items_deleted": 0 if crops_only else count}


class ReviewApiServer:
    """The review API on ``host:port`` in a uvicorn thread (``port=0``: a free port)."""

    def __init__(self, app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ReviewApiServer:
        """Bind, serve on a daemon thread, return once it accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise HubError(f"cannot bind the review API to {self.host}:{self.port}: "
                           f"{exc}") from exc
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=2))
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="cartos-hub-review-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HubError("the review API did not start (see the log)")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout)
        self._server = self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
