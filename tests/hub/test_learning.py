"""The hub learns what carts were told, releases it signed, and every cart's answer follows."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cartos.bench import fleet
from cartos.catalog.store import CatalogStore
from cartos.hub.catalogue import LEARNED_META_PREFIX, HubCatalogue, provision
from cartos.hub.config import load_hub_config
from cartos.hub.store import HubStore, Received
from cartos.inference.corrections import CORRECTION_KIND
from cartos.service.errors import ConfigError
from cartos.sync.bundles import generate_private_key, issue_signing_key
from cartos.sync.catalogue_parts import decode_prototype_deltas
from tests.sync.conftest import require_mosquitto

CART = "cart-s001-0003"


def _f16(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f2").tobytes()).decode()


def _correction(seq: int, sku: str, exemplar: object) -> Received:
    command = {"sku": sku, "qty": 1, "corrects": f"prompt:{seq}", "exemplar": exemplar}
    return Received(f"m{seq}", CART, "s001", "corrections", seq,
                    {"type": "ItemAdded", "command": command})


@pytest.fixture()
def master(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.db"
    fleet.build_catalogue(path, np.random.default_rng(1))
    provision(path, "b-test")
    return path


def test_committed_corrections_are_learned_once_and_bad_exemplars_skipped(
    master: Path, tmp_path: Path
) -> None:
    query = fleet.confusing_query(master, "sku-000", "sku-001")
    nan = np.full(1280, np.nan, dtype=np.float32)
    with HubStore(tmp_path / "hub.db") as messages:
        messages.commit([
            _correction(1, "sku-000", {"embedding_f16": _f16(query)}),
            _correction(2, "sku-000", None),                       # nothing to learn from
            _correction(3, "sku-000", {"embedding_f16": "%%%"}),   # not base64
            _correction(4, "sku-000", {"embedding_f16": _f16(nan)}),  # not finite
            _correction(5, "no-such-sku", {"embedding_f16": _f16(query)}),
            _correction(6, "sku-002", {"embedding_f16": _f16(query)}),
        ])
        hub = HubCatalogue(master)
        assert hub.catch_up(messages, CART) == 2
        assert hub.catch_up(messages, CART) == 0  # the cursor moved: nothing twice
        with CatalogStore(master) as store:
            learned = store.exemplars(kind=CORRECTION_KIND)
            assert store.meta_get(LEARNED_META_PREFIX + CART) == "6"
        assert sorted(learned.sources) == [f"correction:{CART}:prompt:1",
                                           f"correction:{CART}:prompt:6"]
        sent = query.astype("<f2").astype(np.float32)
        cosine = float(learned.vectors[0] @ sent / np.linalg.norm(sent))
        assert cosine > 0.99999  # the same vector, unit-normalised on arrival

        baseline, dim, table = decode_prototype_deltas(hub.fleet_parts()["fleet.json"][1])
        assert (baseline, dim) == ("b-test", 1280)
        assert sorted(table) == ["sku-000", "sku-002"]


def test_a_catalogue_without_a_baseline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.db"
    fleet.build_catalogue(path, np.random.default_rng(1))
    with pytest.raises(Exception, match="no fleet baseline"):
        HubCatalogue(path)


def test_the_hub_config_takes_a_catalogue_section_and_a_postgres_url(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('store = "s001"\nhub_id = "hub-s001"\n'
                    'database = "postgresql://hub@db.store.lan/cartos"\n'
                    '[catalogue]\npath = "cat.db"\nsigning_key = "k.pem"\n'
                    'certificate = "k.cert"\n[catalogue.canary]\ncarts = ["cart-1"]\n'
                    'soak_minutes = 5\n')
    config = load_hub_config(path)
    assert config.database == "postgresql://hub@db.store.lan/cartos"
    assert config.catalogue is not None and config.catalogue.path == tmp_path / "cat.db"
    assert config.catalogue.canary is not None
    assert (config.catalogue.canary.carts, config.catalogue.canary.soak_minutes) == (
        ["cart-1"], 5.0)
    path.write_text(path.read_text() + "halt_on = \"anything\"\n")  # unknown: refused
    with pytest.raises(ConfigError, match="halt_on"):
        load_hub_config(path)


def test_the_hub_process_with_a_mismatched_signing_key_exits_78(
    master: Path, tmp_path: Path
) -> None:
    root = generate_private_key()
    key, other = (issue_signing_key(root, k, stores=["s001"]) for k in ("a", "b"))
    (tmp_path / "k.pem").write_bytes(key.private_pem())
    (tmp_path / "k.cert").write_bytes(other.certificate_envelope)
    path = tmp_path / "hub.toml"
    path.write_text(f'store = "s001"\nhub_id = "hub-s001"\ndatabase = "hub.db"\n'
                    f'[catalogue]\npath = "{master}"\nsigning_key = "k.pem"\n'
                    'certificate = "k.cert"\n[broker]\nport = 1\n')
    proc = subprocess.run([sys.executable, "-m", "cartos", "hub", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "certifies another key" in proc.stderr


def test_a_correction_on_one_cart_changes_every_other_carts_answer() -> None:
    """The fleet benchmark, small: real broker, hub, signed releases, carts in a worker."""
    require_mosquitto()
    started = time.monotonic()
    result = fleet.run(carts=6, trials=2)
    assert result["carts_unchanged"] == 0
    assert result["bundles_not_applied"] == 0
    assert result["releases"] >= 3  # the start state, then one per correction
    assert 0 < result["propagation_p95_s"] < 30, json.dumps(result)
    assert time.monotonic() - started < 120


def test_a_calibration_refitted_at_the_hub_ships_and_the_cart_installs_it(
    master: Path, tmp_path: Path
) -> None:
    import shutil
    import time as clock

    from cartos.inference.calibration import Calibration, LogisticModel
    from cartos.inference.recognizer import CALIBRATION_ARTIFACT
    from cartos.sync.bundles import BundleStore, build_manifest, public_key_hex
    from cartos.sync.catalogue_apply import CatalogueUpdater

    hub = HubCatalogue(master)
    assert "thresholds.json" not in hub.fleet_parts()  # nothing refitted since the baseline
    cart = tmp_path / "cart.db"
    shutil.copy(master, cart)
    with CatalogStore(master) as store:
        version = store.version
    model = LogisticModel(weights=[4.0, 8.0], bias=-3.0, mean=[0.5, 0.1], scale=[0.2, 0.1])
    refit = Calibration(version, 0.05, model, model, 0.9, 0.6, 0.5, 0.7, 0.7)
    with CatalogStore(master) as store, store.change("calibrate", "refit at the hub"):
        store.put_artifact(CALIBRATION_ARTIFACT, refit.to_json().encode())
    parts = hub.fleet_parts()
    assert parts["thresholds.json"] == ("thresholds", refit.to_json().encode())

    root = generate_private_key()
    key = issue_signing_key(root, "k1", stores=["s001"])
    now = int(clock.time())
    manifest = build_manifest(bundle_type="catalogue", store="s001", version=1, issued_at=now,
                              expires_at=now + 600, key_id=key.key_id, parts=parts)
    updater = CatalogueUpdater(cart)
    with BundleStore(cart, root_key=public_key_hex(root), store_id="s001",
                     apply=updater.apply, restore=updater.restore,
                     health_check=updater.health_check,
                     certificates=[key.certificate_envelope]) as bundles:
        outcome = bundles.offer(key.sign(manifest),
                                {manifest.part_ref(n): d for n, (_k, d) in parts.items()})
        assert outcome.accepted, outcome
        with CatalogStore(cart) as store:
            assert store.get_artifact(CALIBRATION_ARTIFACT) == refit.to_json().encode()
        bundles.rollback("catalogue")
    with CatalogStore(cart) as store:  # no calibration before: none after the rollback
        assert store.get_artifact(CALIBRATION_ARTIFACT) in (None, b"")
