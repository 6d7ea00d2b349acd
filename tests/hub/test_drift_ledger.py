"""The hub's drift ledger: carts' drift alerts in, a store-wide trigger out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from cartos.bench import fleet
from cartos.hub.api import create_review_app
from cartos.hub.catalogue import HubCatalogue, provision
from cartos.hub.drift import DriftLedger
from cartos.hub.review import ReviewStore
from cartos.hub.store import HubStore, Received


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _alert(cart: str, seq: int, trigger: str) -> Received:
    evidence: dict[str, Any] = {"trigger": trigger, "window": 7, "psi": {"brightness": 0.4}}
    return Received(f"{cart}-{seq}", cart, "s001", "events", seq,
                    {"type": "AlertRaised", "command": {"key": f"drift:{seq}", "kind": "drift",
                                                         "evidence": evidence}})


def _other(cart: str, seq: int) -> Received:
    return Received(f"{cart}-{seq}", cart, "s001", "events", seq,
                    {"type": "ItemAdded", "command": {"key": f"k{seq}", "sku": "sku-1"}})


def test_a_trigger_from_enough_carts_is_store_wide(tmp_path: Path) -> None:
    clock = Clock()
    with HubStore(tmp_path / "hub.db") as messages, \
            DriftLedger(tmp_path / "drift.db", clock=clock) as ledger:
        for i, cart in enumerate(("cart-a", "cart-b", "cart-c")):
            messages.commit([_other(cart, 1), _alert(cart, 2, "input_drift")])
            if i == 0:
                messages.commit([_alert(cart, 3, "class_accuracy")])
        touched = {(c, "events") for c in ("cart-a", "cart-b", "cart-c")}
        assert ledger.consume(messages, touched) is False  # never changes the catalogue
        ledger.consume(messages, touched)  # read again: nothing counted twice
        summary = ledger.summary()
        assert summary["triggers"]["input_drift"] == {
            "alerts": 3, "carts": 3, "cart_ids": ["cart-a", "cart-b", "cart-c"],
            "store_wide": True}
        assert summary["triggers"]["class_accuracy"]["store_wide"] is False
        assert summary["refresh_backbone"] is True
        clock.now += 7 * 3600  # older than the recent window: no longer counted
        assert ledger.summary()["triggers"] == {} and not ledger.summary()["refresh_backbone"]


def test_the_review_api_serves_the_drift_summary(tmp_path: Path) -> None:
    master = tmp_path / "catalogue.db"
    fleet.build_catalogue(master, np.random.default_rng(0))
    provision(master)
    with HubStore(tmp_path / "hub.db") as messages, \
            DriftLedger(tmp_path / "drift.db") as ledger, \
            ReviewStore(tmp_path / "review.db") as review:
        messages.commit([_alert("cart-a", 1, "embedding_drift")])
        ledger.consume(messages, {("cart-a", "*")})
        with TestClient(create_review_app(review, HubCatalogue(master), drift=ledger)) as http:
            body = http.get("/api/v1/drift", params={"store_wide_carts": 1}).json()
            assert body["triggers"]["embedding_drift"]["store_wide"] is True
            assert http.get("/api/v1/drift", params={"hours": 0}).status_code == 422
        with TestClient(create_review_app(review, HubCatalogue(master))) as http:
            assert http.get("/api/v1/drift").status_code == 404
