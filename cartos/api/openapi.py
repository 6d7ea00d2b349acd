"""The API's OpenAPI document, generated from the routes and kept in ``docs/openapi.json``.

The committed copy lets people (and the hub team) read the contract without
running a cart; a test regenerates it and fails when the copy is stale.
Regenerate with ``python -m cartos.api.openapi docs/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cartos.api.app import build_app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the ``/api/v1`` routes and ``/metrics``."""
    return build_app().openapi()


def render_document() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cartos.api.openapi OUTPUT.json", file=sys.stderr)
        return 2
    Path(args[0]).write_text(render_document(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
