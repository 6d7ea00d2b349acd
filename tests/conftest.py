"""Shared fixtures: the real INT8 model, a generated catalogue, real-data access."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.bench.data import DataMissingError, dataset_dir
from cartos.inference.embedder import Embedder


def require_data(name: str) -> Path:
    """Folder of a real data set; skip (or fail under CARTOS_REQUIRE_DATA=1) when absent."""
    try:
        return dataset_dir(name)
    except DataMissingError as exc:
        if os.environ.get("CARTOS_REQUIRE_DATA") == "1":
            pytest.fail(f"CARTOS_REQUIRE_DATA=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    """The shipped INT8 model, loaded once (checksum verified on load)."""
    emb = Embedder()
    yield emb
    emb.close()
