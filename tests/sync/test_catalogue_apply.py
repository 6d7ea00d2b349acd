"""A cart installs a verified, signed ``catalogue`` bundle into its own catalogue, and undoes it.

Every test runs the real path: a master catalogue at the hub (``HubCatalogue``) learns,
renders its difference from the carts' baseline as bundle parts, the parts are signed, and
the cart's :class:`~cartos.sync.bundles.store.BundleStore`, which lives in the cart's
catalogue file, verifies them and runs :class:`CatalogueUpdater`'s hooks. The catalogue is
the synthetic 40-SKU one of ``cartos bench fleet`` (1280-d unit vectors). What is checked is
what the cart would do next: its answers, and its prototypes and exemplars, byte for byte
where an undo must be exact.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cartos.bench.fleet import DIM, answer, build_catalogue, confusing_query
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import PROTOTYPE_LEVELS, CatalogStore
from cartos.hub.catalogue import HubCatalogue, provision
from cartos.inference.catalogue_model import SIGNATURE_KEY
from cartos.inference.corrections import CORRECTION_KIND, apply_correction
from cartos.inference.embedder import l2_normalise
from cartos.inference.model_card import ModelCard, card_path_for, shipped_model_path
from cartos.inference.recognizer import Recognizer
from cartos.sync.bundles import (
    BundleStore,
    Outcome,
    SigningKey,
    build_manifest,
    generate_private_key,
    issue_signing_key,
    public_key_hex,
)
from cartos.sync.catalogue_apply import (
    MODEL_META,
    UNDO_META_PREFIX,
    CatalogueUpdater,
    check_model,
)
from cartos.sync.catalogue_parts import BASELINE_META, FLEET_KIND, encode_prototype_deltas
from cartos.sync.errors import UpdateError

STORE = "s001"
CART = "cart-s001-0001"
OTHER_CART = "cart-s001-0002"

Parts = dict[str, tuple[str, bytes]]


@dataclass(frozen=True)
class State:
    """Everything a bundle may change in a catalogue, in comparable form."""

    version: int
    prototypes: dict[str, tuple[list[str], npt.NDArray[np.float32], list[int]]]
    exemplars: list[tuple[str, str, str, bytes]]
    skus: list[SkuRecord]
    model_meta: str | None
    baseline: str | None


def state_of(path: Path) -> State:
    with CatalogStore(path) as store:
        ex = store.exemplars()
        return State(
            version=store.version,
            prototypes={level: store.prototypes(level) for level in PROTOTYPE_LEVELS},
            exemplars=sorted(
                (sku, source, kind, vector.tobytes())
                for sku, source, kind, vector in zip(ex.skus, ex.sources, ex.kinds, ex.vectors,
                                                     strict=True)
            ),
            skus=store.list_skus(status=None),
            model_meta=store.meta_get(MODEL_META),
            baseline=store.meta_get(BASELINE_META),
        )


def same_catalogue(a: State, b: State) -> bool:
    """Same SKU rows, exemplars (vector bytes included) and prototypes at every level,
    bit for bit (the catalogue's version counter is not compared: an undo is a new change)."""
    if (a.exemplars, a.skus) != (b.exemplars, b.skus):
        return False
    for level in PROTOTYPE_LEVELS:
        (ka, ma, ca), (kb, mb, cb) = a.prototypes[level], b.prototypes[level]
        if ka != kb or ca != cb or not np.array_equal(ma, mb):
            return False
    return True


def assert_unchanged(before: State, after: State) -> None:
    assert after.version == before.version
    assert after.model_meta == before.model_meta
    assert after.baseline == before.baseline
    assert same_catalogue(before, after)


def prototype(path: Path, sku: str, level: str = "sku") -> npt.NDArray[np.float32]:
    with CatalogStore(path) as store:
        keys, matrix, _ = store.prototypes(level)
    row: npt.NDArray[np.float32] = matrix[keys.index(sku)]
    return row


def references(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The reference exemplars of every SKU, as one (n, DIM) matrix per SKU."""
    with CatalogStore(path) as store:
        ex = store.exemplars(kind="reference")
    out: dict[str, list[npt.NDArray[np.float32]]] = {}
    for sku, vector in zip(ex.skus, ex.vectors, strict=True):
        out.setdefault(sku, []).append(vector)
    return {sku: np.stack(rows) for sku, rows in out.items()}


def b64(vector: npt.NDArray[np.generic]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


class Fleet:
    """A hub's master catalogue and signing key, and one cart provisioned from it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.master = tmp / "hub" / "catalogue.db"
        self.cart = tmp / "cart" / "catalogue.db"
        self.master.parent.mkdir()
        self.cart.parent.mkdir()
        self.centres = build_catalogue(self.master, np.random.default_rng(0))
        self.baseline = provision(self.master)
        shutil.copy(self.master, self.cart)
        self.provisioned = state_of(self.cart)
        self.root = generate_private_key()
        self.key: SigningKey = issue_signing_key(self.root, "hub-s001-a", stores=[STORE])
        self.updater = CatalogueUpdater(self.cart, cart=CART)
        self.store = BundleStore(
            self.cart,
            root_key=public_key_hex(self.root),
            store_id=STORE,
            apply=self.updater.apply,
            restore=self.updater.restore,
            health_check=self.updater.health_check,
            certificates=[self.key.certificate_envelope],
        )
        self.version = 0

    @property
    def hub(self) -> HubCatalogue:
        return HubCatalogue(self.master)

    def offer(self, parts: Parts | None = None) -> Outcome:
        """Sign ``parts`` (default: what the master teaches now) as the next version, offer."""
        parts = self.hub.fleet_parts() if parts is None else parts
        self.version += 1
        now = int(time.time())
        manifest = build_manifest(bundle_type="catalogue", store=STORE, version=self.version,
                                  issued_at=now, expires_at=now + 3600,
                                  key_id=self.key.key_id, parts=parts)
        return self.store.offer(self.key.sign(manifest),
                                {manifest.part_ref(name): data
                                 for name, (_kind, data) in parts.items()})

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.close()


def delta(baseline: str, table: dict[str, list[list[str]]], dim: int = DIM) -> bytes:
    """A ``prototype_deltas`` part built by hand (rows already ``[source, base64]``)."""
    return json.dumps({"format": 1, "baseline": baseline, "dim": dim,
                       "exemplars": table}).encode()


# -- a hub correction reaches the cart --------------------------------------------------------


def test_hub_correction_changes_the_carts_answer(fleet: Fleet) -> None:
    x, y = "sku-000", "sku-001"
    query = confusing_query(fleet.cart, x, y)
    assert answer(fleet.cart, query) == y
    y_before = prototype(fleet.cart, y)

    assert fleet.hub.learn(x, query, OTHER_CART, "prompt-7")
    assert answer(fleet.master, query) == x  # the hub itself has learnt it
    assert answer(fleet.cart, query) == y  # the cart has not, yet

    outcome = fleet.offer()
    assert outcome.status == "applied", outcome
    assert (outcome.type, outcome.version) == ("catalogue", 1)
    assert answer(fleet.cart, query) == x
    # The recogniser the passing health check built is the one the runtime adopts.
    assert fleet.updater.recognizer is not None
    assert answer(fleet.cart, query, fleet.updater.recognizer) == x
    # Recomputed on the cart exactly as the hub computed it, from the same exemplars.
    assert np.allclose(prototype(fleet.cart, x), prototype(fleet.master, x), atol=1e-6)
    keys, provisioned, _ = fleet.provisioned.prototypes["sku"]
    assert not np.allclose(prototype(fleet.cart, x), provisioned[keys.index(x)], atol=1e-3)
    for level, group in (("family", "fam-0"), ("brand", "brand-0")):
        assert np.allclose(prototype(fleet.cart, group, level),
                           prototype(fleet.master, group, level), atol=1e-6)
    # The SKU nobody corrected keeps its prototype bit for bit.
    assert np.array_equal(prototype(fleet.cart, y), y_before)
    with CatalogStore(fleet.cart) as store:
        fleet_ex = store.exemplars(kind=FLEET_KIND)
    assert fleet_ex.skus == [x]
    assert fleet_ex.sources == [f"correction:{OTHER_CART}:prompt-7"]
    assert np.allclose(fleet_ex.vectors[0], l2_normalise(query[None, :])[0], atol=1e-6)
    assert [h["version"] for h in fleet.store.holding()] == [1]


# -- undo --------------------------------------------------------------------------------------


def test_rollback_restores_each_earlier_state_exactly(fleet: Fleet) -> None:
    hub = fleet.hub
    q1 = confusing_query(fleet.master, "sku-000", "sku-001")
    assert hub.learn("sku-000", q1, OTHER_CART, "p1")
    assert fleet.offer().status == "applied"
    after_first = state_of(fleet.cart)

    # The second bundle changes a SKU the first taught (cumulative: sku-000 gets a second
    # fleet exemplar) and one it did not touch (sku-009, another family and brand).
    q2 = confusing_query(fleet.master, "sku-000", "sku-002")
    q3 = confusing_query(fleet.master, "sku-009", "sku-010")
    assert hub.learn("sku-000", q2, OTHER_CART, "p2")
    assert hub.learn("sku-009", q3, "cart-s001-0003", "p1")
    assert fleet.offer().status == "applied"
    after_second = state_of(fleet.cart)
    assert not same_catalogue(after_second, after_first)
    assert after_second.version > after_first.version

    outcome = fleet.store.rollback("catalogue")
    assert (outcome.status, outcome.reason, outcome.version) == ("rolled_back", "requested", 1)
    back = state_of(fleet.cart)
    assert same_catalogue(back, after_first)
    assert back.version > after_second.version  # an undo is a change of its own
    assert fleet.store.current("catalogue") is not None
    assert [h["version"] for h in fleet.store.holding()] == [1]

    outcome = fleet.store.rollback("catalogue")
    assert (outcome.status, outcome.reason, outcome.version) == ("rolled_back", "requested", None)
    assert same_catalogue(state_of(fleet.cart), fleet.provisioned)
    assert fleet.store.current("catalogue") is None
    assert answer(fleet.cart, q1) == "sku-001"  # the provisioned answer again


def test_poisoning_bundle_fails_health_and_is_rolled_back(fleet: Fleet) -> None:
    """The hub learns, for ten pairs of SKUs, each one's references as the other's: every
    signature and format is right, but the cart would confuse 20 of its 40 SKUs."""
    refs = references(fleet.master)
    hub = fleet.hub
    for p in range(10):
        a, b = f"sku-{2 * p:03d}", f"sku-{2 * p + 1:03d}"
        for copy in range(2):
            for j in range(len(refs[b])):
                assert hub.learn(a, refs[b][j], OTHER_CART, f"poison-{a}-{copy}-{j}")
                assert hub.learn(b, refs[a][j], OTHER_CART, f"poison-{b}-{copy}-{j}")
    # It really is poison: the master catalogue no longer knows its own references.
    with CatalogStore(fleet.master) as master:
        assert master.exemplar_counts(kind=CORRECTION_KIND)["sku-000"] == 6
        recognizer = Recognizer.from_store(master)
    assert [r.topk[0].sku for r in recognizer.recognize_vectors(refs["sku-001"])] \
        == ["sku-000"] * len(refs["sku-001"])
    before = state_of(fleet.cart)

    outcome = fleet.offer()
    assert (outcome.status, outcome.reason) == ("rolled_back", "health_check"), outcome
    after = state_of(fleet.cart)
    assert same_catalogue(after, before)
    assert after.model_meta == before.model_meta
    assert fleet.store.current("catalogue") is None
    assert fleet.store.high_water("catalogue") == 1  # the poisoned version is never retried
    assert fleet.updater.recognizer is None
    with CatalogStore(fleet.cart) as store:
        assert store.exemplar_counts(kind=FLEET_KIND) == {}


# -- refusals: nothing changes ----------------------------------------------------------------


def test_bundle_on_another_baseline_is_refused(fleet: Fleet) -> None:
    other = provision(fleet.master, "b-reimported")  # after the cart got its copy
    assert other != fleet.baseline
    x, y = "sku-004", "sku-005"
    query = confusing_query(fleet.master, x, y)
    assert fleet.hub.learn(x, query, OTHER_CART, "p1")
    before = state_of(fleet.cart)

    outcome = fleet.offer()
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert "b-reimported" in outcome.detail and fleet.baseline in outcome.detail
    assert_unchanged(before, state_of(fleet.cart))
    assert answer(fleet.cart, query) == y
    assert fleet.store.current("catalogue") is None
    assert fleet.store.high_water("catalogue") == 0  # failed, not accepted: may come again


def _full_row(sku: str, **extra: Any) -> dict[str, Any]:
    return {**asdict(SkuRecord(sku, name="renamed", family="fam-0", brand="brand-0")), **extra}


MALFORMED: dict[str, Any] = {
    "row with an unknown field": lambda b: {
        "rows.json": ("catalogue_rows",
                      json.dumps({"skus": [_full_row("sku-000", colour="red")]}).encode()),
    },
    "row with a bad status": lambda b: {
        "rows.json": ("catalogue_rows",
                      json.dumps({"skus": [_full_row("sku-000", status="gone")]}).encode()),
    },
    "vector of the wrong length": lambda b: {
        "fleet.json": ("prototype_deltas",
                       delta(b, {"sku-000": [["correction:x:1", b64(np.ones(DIM - 1))]]})),
    },
    "non-finite vector": lambda b: {
        "fleet.json": ("prototype_deltas",
                       delta(b, {"sku-000": [["correction:x:1",
                                              b64(np.r_[np.ones(DIM - 1), np.nan])]]})),
    },
    "bad base64": lambda b: {
        "fleet.json": ("prototype_deltas",
                       delta(b, {"sku-000": [["correction:x:1", "not*base64!"]]})),
    },
    "dimension other than the catalogue's": lambda b: {
        "fleet.json": ("prototype_deltas",
                       delta(b, {"sku-000": [["correction:x:1", b64(np.ones(64))]]}, dim=64)),
    },
    "thresholds that are not JSON": lambda b: {
        "thresholds.json": ("thresholds", b"\xff{not json"),
    },
    "valid rows, then a bad delta": lambda b: {
        "rows.json": ("catalogue_rows", json.dumps({"skus": [_full_row("sku-000")]}).encode()),
        "fleet.json": ("prototype_deltas",
                       delta(b, {"sku-000": [["correction:x:1", "not*base64!"]]})),
    },
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_signed_parts_are_refused(fleet: Fleet, case: str) -> None:
    before = state_of(fleet.cart)
    parts = MALFORMED[case](fleet.baseline)
    outcome = fleet.offer(parts)
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert_unchanged(before, state_of(fleet.cart))
    assert fleet.store.current("catalogue") is None


def test_failure_half_way_through_leaves_the_previous_bundle(fleet: Fleet) -> None:
    """A well-formed delta that fails while being written (fleet exemplars for a SKU this
    cart lacks, after the valid SKUs' old fleet exemplars were already removed) must leave
    the first bundle's catalogue, not a mix."""
    x, y = "sku-000", "sku-001"
    query = confusing_query(fleet.master, x, y)
    assert fleet.hub.learn(x, query, OTHER_CART, "p1")
    assert fleet.offer().status == "applied"
    before = state_of(fleet.cart)

    rows = [["correction:x:2", b64(l2_normalise(fleet.centres[3][None, :])[0])]]
    parts: Parts = {"fleet.json": ("prototype_deltas", delta(fleet.baseline, {
        x: [], "sku-003": rows, "sku-999": rows}))}
    outcome = fleet.offer(parts)
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert "sku-999" in outcome.detail
    assert_unchanged(before, state_of(fleet.cart))
    assert answer(fleet.cart, query) == x
    current = fleet.store.current("catalogue")
    assert current is not None and current.version == 1


# -- the cart's own corrections ---------------------------------------------------------------


def test_own_correction_is_not_counted_twice(fleet: Fleet) -> None:
    x, y = "sku-006", "sku-007"
    query = confusing_query(fleet.cart, x, y)
    with CatalogStore(fleet.cart) as store:
        result = apply_correction(store, None, x, query, "p1")
    assert result.applied
    mine = state_of(fleet.cart)
    local = [e for e in mine.exemplars if e[1] == "correction:p1"]
    assert [(e[0], e[2]) for e in local] == [(x, CORRECTION_KIND)]
    assert answer(fleet.cart, query) == x

    assert fleet.hub.learn(x, query, CART, "p1")
    assert fleet.offer().status == "applied"
    after = state_of(fleet.cart)
    held = [e for e in after.exemplars if e[0] == x and e[2] != "reference"]
    assert [(e[1], e[2]) for e in held] == [(f"correction:{CART}:p1", FLEET_KIND)]
    assert not any(e[1] == "correction:p1" for e in after.exemplars)
    assert np.allclose(np.frombuffer(held[0][3], dtype="<f4"),
                       np.frombuffer(local[0][3], dtype="<f4"), atol=1e-6)
    with CatalogStore(fleet.cart) as store:
        assert store.exemplar_counts()[x] == 4  # three references and the correction, once
    assert np.allclose(prototype(fleet.cart, x), prototype(fleet.master, x), atol=1e-6)
    assert answer(fleet.cart, query) == x

    # Undoing the bundle gives the cart its own correction back.
    fleet.store.rollback("catalogue")
    assert same_catalogue(state_of(fleet.cart), mine)


def test_another_carts_correction_with_the_same_prompt_id_is_kept_apart(fleet: Fleet) -> None:
    """Prompt ids are unique on one cart only: another cart's ``p1`` is a different answer."""
    x, y = "sku-006", "sku-007"
    query = confusing_query(fleet.cart, x, y)
    with CatalogStore(fleet.cart) as store:
        assert apply_correction(store, None, x, query, "p1").applied
    other = confusing_query(fleet.master, x, "sku-008")
    assert fleet.hub.learn(x, other, OTHER_CART, "p1")
    assert fleet.offer().status == "applied"
    held = [(e[1], e[2]) for e in state_of(fleet.cart).exemplars
            if e[0] == x and e[2] != "reference"]
    assert sorted(held) == sorted([("correction:p1", CORRECTION_KIND),
                                   (f"correction:{OTHER_CART}:p1", FLEET_KIND)])


# -- new SKUs ----------------------------------------------------------------------------------


def test_sku_registered_at_the_hub_reaches_the_cart(fleet: Fleet) -> None:
    rng = np.random.default_rng(7)
    centre = l2_normalise(rng.normal(size=(1, DIM)))[0]
    vectors = l2_normalise(centre + 0.15 * rng.normal(size=(4, DIM))).astype(np.float32)
    record = SkuRecord("sku-new", name="new item", barcode="0012345678905",
                       family="fam-new", brand="brand-0", weight_g=250.0, weight_tol_g=10.0)
    # Near the new SKU's crops (a new crop of it, as the reviewed ones were embedded).
    query = l2_normalise((vectors.mean(axis=0) + 0.01 * rng.normal(size=DIM))[None, :])[0]
    query = query.astype(np.float32)
    assert answer(fleet.cart, query) != "sku-new"

    fleet.hub.register(record, vectors, [f"review/{i}.jpg" for i in range(4)])
    outcome = fleet.offer()
    assert outcome.status == "applied", outcome
    with CatalogStore(fleet.cart) as store:
        assert store.get_sku("sku-new") == record
        ex = store.exemplars(skus=["sku-new"])
    assert sorted(ex.sources) == [f"review/{i}.jpg" for i in range(4)]
    assert set(ex.kinds) == {FLEET_KIND}
    assert answer(fleet.cart, query) == "sku-new"
    assert np.allclose(prototype(fleet.cart, "sku-new"), prototype(fleet.master, "sku-new"),
                       atol=1e-6)
    assert np.allclose(prototype(fleet.cart, "fam-new", "family"),
                       prototype(fleet.master, "fam-new", "family"), atol=1e-6)

    # Rolled back, the SKU is no longer recognised (its row stays, discontinued).
    fleet.store.rollback("catalogue")
    assert answer(fleet.cart, query) != "sku-new"
    with CatalogStore(fleet.cart) as store:
        gone = store.get_sku("sku-new")
        assert gone is not None and gone.status == "discontinued"
        assert store.exemplar_counts().get("sku-new") is None
        assert "sku-new" not in store.prototype_keys("sku")


# -- models ------------------------------------------------------------------------------------


def _shipped() -> tuple[bytes, ModelCard]:
    path = shipped_model_path()
    return path.read_bytes(), ModelCard.load(card_path_for(path))


def test_garbage_model_is_refused_with_the_rest_of_the_bundle(fleet: Fleet) -> None:
    import hashlib

    _data, card = _shipped()
    garbage = np.random.default_rng(3).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    forged = replace(card, sha256=hashlib.sha256(garbage).hexdigest(), file_size=len(garbage))
    x, y = "sku-000", "sku-001"
    query = confusing_query(fleet.master, x, y)
    assert fleet.hub.learn(x, query, OTHER_CART, "p1")
    parts = fleet.hub.fleet_parts()
    parts["model.onnx"] = ("model", garbage)
    parts["model.card.json"] = ("model_card", forged.to_json().encode())
    before = state_of(fleet.cart)

    outcome = fleet.offer(parts)
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert "does not load" in outcome.detail
    assert_unchanged(before, state_of(fleet.cart))
    assert before.model_meta is None
    assert fleet.updater.active_model() is None
    assert answer(fleet.cart, query) == y  # the valid fleet part did not land either


def test_shipped_model_passes_the_check_and_a_dimension_mismatch_does_not(
        tmp_path: Path) -> None:
    data, card = _shipped()
    path = tmp_path / f"{card.sha256}.onnx"
    path.write_bytes(data)
    card_path_for(path).write_bytes(card_path_for(shipped_model_path()).read_bytes())
    check_model(path, card, 1280)  # loads, warms up, finite, deterministic, discriminates
    with pytest.raises(UpdateError, match="1280 dimensions, the catalogue in 64"):
        check_model(path, card, 64)
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UpdateError, match="does not load"):
        check_model(tampered, card, 1280)


def test_shipped_model_bundle_is_installed_and_undone(fleet: Fleet) -> None:
    data, card = _shipped()
    outcome = fleet.offer({"model.onnx": ("model", data),
                           "model.card.json": ("model_card", card.to_json().encode())})
    assert outcome.status == "applied", outcome
    active = fleet.updater.active_model()
    assert active is not None and active.read_bytes() == data
    assert active.parent == fleet.cart.with_name("catalogue-models")
    with CatalogStore(fleet.cart) as store:
        assert json.loads(store.meta_get(MODEL_META) or "{}")["sha256"] == card.sha256
    fleet.store.rollback("catalogue")
    assert fleet.updater.active_model() is None
    assert same_catalogue(state_of(fleet.cart), fleet.provisioned)


def test_model_failing_the_check_is_refused(fleet: Fleet) -> None:
    """A model that loads but whose check fails (here: embeds in the wrong dimension for
    this catalogue, as a different backbone would) is never recorded."""
    data, card = _shipped()

    def small_catalogue(path: Path, c: ModelCard, _dim: int) -> None:
        check_model(path, c, 64)

    fleet.updater.model_check = small_catalogue
    before = state_of(fleet.cart)
    outcome = fleet.offer({"model.onnx": ("model", data),
                           "model.card.json": ("model_card", card.to_json().encode())})
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert "dimensions" in outcome.detail
    assert_unchanged(before, state_of(fleet.cart))
    assert fleet.updater.active_model() is None


def _embedded_with(catalogue: Path, sha256: str) -> None:
    """Record that the catalogue's vectors came from the model ``sha256`` (as an import does)."""
    with CatalogStore(catalogue) as store, store.change("test", "embedded with"):
        store.meta_set(SIGNATURE_KEY, json.dumps({"model_sha256": sha256,
                                                  "views": ["orig", "flip"]}))


def test_a_new_backbone_without_its_rebuilt_catalogue_is_refused(fleet: Fleet) -> None:
    """Another model's embeddings cannot be scored against this catalogue's vectors."""
    data, card = _shipped()
    _embedded_with(fleet.cart, "cd" * 32)
    before = state_of(fleet.cart)
    outcome = fleet.offer({"model.onnx": ("model", data),
                           "model.card.json": ("model_card", card.to_json().encode())})
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert f"{card.sha256[:12]} is not the one this catalogue was embedded with" in outcome.detail
    assert "cdcdcdcdcdcd" in outcome.detail
    assert_unchanged(before, state_of(fleet.cart))
    assert fleet.updater.active_model() is None

    _embedded_with(fleet.cart, card.sha256)  # the same backbone, re-shipped: accepted
    outcome = fleet.offer({"model.onnx": ("model", data),
                           "model.card.json": ("model_card", card.to_json().encode())})
    assert outcome.status == "applied", outcome


def test_encoded_delta_round_trip_matches_hand_built(fleet: Fleet) -> None:
    """The hand-built parts above use the same layout as the hub's encoder."""
    v = np.arange(DIM, dtype=np.float32)
    assert json.loads(encode_prototype_deltas(fleet.baseline, DIM, {"sku-000": [("s", v)]})) \
        == json.loads(delta(fleet.baseline, {"sku-000": [["s", b64(v)]]}))


def test_hub_extending_an_existing_sku_matches_the_hub(fleet: Fleet) -> None:
    """Registering more crops of a SKU the carts already have: the bundle carries all its
    exemplars (references included); the cart must not hold the references twice."""
    with CatalogStore(fleet.master) as store:
        record = store.get_sku("sku-005")
    assert record is not None
    rng = np.random.default_rng(1)
    crops = l2_normalise(fleet.centres[5] + 0.15 * rng.normal(size=(2, DIM))).astype(np.float32)
    fleet.hub.register(record, crops, ["review/a.jpg", "review/b.jpg"])
    assert fleet.offer().status == "applied"
    with CatalogStore(fleet.cart) as cart, CatalogStore(fleet.master) as master:
        assert cart.exemplar_counts()["sku-005"] == master.exemplar_counts()["sku-005"] == 5
        kinds = sorted(cart.exemplars(skus=["sku-005"]).kinds)
    assert kinds == [FLEET_KIND] * 2 + ["reference"] * 3
    assert np.allclose(prototype(fleet.cart, "sku-005"), prototype(fleet.master, "sku-005"),
                       atol=1e-6)
    fleet.store.rollback("catalogue")
    assert same_catalogue(state_of(fleet.cart), fleet.provisioned)


# -- regressions: moved SKUs, discontinued SKUs, refused models, undo growth ---------------------


def _rows(*records: SkuRecord) -> Parts:
    return {"rows.json": ("catalogue_rows",
                          json.dumps({"skus": [asdict(r) for r in records]}).encode())}


def test_moving_a_sku_to_another_family_refreshes_both_families(fleet: Fleet) -> None:
    with CatalogStore(fleet.cart) as store:
        record = store.get_sku("sku-000")
    assert record is not None and record.family == "fam-0"
    assert fleet.offer(_rows(replace(record, family="fam-9"))).status == "applied"
    with CatalogStore(fleet.cart) as store:
        keys, matrix, _ = store.prototypes("sku")
        families, fam_matrix, fam_counts = store.prototypes("family")
    left = fam_matrix[families.index("fam-0")]
    assert fam_counts[families.index("fam-0")] == 3
    assert np.allclose(left, matrix[[keys.index(f"sku-00{i}") for i in (1, 2, 3)]].mean(axis=0))
    fleet.store.rollback("catalogue")
    assert same_catalogue(state_of(fleet.cart), fleet.provisioned)


def test_bundle_discontinuing_skus_passes_the_health_check(fleet: Fleet) -> None:
    with CatalogStore(fleet.cart) as store:
        records = [store.get_sku(f"sku-{i:03d}") for i in range(6)]
    gone = [replace(r, status="discontinued") for r in records if r is not None]
    outcome = fleet.offer(_rows(*gone))
    assert outcome.status == "applied", outcome


def test_refused_model_leaves_the_active_model_file_intact(fleet: Fleet) -> None:
    data, card = _shipped()
    card_json = card.to_json().encode()
    assert fleet.offer({"model.onnx": ("model", data),
                        "model.card.json": ("model_card", card_json)}).status == "applied"
    active = fleet.updater.active_model()
    assert active is not None
    outcome = fleet.offer({"model.onnx": ("model", b"\0" * 1000),
                           "model.card.json": ("model_card", card_json)})
    assert (outcome.status, outcome.reason) == ("failed", "apply_failed"), outcome
    assert fleet.updater.active_model() == active
    assert active.read_bytes() == data


def test_undo_records_are_kept_only_for_what_can_be_rolled_back(fleet: Fleet) -> None:
    for v in range(1, 4):
        query = confusing_query(fleet.master, f"sku-{v:03d}", f"sku-{v + 1:03d}")
        assert fleet.hub.learn(f"sku-{v:03d}", query, OTHER_CART, f"p{v}")
        assert fleet.offer().status == "applied"
    with CatalogStore(fleet.cart) as store:
        assert store.meta_get(UNDO_META_PREFIX + "catalogue:3")
        assert store.meta_get(UNDO_META_PREFIX + "catalogue:2")
        assert not store.meta_get(UNDO_META_PREFIX + "catalogue:1")
