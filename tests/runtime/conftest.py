"""One generated, imported and calibrated catalogue for every runtime test."""

from __future__ import annotations

import pytest

from cartos.runtime.simulation import SimulatedStore


@pytest.fixture(scope="session")
def sim_store(tmp_path_factory: pytest.TempPathFactory) -> SimulatedStore:
    return SimulatedStore(tmp_path_factory.mktemp("sim-store"), skus=12, seed=0, produce=2)
