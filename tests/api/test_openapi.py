"""The committed OpenAPI document matches the routes."""

from __future__ import annotations

import json
from pathlib import Path

from cartos.api.openapi import main, openapi_document, render_document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED.is_file(), "run: python -m cartos.api.openapi docs/openapi.json"
    assert COMMITTED.read_text(encoding="utf-8") == render_document(), (
        "docs/openapi.json is stale; run: python -m cartos.api.openapi docs/openapi.json"
    )


def test_document_covers_the_public_routes() -> None:
    paths = openapi_document()["paths"]
    assert set(paths) == {
        "/api/v1/basket",
        "/api/v1/health",
        "/api/v1/prompts/{prompt_id}/answer",
        "/api/v1/events",
        "/metrics",
    }
    answer = paths["/api/v1/prompts/{prompt_id}/answer"]["post"]
    assert {"200", "404", "409", "422"} <= set(answer["responses"])


def test_export_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    assert main([str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == openapi_document()
    assert main([]) == 2
