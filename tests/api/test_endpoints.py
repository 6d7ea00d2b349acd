"""The HTTP contract over a real basket file, through FastAPI's in-process test client."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cartos.api.store_view import StoreView
from cartos.basket.events import ItemAdded, SessionClosed
from cartos.basket.store import BasketStore
from tests.api.conftest import PROMPT_ID, PROMPT_OPTIONS, HealthBoard, recorded_prompt


def test_basket_is_the_committed_view_of_the_file(client: TestClient, basket_path: Path) -> None:
    response = client.get("/api/v1/basket")
    assert response.status_code == 200
    body = response.json()
    with BasketStore(basket_path, read_only=True) as on_disk:
        assert body == on_disk.view()
    assert [(i["sku"], i["qty"]) for i in body["items"]] == [("milk-1l", 2)]
    assert [p["id"] for p in body["pending_prompts"]] == [PROMPT_ID]
    assert body["pending_prompts"][0]["options"] == list(PROMPT_OPTIONS)


def test_basket_follows_commands_applied_by_the_runtime(
    client: TestClient, cart: StoreView
) -> None:
    cart.apply(ItemAdded("add-bread", "bread-500g", unit_price_cents=249))
    skus = [i["sku"] for i in client.get("/api/v1/basket").json()["items"]]
    assert skus == ["bread-500g", "milk-1l"]


def test_health_reports_what_the_runtime_says(
    client: TestClient, health_board: HealthBoard
) -> None:
    assert client.get("/api/v1/health").json() == health_board.report()
    health_board.mode = "barcode_only"
    health_board.sensors["camera"] = False
    body = client.get("/api/v1/health").json()
    assert body["mode"] == "barcode_only"
    assert body["sensors"]["camera"] is False


def test_answer_is_recorded_in_the_basket_file(
    client: TestClient, basket_path: Path, answers: list[tuple[str, str]]
) -> None:
    response = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "soy milk"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt_id"] == PROMPT_ID
    assert body["answer"] == "soy milk"
    assert recorded_prompt(basket_path, PROMPT_ID) == ("answered", "soy milk")
    with BasketStore(basket_path, read_only=True) as on_disk:
        assert body["basket_version"] == on_disk.version
        assert on_disk.view()["pending_prompts"] == []
    assert answers == [(PROMPT_ID, "soy milk")]


def test_second_answer_conflicts_and_keeps_the_first(client: TestClient, basket_path: Path) -> None:
    first = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "oat milk"})
    assert first.status_code == 200
    second = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "neither"})
    assert second.status_code == 409
    assert "answered" in second.json()["detail"]
    assert recorded_prompt(basket_path, PROMPT_ID) == ("answered", "oat milk")


def test_answer_outside_the_options_conflicts(client: TestClient, basket_path: Path) -> None:
    response = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "cream"})
    assert response.status_code == 409
    assert "not an option" in response.json()["detail"]
    assert recorded_prompt(basket_path, PROMPT_ID) == ("open", None)


def test_unknown_prompt_is_not_found(client: TestClient, answers: list[tuple[str, str]]) -> None:
    response = client.post("/api/v1/prompts/p-nope/answer", json={"answer": "oat milk"})
    assert response.status_code == 404
    assert "p-nope" in response.json()["detail"]
    assert answers == []


def test_answer_without_open_session_conflicts(client: TestClient, cart: StoreView) -> None:
    cart.apply(SessionClosed("close-s1"))
    response = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": "oat milk"})
    assert response.status_code == 409
    assert "session" in response.json()["detail"]


def test_empty_answer_is_rejected_before_the_basket(client: TestClient, basket_path: Path) -> None:
    response = client.post(f"/api/v1/prompts/{PROMPT_ID}/answer", json={"answer": ""})
    assert response.status_code == 422
    assert recorded_prompt(basket_path, PROMPT_ID) == ("open", None)


def test_kiosk_page_and_assets_are_served_without_external_resources(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/kiosk.js"' in page.text
    texts = [page.text]
    for asset, kind in (("kiosk.js", "javascript"), ("kiosk.css", "text/css")):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        texts.append(response.text)
    for text in texts:
        assert "http://" not in text and "https://" not in text


def test_openapi_is_served(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "/api/v1/prompts/{prompt_id}/answer" in document["paths"]
    assert client.get("/docs").status_code == 404
