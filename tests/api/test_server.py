"""The threaded uvicorn server over a real socket: requests, live events, shutdown."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cartos.api.errors import ApiServerError
from cartos.api.server import DEFAULT_HOST, ApiServer
from cartos.api.store_view import StoreView
from cartos.basket.events import ItemAdded
from tests.api.conftest import PROMPT_ID, parse_sse, recorded_prompt


@pytest.fixture()
def server(cart: StoreView) -> Iterator[ApiServer]:
    with ApiServer(cart, port=0, heartbeat_s=0.3) as running:
        yield running


class StreamReader:
    """Reads an SSE response on a thread and collects its text, so tests can wait for events."""

    def __init__(self, url: str) -> None:
        self.text = ""
        self.ended = threading.Event()
        self.status: int | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0)) as client,
                client.stream("GET", url) as response,
            ):
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                for chunk in response.iter_text():
                    with self._lock:
                        self.text += chunk
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def events(self) -> list[tuple[str, Any]]:
        with self._lock:
            return parse_sse(self.text)

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.02)
        raise AssertionError(f"condition not met; stream so far: {self.text!r}")


def test_binds_to_localhost_by_default(cart: StoreView) -> None:
    server = ApiServer(cart, port=0)
    assert server.host == DEFAULT_HOST == "127.0.0.1"


def test_serves_the_api_over_a_real_socket(server: ApiServer, basket_path: Path) -> None:
    assert server.running and server.port > 0
    basket = httpx.get(f"{server.url}/api/v1/basket", timeout=5).json()
    assert [i["sku"] for i in basket["items"]] == ["milk-1l"]
    answered = httpx.post(
        f"{server.url}/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "oat milk"}, timeout=5
    )
    assert answered.status_code == 200
    assert recorded_prompt(basket_path, PROMPT_ID) == ("answered", "oat milk")


def test_event_stream_delivers_published_events(server: ApiServer, cart: StoreView) -> None:
    reader = StreamReader(f"{server.url}/api/v1/events")
    first = reader.wait_for(lambda ev: [name for name, _ in ev] == ["basket", "health"])
    assert reader.status == 200
    assert reader.content_type.startswith("text/event-stream")
    assert [i["sku"] for i in first[0][1]["items"]] == ["milk-1l"]
    assert first[1][1]["mode"] == "full"

    cart.apply(ItemAdded("add-tea", "tea-20", unit_price_cents=350))
    cart.publish({"type": "health", "data": {"mode": "barcode_only", "sensors": {}}})
    events = reader.wait_for(lambda ev: len(ev) >= 4)
    assert events[2][0] == "basket"
    assert [i["sku"] for i in events[2][1]["items"]] == ["milk-1l", "tea-20"]
    assert events[3] == ("health", {"mode": "barcode_only", "sensors": {}})


def test_idle_stream_gets_heartbeats(server: ApiServer) -> None:
    reader = StreamReader(f"{server.url}/api/v1/events")
    deadline = time.monotonic() + 5
    while ": heartbeat" not in reader.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ": heartbeat" in reader.text


def test_stop_ends_open_streams_promptly(cart: StoreView) -> None:
    server = ApiServer(cart, port=0)  # default 15 s heartbeat: stop must not wait for it
    server.start()
    reader = StreamReader(f"{server.url}/api/v1/events")
    reader.wait_for(lambda ev: len(ev) >= 2)
    began = time.monotonic()
    server.stop()
    assert reader.ended.wait(5)
    assert time.monotonic() - began < 3
    assert not server.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/api/v1/basket", timeout=2)


def test_a_taken_port_is_reported(cart: StoreView) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ApiServerError, match="cannot bind"):
            ApiServer(cart, port=port).start()
