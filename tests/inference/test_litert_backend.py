"""The LiteRT backend and the shipped INT8 ``.tflite``: card, registry, agreement with ONNX.

Runs wherever the LiteRT runtime (ai-edge-litert, or tflite-runtime) is installed, which
is every install since it is a runtime dependency; the module skips only without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartos.bench.litert import cosine_stats, onnx_as_written
from cartos.inference.backend import BackendOptions, InferenceBackend, available, create
from cartos.inference.errors import BackendUnavailableError, ModelIntegrityError
from cartos.inference.model_card import (
    LITERT_SUFFIX,
    ModelCard,
    card_path_for,
    sha256_file,
    shipped_model_path,
    verify_model,
)
from cartos.inference.preprocess import decode_image, to_tensor
from cartos.synth import catalogue_designs, query_style, render_image

# The backend module itself fails to import exactly when no LiteRT runtime is installed.
litert_backend = pytest.importorskip(
    "cartos.inference.backends.litert_backend",
    reason="LiteRT runtime not installed (pip install ai-edge-litert)",
)
TensorQuantisation = litert_backend.TensorQuantisation
input_layout = litert_backend.input_layout

LITERT_MODEL = shipped_model_path(suffix=LITERT_SUFFIX)
ONNX_MODEL = shipped_model_path()


def synthetic_products(count: int = 16, seed: int = 11) -> list[np.ndarray]:
    """Procedural pack shots (BGR) as the cart camera would crop them."""
    designs = catalogue_designs(seed, count, 4)
    return [
        render_image(design, np.random.default_rng(seed * 1000 + i), query_style(0.05))
        for i, design in enumerate(designs)
    ]


@pytest.fixture(scope="module")
def litert() -> InferenceBackend:
    return create("litert", LITERT_MODEL, BackendOptions(threads=2))


@pytest.fixture(scope="module")
def product_batch() -> np.ndarray:
    spec = ModelCard.load(card_path_for(LITERT_MODEL)).input_spec
    return np.stack([to_tensor(image, spec) for image in synthetic_products()])


def test_shipped_tflite_matches_its_card() -> None:
    card = verify_model(LITERT_MODEL)
    assert card_path_for(LITERT_MODEL).name == "efficientnet_lite0_int8.tflite.card.json"
    assert card.file == LITERT_MODEL.name
    assert sha256_file(LITERT_MODEL) == card.sha256
    assert LITERT_MODEL.stat().st_size == card.file_size < 6_000_000
    assert card.precision == "int8" and card.embedding_size == 1280
    onnx_card = ModelCard.load(card_path_for(ONNX_MODEL))
    assert card.input_spec == onnx_card.input_spec  # both formats are fed identically
    assert card.source["weights"] == onnx_card.source["weights"]
    assert card.agreement["cosine_mean"] >= 0.99
    assert {"batch1", "batch8"} <= set(card.latency)


def test_cards_of_the_two_formats_do_not_collide() -> None:
    assert card_path_for(ONNX_MODEL) != card_path_for(LITERT_MODEL)
    assert card_path_for(ONNX_MODEL).name == "efficientnet_lite0_int8.card.json"


def test_tampered_tflite_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / LITERT_MODEL.name
    data = bytearray(LITERT_MODEL.read_bytes())
    data[len(data) // 3] ^= 0x5A
    copy.write_bytes(bytes(data))
    card_path_for(copy).write_bytes(card_path_for(LITERT_MODEL).read_bytes())
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_model(copy)


def test_registry_creates_the_litert_backend(litert: InferenceBackend) -> None:
    assert "litert" in available()
    assert litert.name == "litert"
    assert litert.output_dim == 1280
    out = litert.run(np.zeros((2, 3, 224, 224), np.float32))
    assert out.shape == (2, 1280) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert litert.run(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 1280)


def test_wrong_input_shape_is_rejected(litert: InferenceBackend) -> None:
    with pytest.raises(ValueError, match="224"):
        litert.run(np.zeros((1, 224, 224, 3), np.float32))


def test_agrees_with_the_onnx_model_on_synthetic_products(
    litert: InferenceBackend,
    product_batch: np.ndarray,
    record_property: Callable[[str, object], None],
) -> None:
    """Same backbone, same quantisation recipe: the two formats embed alike.

    The ONNX model is evaluated as written (every QDQ pair exact), which is the quantised
    model itself; ONNX Runtime's fused integer kernels add CPU-dependent error on top
    (measured by ``cartos bench litert``).
    """
    lite = litert.run(product_batch)
    reference = onnx_as_written(ONNX_MODEL, product_batch)
    stats = cosine_stats(lite, reference)
    record_property("litert_vs_onnx", stats)
    print(f"LiteRT vs ONNX INT8 on {len(product_batch)} synthetic products: {stats}")
    assert stats["cosine_mean"] >= 0.99, stats
    assert stats["cosine_min"] >= 0.97, stats
    # Agreement is specific: each product is far closer to itself than to the others.
    a = lite / np.linalg.norm(lite, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert (np.argmax(a @ b.T, axis=1) == np.arange(len(a))).all()


def test_batch_sizes_give_the_same_vectors(
    litert: InferenceBackend, product_batch: np.ndarray
) -> None:
    eight = product_batch[:8]
    batch8 = litert.run(eight)
    singles = np.concatenate([litert.run(eight[i : i + 1]) for i in range(8)])
    batch3 = np.concatenate([litert.run(eight[i : i + 3]) for i in range(0, 8, 3)])
    np.testing.assert_allclose(batch8, singles, rtol=0, atol=1e-4)
    np.testing.assert_allclose(batch8, batch3, rtol=0, atol=1e-4)


def test_embedder_runs_on_litert(product_batch: np.ndarray) -> None:
    from cartos.inference.embedder import Embedder

    embedder = Embedder(model_path=LITERT_MODEL, backend="litert", views=("orig",))
    try:
        images = synthetic_products(4)
        vectors = embedder.embed_arrays(images)
        assert vectors.shape == (4, 1280)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert embedder.card.sha256 == sha256_file(LITERT_MODEL)
    finally:
        embedder.close()


# ------------------------------------------------------------------ channels-last, full integer


def _tiny_nhwc_int8_model(path: Path, scale: float, side: int = 8) -> None:
    """A real LiteRT flatbuffer: int8 NHWC image -> per-channel mean -> reshape to (1, 3).

    The reshape has the batch baked in, like graphs exported with a fixed batch of 1, so the
    backend cannot resize it and must feed it one image at a time.
    """
    flatbuffers = pytest.importorskip("flatbuffers")
    fb = pytest.importorskip("ai_edge_litert.schema_py_generated")

    def quant() -> object:
        return fb.QuantizationParametersT(scale=[scale], zeroPoint=[0])

    def int32_data(values: list[int]) -> list[int]:
        return list(np.asarray(values, dtype="<i4").tobytes())

    int8, int32 = fb.TensorType.INT8, fb.TensorType.INT32
    tensors = [
        fb.TensorT(
            shape=[1, side, side, 3], type=int8, buffer=1, name="image", quantization=quant()
        ),
        fb.TensorT(shape=[2], type=int32, buffer=2, name="axes"),
        fb.TensorT(shape=[1, 1, 1, 3], type=int8, buffer=3, name="pooled", quantization=quant()),
        fb.TensorT(shape=[2], type=int32, buffer=4, name="shape"),
        fb.TensorT(shape=[1, 3], type=int8, buffer=5, name="embedding", quantization=quant()),
    ]
    buffers = [
        fb.BufferT(),
        fb.BufferT(),
        fb.BufferT(data=int32_data([1, 2])),
        fb.BufferT(),
        fb.BufferT(data=int32_data([1, 3])),
        fb.BufferT(),
    ]
    mean, reshape = fb.BuiltinOperator.MEAN, fb.BuiltinOperator.RESHAPE
    codes = [
        fb.OperatorCodeT(deprecatedBuiltinCode=mean, builtinCode=mean),
        fb.OperatorCodeT(deprecatedBuiltinCode=reshape, builtinCode=reshape),
    ]
    ops = [
        fb.OperatorT(
            opcodeIndex=0,
            inputs=[0, 1],
            outputs=[2],
            builtinOptionsType=fb.BuiltinOptions.ReducerOptions,
            builtinOptions=fb.ReducerOptionsT(keepDims=True),
        ),
        fb.OperatorT(
            opcodeIndex=1,
            inputs=[2, 3],
            outputs=[4],
            builtinOptionsType=fb.BuiltinOptions.ReshapeOptions,
            builtinOptions=fb.ReshapeOptionsT(newShape=[1, 3]),
        ),
    ]
    graph = fb.SubGraphT(tensors=tensors, inputs=[0], outputs=[4], operators=ops, name="main")
    model = fb.ModelT(version=3, operatorCodes=codes, subgraphs=[graph], buffers=buffers)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_channels_last_integer_model_with_fixed_batch(tmp_path: Path) -> None:
    scale = 2.0 / 127
    path = tmp_path / "tiny.tflite"
    _tiny_nhwc_int8_model(path, scale)
    backend = create("litert", path, BackendOptions(threads=1))
    assert backend.output_dim == 3
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (5, 3, 8, 8)).astype(np.float32)
    x[1, 0] = 1.0  # a channel the transpose must not mix with the others
    x[1, 1] = -1.0
    out = backend.run(x)
    assert out.shape == (5, 3) and out.dtype == np.float32
    # Input and output rounding each cost at most half a step.
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=0, atol=scale)
    np.testing.assert_allclose(out[1, :2], [1.0, -1.0], rtol=0, atol=scale)


def test_closed_backend_refuses_to_run(tmp_path: Path) -> None:
    path = tmp_path / "tiny.tflite"
    _tiny_nhwc_int8_model(path, 0.05)
    backend = create("litert", path)
    backend.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        backend.run(np.zeros((1, 3, 8, 8), np.float32))


def test_unloadable_file_is_a_model_integrity_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelIntegrityError, match="LiteRT cannot load"):
        create("litert", bad)


@pytest.mark.parametrize(
    ("shape", "layout"),
    [((1, 3, 224, 224), "NCHW"), ((1, 224, 224, 3), "NHWC"), ((4, 3, 8, 8), "NCHW")],
)
def test_input_layout(shape: tuple[int, ...], layout: str) -> None:
    assert input_layout(shape) == layout


@pytest.mark.parametrize("shape", [(1, 224, 224), (1, 4, 224, 224), (1, 224, 224, 1)])
def test_input_layout_rejects_non_images(shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelIntegrityError):
        input_layout(shape)


@given(
    values=st.lists(st.floats(-4.0, 4.0, width=32), min_size=1, max_size=64),
    scale=st.floats(1e-3, 0.1),
    zero_point=st.integers(-128, 127),
    unsigned=st.booleans(),
)
def test_quantise_dequantise_round_trip(
    values: list[float], scale: float, zero_point: int, unsigned: bool
) -> None:
    dtype = np.dtype(np.uint8 if unsigned else np.int8)
    zp = zero_point + 128 if unsigned else zero_point
    q = TensorQuantisation(dtype, scale, zp)
    x = np.asarray(values, dtype=np.float32)
    back = q.dequantise(q.quantise(x))
    info = np.iinfo(dtype)
    low, high = (info.min - zp) * scale, (info.max - zp) * scale
    inside = (x >= low) & (x <= high)
    assert np.all(np.abs(back[inside] - x[inside]) <= scale / 2 + 1e-6)
    # Outside the representable range values saturate at the nearest end.
    assert np.allclose(back[x > high], high, atol=1e-6)
    assert np.allclose(back[x < low], low, atol=1e-6)


# ------------------------------------------------------------------ rebuild from torch


@pytest.mark.slow
def test_rebuild_from_torch_reproduces_the_quality(
    tmp_path: Path, litert: InferenceBackend, product_batch: np.ndarray
) -> None:
    """litert-torch conversion + ai-edge-quantizer INT8 from synthetic calibration images."""
    pytest.importorskip("torch")
    pytest.importorskip("litert_torch", reason="build extra (litert-torch) not installed")
    pytest.importorskip("ai_edge_quantizer", reason="build extra (ai-edge-quantizer) missing")
    from cartos.modelbuild.tflite import build_tflite_model

    calibration = []
    for i, image in enumerate(synthetic_products(32, seed=5)):
        path = tmp_path / "calibration" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), image)
        calibration.append(path)
    assert decode_image(calibration[0]).shape[2] == 3
    result = build_tflite_model(tmp_path / "out", calibration, seconds=0.2)
    card = verify_model(result.int8_path)
    assert result.int8_path.suffix == LITERT_SUFFIX
    assert card.sha256 == sha256_file(result.int8_path)
    assert card.agreement["cosine_mean"] >= 0.99
    assert card.embedding_size == 1280
    rebuilt = create("litert", result.int8_path)
    stats = cosine_stats(rebuilt.run(product_batch), litert.run(product_batch))
    print(f"rebuilt (synthetic calibration) vs shipped LiteRT model: {stats}")
    assert stats["cosine_mean"] >= 0.98, stats
