"""Canary rollout on a real broker: a release reaches the canary cart first, everyone after the
soak; a release the canary cart's health check refuses is halted before anyone else gets it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cartos.bench import fleet
from cartos.catalog.store import CatalogStore
from cartos.hub.canary import CanaryPolicy
from cartos.hub.catalogue import HubCatalogue, provision
from cartos.hub.release import Releaser
from cartos.hub.service import Hub, HubSettings
from cartos.sync.bundles import generate_private_key, issue_signing_key, public_key_hex
from tests.sync.broker import Broker
from tests.waiting import wait_until

STORE = fleet.STORE
CANARY, CONTROL = "cart-s001-0001", "cart-s001-0002"




def _poison(hub: HubCatalogue, master: Path) -> None:
    """For ten pairs of SKUs, teach each one the other's references: signed and well-formed,
    but a cart running it would confuse half its catalogue."""
    with CatalogStore(master) as store:
        ex = store.exemplars(kind="reference")
    refs: dict[str, list[np.ndarray]] = {}
    for sku, vector in zip(ex.skus, ex.vectors, strict=True):
        refs.setdefault(sku, []).append(vector)
    for p in range(10):
        a, b = f"sku-{2 * p:03d}", f"sku-{2 * p + 1:03d}"
        for copy in range(2):
            for j, (va, vb) in enumerate(zip(refs[a], refs[b], strict=True)):
                hub.learn(a, vb, "cart-x", f"poison-{a}-{copy}-{j}")
                hub.learn(b, va, "cart-x", f"poison-{b}-{copy}-{j}")


def test_canary_first_then_everyone_and_a_bad_release_is_halted(
    broker: Broker, tmp_path: Path
) -> None:
    master = tmp_path / "hub" / "catalogue.db"
    master.parent.mkdir()
    fleet.build_catalogue(master, np.random.default_rng(3))
    provision(master)
    root = generate_private_key()
    key = issue_signing_key(root, "hub-s001-a", stores=[STORE])
    catalogue = HubCatalogue(master)
    policy = CanaryPolicy(carts=(CANARY,), soak_s=2.0, min_adopted=1.0)
    hub = Hub(tmp_path / "hub" / "hub.db", STORE, "hub-s001",
              HubSettings(port=broker.port, canary=policy),
              releaser=Releaser(catalogue, key, STORE)).start()
    carts = fleet._start_carts([CANARY, CONTROL], tmp_path / "carts", master, broker.port,
                               public_key_hex(root))
    canary, control = carts
    try:
        wait_until(lambda: canary.held() == 1 and control.held() == 1, 30,
              "the first release, promoted to both carts")

        # A good release: the canary cart first, the other only after the soak.
        query = fleet.confusing_query(master, "sku-000", "sku-001")
        assert catalogue.learn("sku-000", query, "cart-x", "p1")
        hub.request_release()
        wait_until(lambda: canary.held() == 2, 20, "the canary cart to run v2")
        assert control.held() == 1  # not before the soak
        wait_until(lambda: control.held() == 2, 20, "v2 promoted to the other cart")
        assert hub.verdicts[-1][0] == "promote"

        # A poisoned release: the canary cart's health check refuses it, the hub halts it.
        _poison(catalogue, master)
        hub.request_release()
        wait_until(lambda: any(v[0] == "halt" for v in hub.verdicts), 30, "the hub to halt v3")
        assert "rolled_back" in hub.verdicts[-1][1]
        assert canary.held() == 2  # its own health check already put it back
        time.sleep(policy.soak_s + 1.0)
        assert control.held() == 2  # never reached the rest of the fleet
        assert hub.releaser is not None
        state = hub.releaser.state()
        assert state.halted is not None and state.halted["version"] == 3
        assert state.canary is None

        # Halted means halted: what the hub learns now waits for an operator.
        released = len(hub.releases)
        assert catalogue.learn("sku-002", query, "cart-x", "p2")
        hub.request_release()
        time.sleep(1.5)
        assert len(hub.releases) == released
    finally:
        fleet._stop_carts(carts)
        hub.stop()
