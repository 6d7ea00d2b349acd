"""Runtime scenarios through the real pty, the real INT8 model and the real basket file.

Each plays a short trip and asserts the final basket and alerts exactly.
"""

from __future__ import annotations

from pathlib import Path

from cartos.runtime.simulation import SimulatedStore, Step, run_trip


def _known(store: SimulatedStore, i: int):  # type: ignore[no-untyped-def]
    return sorted(store.known.values(), key=lambda p: p.sku)[i]


def _alerts(result) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(a["kind"] for a in result.basket["alerts"])


def test_multiples_land_as_one_line_with_the_right_quantity(sim_store: SimulatedStore,
                                                             tmp_path: Path) -> None:
    x = _known(sim_store, 2)
    result = run_trip(sim_store, [Step("put", x, scan=True, count=3)], tmp_path)
    assert {i["sku"]: i["qty"] for i in result.basket["items"]} == {x.sku: 3}
    assert _alerts(result) == []
    assert result.decisions[0]["quantity"] == 3


def test_switched_label_is_flagged_and_the_truth_is_billed(sim_store: SimulatedStore,
                                                           tmp_path: Path) -> None:
    real, label = _known(sim_store, 3), _known(sim_store, 7)
    assert abs(real.weight_g - label.weight_g) > 3 * (real.weight_tol_g + label.weight_tol_g)
    result = run_trip(sim_store, [Step("put", real, scan_as=label)], tmp_path)
    # The scanned label is contradicted by the scale (and, when confident, by the
    # camera: then it is called a ticket switch): never accepted as the label.
    assert {"ticket_switch", "weight_mismatch"} & set(_alerts(result))
    assert result.decisions[0]["decision"] != "accept"
    # the shopper confirms what really went in: billed as that, never as the label
    assert {i["sku"]: i["qty"] for i in result.basket["items"]} == {real.sku: 1}
    assert "runtime_error" not in _alerts(result)


def test_camera_down_runs_on_barcode_and_weight(sim_store: SimulatedStore,
                                                tmp_path: Path) -> None:
    a, b = _known(sim_store, 0), _known(sim_store, 5)
    result = run_trip(sim_store, [Step("put", a, scan=True), Step("put", b)], tmp_path,
                      camera_on=False)
    assert result.mode == "barcode_weight"
    first, second = result.decisions
    assert first["decision"] == "accept" and first["sku"] == a.sku  # barcode + weight agree
    assert second["decision"] != "accept" and second["prompt"]  # weight alone: ask
    # The shopper could not pick it from weight-only suggestions: it waits for staff,
    # it is not guessed into the basket.
    assert {i["sku"]: i["qty"] for i in result.basket["items"]} == {a.sku: 1}
    assert result.basket["review"] == 1


def test_removal_of_something_never_added_raises_an_alert(sim_store: SimulatedStore,
                                                          tmp_path: Path) -> None:
    x = _known(sim_store, 4)
    result = run_trip(sim_store, [Step("put", x, scan=True), Step("take", x),
                                  Step("take", x)], tmp_path)
    assert result.basket["items"] == []
    assert "removed_never_added" in _alerts(result)


def _modes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [m for _, m in result.modes]


def test_scale_and_link_faults_degrade_and_recover_without_restart(
    sim_store: SimulatedStore, tmp_path: Path
) -> None:
    a, b = _known(sim_store, 1), _known(sim_store, 6)
    result = run_trip(
        sim_store, [Step("put", a, scan=True), Step("put", b, scan=True)], tmp_path,
        step_s=4.5, faults=[(8.0, "adc_disconnect", 1.0), (9.5, "unplug", 1.0)],
    )
    modes = _modes(result)
    assert "vision_barcode" in modes  # load cell wire cut: camera and barcode carry on
    assert "camera_only" in modes  # microcontroller cable out
    assert modes[-1] == "full"  # both came back by themselves
    assert modes.index("vision_barcode") < modes.index("camera_only")
    assert {i["sku"]: i["qty"] for i in result.basket["items"]} == {a.sku: 1, b.sku: 1}


def test_model_that_will_not_load_leaves_barcode_only(sim_store: SimulatedStore,
                                                      tmp_path: Path) -> None:
    from cartos.profiles.loader import load_profile

    sim = load_profile("sim")
    broken = sim.model_copy(update={"inference": sim.inference.model_copy(
        update={"model": tmp_path / "missing.onnx"})})
    a, b = _known(sim_store, 2), _known(sim_store, 8)
    result = run_trip(sim_store, [Step("put", a, scan=True), Step("put", b)], tmp_path,
                      profile=broken)
    assert _modes(result) == ["barcode_only"]  # announced from the start, whatever else is up
    first, second = result.decisions
    assert first["decision"] == "accept" and first["sku"] == a.sku  # the barcode still works
    assert second["decision"] != "accept"  # no camera answer: never a guess
