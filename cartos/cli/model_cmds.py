"""``cartos model …``: build and refresh (need the build extra), verify, info."""

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


@model.command("refresh")
@click.option("--references", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Catalogue manifest: the images to fine-tune on.")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True,
              help="Labelled non-reference images: even rows calibrate both models, odd rows "
                   "are the fixed test set the gate judges on.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the INT8 model, its card and refresh.json.")
@click.option("--current", "current_model", type=click.Path(exists=True, path_type=Path),
              default=None, help="The model to beat [default: the shipped one].")
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--time-budget-min", type=click.FloatRange(min=0.0, min_open=True), default=20.0,
              show_default=True, help="Fine-tuning stops when this is spent.")
@click.option("--batch-size", type=click.IntRange(2), default=16, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--protected", default="", help="Comma-separated SKUs no refresh may regress.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@reports_errors
def refresh_cmd(references: Path, calibration: Path, out_dir: Path, current_model: Path | None,
                epochs: int, time_budget_min: float, batch_size: int, device: str,
                protected: str, seed: int, as_json: bool) -> None:
    """Fine-tune the backbone on the store's images, export INT8, and gate it.

    The last stdout line is JSON: ``accepted``, ``reason``, ``top1_before``, ``top1_after``,
    ``wall_s``, ``model``. A refused model stays in OUT, marked refused in OUT/refresh.json
    with every number; nothing ships it.
    """
    import json

    from cartos.inference.catalogue_model import resolve_model
    from cartos.refresh.gate import GateSettings
    from cartos.refresh.job import refresh
    from cartos.refresh.train import TrainSettings

    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    settings = TrainSettings(epochs=epochs, time_budget_s=time_budget_min * 60,
                             batch_size=batch_size, seed=seed, device=device)
    gate = GateSettings(protected_skus=tuple(s.strip() for s in protected.split(",")
                                             if s.strip()))
    current = resolve_model(current_model) if current_model is not None else None
    result = refresh(references, calibration, out_dir, settings, gate, current, log)
    click.echo(json.dumps(result.summary()))


def register(root: click.Group) -> None:
    root.add_command(model)
