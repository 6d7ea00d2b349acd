"""``cartos hub --config FILE``: the store hub service (receive, commit, acknowledge)."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path

import click

from cartos.cli.main import reports_errors


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
        settings = replace(settings, release_interval_s=c.release_interval_s)
    if not is_postgres_url(config.database):
        Path(config.database).parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    hub = Hub(config.database, config.store, config.hub_id, settings, releaser=releaser).start()
    click.echo(f"hub {config.hub_id} for store {config.store} on "
               f"{config.broker.host}:{config.broker.port}", err=True)
    try:
        stop.wait(seconds)
    finally:
        hub.stop()
        click.echo(f"hub stopped: {hub.committed} committed, {hub.duplicates} repeats dropped",
                   err=True)


def register(root: click.Group) -> None:
    root.add_command(hub_cmd)
