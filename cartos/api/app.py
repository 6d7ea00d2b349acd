"""The FastAPI application: routes of the cart's local API and the kiosk page.

Routes reach the runtime only through the :class:`~cartos.api.view.CartView`
stored on ``app.state``, and map the basket's expected failures onto HTTP:
an unknown prompt is 404, a prompt that cannot be answered now (already
answered, expired, not one of its options, no open session) is 409, and a
basket file that refuses the write is 503. The interactive ``/docs`` pages
are switched off because they load their scripts from a CDN, which an
offline cart cannot reach; ``/openapi.json`` stays.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from cartos.api.errors import PromptNotFoundError
from cartos.api.events import UiEvent, ui_event
from cartos.api.models import AnswerRequest, AnswerResult, Basket, ErrorBody, Health
from cartos.api.sse import DEFAULT_HEARTBEAT_S, StreamTracker, event_stream
from cartos.api.view import CartView
from cartos.basket.errors import BasketStorageError, InvalidCommandError
from cartos.telemetry.metrics import CONTENT_TYPE, Metrics

API_TITLE: Final = "cartos cart API"
API_VERSION: Final = "1"
"""Version of the ``/api/v1`` contract (not the package version, so releases do not churn it)."""

KIOSK_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
"""The kiosk page may load nothing from outside the cart."""


def create_app(
    view: CartView,
    *,
    metrics: Metrics | None = None,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
) -> FastAPI:
    """The API over ``view``; ``metrics`` defaults to a fresh private :class:`Metrics`."""
    app = build_app()
    app.state.view = view
    app.state.metrics = metrics if metrics is not None else Metrics()
    app.state.streams = StreamTracker()
    app.state.heartbeat_s = heartbeat_s
    return app


def build_app() -> FastAPI:
    """The routes without a cart attached: enough to render the OpenAPI document."""
    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        summary="Local HTTP API of a cartos smart cart (localhost only).",
        docs_url=None,
        redoc_url=None,
    )
    _add_error_handlers(app)
    _add_routes(app)
    app.mount("/static", StaticFiles(packages=[("cartos.api", "static")]), name="static")
    return app


def streams_of(app: FastAPI) -> StreamTracker:
    tracker: StreamTracker = app.state.streams
    return tracker


def _view(request: Request) -> CartView:
    view: CartView = request.app.state.view
    return view


def _add_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_exception_handler(PromptNotFoundError, not_found)
    app.add_exception_handler(InvalidCommandError, conflict)
    app.add_exception_handler(BasketStorageError, unavailable)


def _add_routes(app: FastAPI) -> None:
    @app.get("/api/v1/basket", response_model=Basket, tags=["basket"])
    def get_basket(request: Request) -> dict[str, Any]:
        """The committed basket of the open (or else the latest) session."""
        return _view(request).basket()

    @app.get("/api/v1/health", response_model=Health, tags=["cart"])
    def get_health(request: Request) -> dict[str, Any]:
        """Operating mode, sensor health and memory headroom."""
        return _view(request).health()

    @app.post(
        "/api/v1/prompts/{prompt_id}/answer",
        response_model=AnswerResult,
        tags=["basket"],
        responses={
            404: {"model": ErrorBody, "description": "No such prompt in the open session."},
            409: {
                "model": ErrorBody,
                "description": "The prompt is closed, the answer is not one of its options, "
                "or no session is open.",
            },
            503: {"model": ErrorBody, "description": "The basket file refused the write."},
        },
    )
    def answer_prompt(prompt_id: str, body: AnswerRequest, request: Request) -> dict[str, Any]:
        """Answer an open prompt with one of its options; durable when this returns."""
        return _view(request).answer_prompt(prompt_id, body.answer)

    @app.get(
        "/api/v1/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "Server-sent events named basket, prompt, alert and health, "
                "each with a JSON data line; a comment every 15 s keeps the stream alive.",
            },
            503: {"model": ErrorBody, "description": "The server is shutting down."},
        },
    )
    async def events(request: Request) -> Response:
        """Live UI events; the stream opens with the current basket and health."""
        view = _view(request)
        tracker = streams_of(request.app)
        sub = view.subscribe()
        if not tracker.track(sub):
            return JSONResponse({"detail": "server is shutting down"}, status_code=503)
        try:
            basket = await run_in_threadpool(view.basket)
            health = await run_in_threadpool(view.health)
        except BaseException:
            tracker.release(sub)
            raise
        initial: list[UiEvent] = [ui_event("basket", basket), ui_event("health", health)]
        return StreamingResponse(
            event_stream(sub, tracker, initial=initial, heartbeat_s=request.app.state.heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/metrics",
        tags=["cart"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    )
    def metrics(request: Request) -> Response:
        """Prometheus metrics; health gauges and review depth are refreshed on each scrape."""
        view = _view(request)
        registry: Metrics = request.app.state.metrics
        registry.observe_health(view.health())
        registry.set_review_depth(int(view.basket()["review"]))
        return Response(registry.render(), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def kiosk() -> HTMLResponse:
        page = resources.files("cartos.api").joinpath("static/kiosk.html").read_text("utf-8")
        return HTMLResponse(
            page, headers={"Content-Security-Policy": KIOSK_CSP, "Cache-Control": "no-cache"}
        )
