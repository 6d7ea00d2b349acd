"""``cartos model …``: build (needs the build extra), verify, info."""

from __future__ import annotations

import random
from pathlib import Path

import click

from cartos.cli.inputs import expand_inputs
from cartos.cli.main import emit_json, reports_errors
from cartos.inference.model_card import (
    SHIPPED_MODEL_NAME,
    ModelCard,
    card_path_for,
    shipped_model_path,
    verify_model,
)


@click.group("model")
def model() -> None:
    """Backbone models: export + INT8 quantisation, verification, cards."""


@model.command("build")
@click.option(
    "--calibration",
    "calibration",
    multiple=True,
    required=True,
    help="Calibration images: files, directories or CSVs with an `image` column (repeatable).",
)
@click.option("--split", default=None, help="Only CSV rows whose `split` column equals this.")
@click.option("--limit", default=256, show_default=True, help="Calibration images to sample.")
@click.option("--seed", default=0, show_default=True)
@click.option("--variant", type=click.Choice(["lite0", "lite1", "lite2"]), default="lite0")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: the package's models/ folder, i.e. replace the shipped model).",
)
@click.option(
    "--calibration-method",
    type=click.Choice(["minmax", "percentile", "entropy"]),
    default="minmax",
    show_default=True,
)
@click.option("--keep-fp32", is_flag=True, help="Also keep the FP32 parent next to the INT8 model.")
@click.option(
    "--format",
    "model_format",
    type=click.Choice(["onnx", "tflite"]),
    default="onnx",
    show_default=True,
    help="onnx: ONNX Runtime QDQ model; tflite: LiteRT INT8 model for ARM carts (minmax only).",
)
@reports_errors
def build_cmd(
    calibration: tuple[str, ...],
    split: str | None,
    limit: int,
    seed: int,
    variant: str,
    out: Path | None,
    calibration_method: str,
    keep_fp32: bool,
    model_format: str,
) -> None:
    """Export EfficientNet-Lite to ONNX or LiteRT, quantise to INT8 per channel, write its card."""
    from cartos.modelbuild.build import build_model  # imports torch: build extra only
    from cartos.modelbuild.tflite import build_tflite_model

    images = [i.path for i in expand_inputs(calibration, split)]
    random.Random(seed).shuffle(images)
    images = sorted(images[:limit])
    out_dir = out or shipped_model_path().parent
    name = SHIPPED_MODEL_NAME if variant == "lite0" else f"efficientnet_{variant}_int8"
    build = build_tflite_model if model_format == "tflite" else build_model
    result = build(
        out_dir,
        images,
        variant=variant,
        name=name,
        keep_fp32=keep_fp32,
        calibration_method=calibration_method,
    )
    click.echo(result.card.to_json())
    click.echo(f"wrote {result.int8_path} and {card_path_for(result.int8_path)}")


@model.command("verify")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@reports_errors
def verify_cmd(path: Path | None) -> None:
    """Check a model file (default: the shipped one) against its card's sha256 and size."""
    target = path or shipped_model_path()
    card = verify_model(target)
    click.echo(f"ok: {target.name} sha256 {card.sha256}")


@model.command("info")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@reports_errors
def info_cmd(path: Path | None) -> None:
    """Print a model card."""
    target = path or shipped_model_path()
    emit_json(ModelCard.load(card_path_for(target)).__dict__)


def register(root: click.Group) -> None:
    root.add_command(model)
