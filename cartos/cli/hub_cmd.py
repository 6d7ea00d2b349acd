"""``cartos hub --config FILE``: the store hub service (receive, commit, acknowledge).

With a ``[review]`` section (and the ``[catalogue]`` it needs) the hub also takes review
items in (:class:`~cartos.hub.review.ReviewStore` as a hub consumer), serves the
attendants' API (:mod:`cartos.hub.api`) on a uvicorn thread, and deletes expired crops at
start and every hour (:meth:`~cartos.hub.review.ReviewStore.sweep`).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from cartos.cli.main import reports_errors

if TYPE_CHECKING:
    from cartos.hub.review import ReviewStore

REVIEW_SWEEP_INTERVAL_S: Final = 3600.0
"""How often expired review crops are deleted: retention counts in days."""


@click.command("hub")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Hub configuration (TOML; see cartos/hub/config.py).")
@click.option("--seconds", type=float, default=None, help="Stop after this long (tests, demos).")
@reports_errors
def hub_cmd(config_path: Path, seconds: float | None) -> None:
    """Run the store hub until SIGTERM: every cart's uplink committed once, then acknowledged."""
    from cartos.hub.config import load_hub_config
    from cartos.hub.message_store import is_postgres_url
    from cartos.hub.service import Hub, HubSettings

    config = load_hub_config(config_path)
    tls = config.broker.tls
    settings = HubSettings(
        host=config.broker.host, port=config.broker.port, batch=config.batch,
        linger_s=config.linger_s,
        tls=None if tls is None else {"ca_certs": str(tls.ca_certs),
                                      "certfile": str(tls.certfile),
                                      "keyfile": str(tls.keyfile)})
    releaser = None
    if config.catalogue is not None:
        from cartos.hub.catalogue import HubCatalogue
        from cartos.hub.release import Releaser
        from cartos.service.errors import ConfigError
        from cartos.sync.bundles import load_signing_key

        c = config.catalogue
        try:
            key = load_signing_key(c.signing_key.read_bytes(), c.certificate.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{config_path}: catalogue signing key: {exc}") from exc
        releaser = Releaser(HubCatalogue(c.path), key, config.store,
                            validity_s=c.validity_days * 86_400)
        canary = None
        if c.canary is not None:
            from cartos.hub.canary import CanaryPolicy

            canary = CanaryPolicy(carts=tuple(c.canary.carts), fraction=c.canary.fraction,
                                  soak_s=60.0 * c.canary.soak_minutes,
                                  min_adopted=c.canary.min_adopted,
                                  min_events=c.canary.min_events,
                                  max_correction_increase=c.canary.max_correction_increase)
        settings = replace(settings, release_interval_s=c.release_interval_s, canary=canary)
    if not is_postgres_url(config.database):
        Path(config.database).parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    review = None
    if config.review is not None and releaser is not None:
        from cartos.hub.review import ReviewStore

        r = config.review
        assert r.database is not None  # load_hub_config always fills it
        r.database.parent.mkdir(parents=True, exist_ok=True)
        review = ReviewStore(r.database, crop_retention_days=r.crop_retention_days,
                             open_retention_days=r.open_retention_days)
    hub = Hub(config.database, config.store, config.hub_id, settings, releaser=releaser)
    api = None
    drift = None
    try:
        if review is not None:
            from cartos.hub.drift import DriftLedger

            hub.add_consumer(review.consume)
            review.sweep()
            assert config.review is not None and config.review.database is not None
            drift = DriftLedger(config.review.database.with_name("drift.db"))
            hub.add_consumer(drift.consume)
        hub.start()
        click.echo(f"hub {config.hub_id} for store {config.store} on "
                   f"{config.broker.host}:{config.broker.port}", err=True)
        if review is not None and releaser is not None and config.review is not None \
                and config.review.api_port:
            from cartos.hub.api import ReviewApiServer, create_review_app

            app = create_review_app(review, releaser.catalogue, on_change=hub.request_release,
                                    drift=drift)
            api = ReviewApiServer(app, config.review.api_host, config.review.api_port).start()
            click.echo(f"review API on {api.url}", err=True)
        _serve(stop, seconds, review)
    finally:
        if api is not None:
            api.stop()
        hub.stop()
        if review is not None:
            review.close()
        if drift is not None:
            drift.close()
        click.echo(f"hub stopped: {hub.committed} committed, {hub.duplicates} repeats dropped",
                   err=True)


def _serve(stop: threading.Event, seconds: float | None, review: ReviewStore | None) -> None:
    """Wait for SIGTERM (or ``seconds``), sweeping expired review crops every hour."""
    from cartos.errors import CartosError

    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        wait = REVIEW_SWEEP_INTERVAL_S
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        if wait <= 0 or stop.wait(wait):
            return
        if review is not None:
            try:
                review.sweep()
            except CartosError as exc:  # tried again next hour
                click.echo(f"review retention sweep failed: {exc}", err=True)


def register(root: click.Group) -> None:
    root.add_command(hub_cmd)
