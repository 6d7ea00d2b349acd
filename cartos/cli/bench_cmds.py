"""``cartos bench …``: long measurements, kept out of the test suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cartos.cli.main import reports_errors
from cartos.fusion.policy import DEFAULT_UNKNOWN_SHARE


def _save(out: Path | None, results: Any, indent: int = 2) -> None:
    """Write a benchmark's results as JSON to ``out`` (its folder made), when one is given."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=indent) + "\n")


@click.group("bench")
def bench() -> None:
    """Benchmarks on the real product-image data sets (../shared/data or $CARTOS_DATA)."""


@bench.command("recognition")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/bench/recognition.json"),
    show_default=True,
    help="Where to write the JSON results.",
)
@click.option("--no-fp32", is_flag=True, help="Skip the FP32 comparison (needs the build extra).")
@reports_errors
def recognition_cmd(out: Path, no_fp32: bool) -> None:
    """GroZi-120 protocol: accuracy, accept precision, unknowns, ECE, INT8 vs FP32, add, snacks."""
    from cartos.bench.recognition import run

    results = run(out, log=lambda m: click.echo(m, err=True), with_fp32=not no_fp32)
    click.echo(json.dumps(results, indent=2, default=float))


@bench.command("int8")
@click.option("--rounds", default=9, show_default=True, help="Interleaved FP32/INT8 rounds.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of each round.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/bench/int8_throughput.json"),
    show_default=True,
)
@reports_errors
def int8_cmd(rounds: int, seconds: float, out: Path) -> None:
    """INT8 vs FP32 throughput side by side at batch 1 and 8 (default ORT settings)."""
    import tempfile

    from cartos.bench.recognition import int8_throughput

    with tempfile.TemporaryDirectory() as tmp:
        results = int8_throughput(Path(tmp), rounds, seconds)
    _save(out, results, 2)
    click.echo(json.dumps(results, indent=2))


@bench.command("bridge")
@click.option("--ber", default=1e-4, show_default=True, help="Bit-error rate, both directions.")
@click.option("--frames", default=100_000, show_default=True, help="MCU frames to send.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON here (e.g. docs/bench/bridge.json).",
)
@reports_errors
def bridge_cmd(ber: float, frames: int, seed: int, as_json: bool, out: Path | None) -> None:
    """Emulated board over a real pty with bit errors: corrupt readings, lost/duplicated scans."""
    from cartos.bench.bridge import run

    results = run(ber, frames, seed=seed, log=lambda m: click.echo(m, err=True))
    if not as_json:
        for key, value in results.items():
            click.echo(f"{key:>26}: {value}", err=True)
    _save(out, results, 2)
    click.echo(json.dumps(results))


@bench.command("settle")
@click.option("--hours", default=1.0, show_default=True, help="Simulated hours of the soak.")
@click.option("--seed", default=0, show_default=True)
@click.option("--trials", default=50, show_default=True, help="Placements per scenario.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout, no table.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/bench/settle.json"),
    show_default=True,
    help="Where to write the JSON results.",
)
@reports_errors
def settle_cmd(hours: float, seed: int, trials: int, as_json: bool, out: Path) -> None:
    """Scale settle detection: latency to `settled`, misses, false events per hour."""
    from cartos.bench.settle import run

    if hours <= 0 or trials < 1:
        raise click.BadParameter("--hours must be > 0 and --trials >= 1")
    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    results = run(hours, seed, log=log, trials=trials)
    _save(out, results, 2)
    click.echo(json.dumps(results))


@bench.command("litert")
@click.option("--images", default=512, show_default=True, help="GroZi-120 query crops to embed.")
@click.option("--rounds", default=7, show_default=True, help="Interleaved latency rounds.")
@click.option("--seconds", default=1.5, show_default=True, help="Length of each round.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/bench/litert.json"),
    show_default=True,
    help="Where to write the JSON results.",
)
@reports_errors
def litert_cmd(images: int, rounds: int, seconds: float, out: Path) -> None:
    """LiteRT INT8 vs ONNX Runtime INT8: embedding agreement and ms/image at 1 and 2 threads."""
    from cartos.bench.litert import run

    results = run(images, rounds, seconds, log=lambda m: click.echo(m, err=True))
    _save(out, results, 2)
    click.echo(json.dumps(results, indent=2))


@bench.command("durability")
@click.option("--kills", default=200, show_default=True, help="SIGKILL/restart cycles.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@reports_errors
def durability_cmd(kills: int, seed: int, as_json: bool, out: Path | None) -> None:
    """Basket writer killed at random points: acknowledged commands lost/duplicated, integrity."""
    from cartos.bench.durability import run

    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    results = run(kills, seed=seed, log=log)
    _save(out, results, 2)
    click.echo(json.dumps(results))


@bench.command("fusion")
@click.option(
    "--references",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Catalogue manifest of reference images.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Labelled non-reference images (recognition and fusion calibration).",
)
@click.option(
    "--queries",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="One add event per row; a SKU outside the catalogue is an unknown item.",
)
@click.option("--grozi", is_flag=True, help="Write and use the GroZi-120 protocol's manifests.")
@click.option("--scan-share", default=0.5, show_default=True, help="Share of rows scanned.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="No progress lines, only the JSON line.")
@click.option(
    "--policy-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the fitted fusion policy (JSON) here.",
)
@click.option(
    "--embedding-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep image embeddings in this .npz between runs.",
)
@click.option(
    "--unknown-share",
    type=float,
    default=DEFAULT_UNKNOWN_SHARE,
    show_default=True,
    help="Share of items outside the catalogue the fusion thresholds are fitted for "
    "(reweights the simulated unknowns; see cartos.fusion.policy.DEFAULT_UNKNOWN_SHARE).",
)
@reports_errors
def fusion_cmd(
    references: Path | None,
    calibration: Path | None,
    queries: Path | None,
    grozi: bool,
    scan_share: float,
    seed: int,
    as_json: bool,
    policy_out: Path | None,
    embedding_cache: Path | None,
    unknown_share: float | None,
) -> None:
    """Vision x weight x barcode fusion vs recognition alone on the same add events."""
    import tempfile

    from cartos.bench.fusion import prepare_grozi, run

    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    with tempfile.TemporaryDirectory() as tmp:
        if grozi:
            references, calibration, queries = prepare_grozi(Path(tmp), seed)
        if references is None or calibration is None or queries is None:
            raise click.UsageError("give --references, --calibration and --queries, or --grozi")
        results = run(
            references,
            calibration,
            queries,
            scan_share,
            seed,
            log,
            None,
            policy_out,
            embedding_cache,
            unknown_share,
        )
    click.echo(json.dumps(results))


@bench.command("runtime")
@click.option("--rate", default=5.0, show_default=True, help="Item events per second.")
@click.option("--seconds", default=600.0, show_default=True, help="How long to sustain it.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@reports_errors
def runtime_cmd(rate: float, seconds: float, as_json: bool, out: Path | None) -> None:
    """Event -> decision latency (p50/p95/p99) and sustained load on the sim profile."""
    from cartos.bench.runtime_latency import run

    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    results = run(rate, seconds, log=log)
    _save(out, results, 2)
    click.echo(json.dumps(results))


@bench.command("sync")
@click.option("--messages", type=int, default=10_000, show_default=True,
              help="Corrections the cart writes and uplinks.")
@click.option("--outages", type=int, default=100, show_default=True,
              help="Random faults: broker SIGKILL + restart, connection reset, cart SIGKILL.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@reports_errors
def sync_cmd(messages: int, outages: int, seed: int, as_json: bool, out: Path | None) -> None:
    """Corrections from one cart to the hub through outages, on a real Mosquitto."""
    from cartos.bench.sync import run

    say = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    result = run(messages=messages, outages=outages, seed=seed, log=say)
    _save(out, result, 1)
    click.echo(json.dumps(result))


@bench.command("fleet")
@click.option("--carts", type=int, default=200, show_default=True,
              help="Simulated carts connected to one broker.")
@click.option("--trials", type=int, default=3, show_default=True,
              help="Corrections made on cart A, one after the other.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the simulated carts' files go (e.g. /dev/shm: on one shared disk "
                   "every cart's fsyncs queue behind each other, as real carts' never do).")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@reports_errors
def fleet_cmd(carts: int, trials: int, seed: int, workdir: Path | None, as_json: bool,
              out: Path | None) -> None:
    """A correction on cart A changes every other cart's answer: propagation p50/p95."""
    from cartos.bench.fleet import run

    say = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    result = run(carts=carts, trials=trials, seed=seed, log=say, workdir=workdir)
    _save(out, result, 1)
    click.echo(json.dumps(result))


def _sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError as exc:
        raise click.BadParameter(f"comma-separated integers, got {value!r}") from exc
    if not sizes or sizes[0] < 8:
        raise click.BadParameter("give catalogue sizes of at least 8 SKUs, e.g. 100,1000,2000")
    return sizes


@bench.command("growth")
@click.option("--sizes", default="100,1000,2000", show_default=True, callback=_sizes,
              help="Catalogue sizes (nested: each is the first N SKUs of the largest).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--refs", type=click.IntRange(1), default=5, show_default=True,
              help="Reference images of the most popular SKU.")
@click.option("--queries", type=click.IntRange(2), default=4, show_default=True,
              help="Query images per SKU: even rows calibrate, odd rows are measured.")
@click.option("--unknown", type=click.IntRange(0), default=50, show_default=True,
              help="Held-out products (never in the catalogue), --queries images each.")
@click.option("--long-tail", "long_tail", type=click.FloatRange(1.0), default=4.0,
              show_default=True, help="Reference count of the most over the least popular SKU.")
@click.option("--min-test-queries", type=click.IntRange(0), default=1000, show_default=True,
              help="Test queries wanted at each size below 500 SKUs: their first SKUs get "
                   "extra query images, so a small catalogue is not judged on a few hundred.")
@click.option("--cache", "cache_root", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="Cache root for images + embeddings, one DIR/<params-hash> per parameter "
                   "set [default: ~/.cache/cartos/growth].")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("docs/bench"), show_default=True,
              help="Where growth.json, growth.md and the PNG charts go.")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON line on stdout.")
@reports_errors
def growth_cmd(sizes: list[int], seed: int, refs: int, queries: int, unknown: int,
               long_tail: float, min_test_queries: int, cache_root: Path | None,
               out_dir: Path, as_json: bool) -> None:
    """Growth curve: the prototype recogniser vs a closed-set softmax head as SKUs are added."""
    from cartos.bench.growth import GrowthParams, default_cache_root, markdown_table, run

    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    params = GrowthParams(max_skus=sizes[-1], refs=refs, queries=queries, unknown=unknown,
                          long_tail=long_tail, seed=seed, min_test_queries=min_test_queries)
    results = run(sizes, params, cache_root or default_cache_root(), out_dir, log=log)
    if not as_json:
        click.echo(markdown_table(results), err=True)
    click.echo(json.dumps(results))


@bench.command("refresh")
@click.option("--dataset", type=click.Choice(["grozi120", "snacks"]), default="grozi120",
              show_default=True)
@click.option("--holdout", type=click.IntRange(0), default=20, show_default=True,
              help="Last SKUs kept out of catalogue and training: the unknown items.")
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--time-budget-min", type=click.FloatRange(min=0.0, min_open=True), default=20.0,
              show_default=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the manifests and the refreshed model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("docs/bench/refresh.json"), show_default=True)
@reports_errors
def refresh_cmd(dataset: str, holdout: int, epochs: int, time_budget_min: float, work: Path,
                out: Path) -> None:
    """The refreshed backbone vs the shipped one on a real data set, judged by the gate."""
    from cartos.bench.refresh import run
    from cartos.refresh.train import TrainSettings

    results = run(work, dataset, holdout,
                  TrainSettings(epochs=epochs, time_budget_s=time_budget_min * 60),
                  log=lambda m: click.echo(m, err=True))
    _save(out, results, 2)
    click.echo(json.dumps(results))


def register(root: click.Group) -> None:
    root.add_command(bench)
