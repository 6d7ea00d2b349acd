"""The backend registry skips backends whose runtime is missing, with a reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cartos.inference import backend as registry
from cartos.inference import backends as backends_pkg
from cartos.inference.errors import BackendUnavailableError
from cartos.inference.model_card import shipped_model_path


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    (tmp_path / "missing_runtime_backend.py").write_text(
        "import cartos_runtime_that_is_not_installed  # noqa\n"
    )
    monkeypatch.setattr(backends_pkg, "__path__", [*backends_pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_SKIPPED", {})
    return tmp_path


def test_missing_runtime_is_skipped_not_fatal(
    fresh_registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cartos.inference.backend"):
        names = registry.available()
    assert "onnxruntime" in names
    skipped = registry.skipped()
    assert "missing_runtime_backend" in skipped
    assert "cartos_runtime_that_is_not_installed" in skipped["missing_runtime_backend"]
    assert any("skipped" in r.message for r in caplog.records)


def test_asking_for_a_skipped_backend_says_why(fresh_registry: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="not installed"):
        registry.create("missing_runtime_backend", shipped_model_path())


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(BackendUnavailableError, match="onnxruntime"):
        registry.create("no-such-backend", shipped_model_path())
