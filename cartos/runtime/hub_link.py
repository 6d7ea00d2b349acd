"""The cart service's link to the store hub, built from the profile's ``[sync]`` section.

The sync client runs on its own thread beside the runtime (``cartos.sync.cart_client``):
it drains the basket's outbox and installs signed catalogue releases into the same
catalogue file the runtime recognises against (the bundle store lives in that file, see
``cartos.sync.catalogue_apply``). After a release is applied, the runtime is asked to
reload its catalogue on its own thread; it never shares a recogniser across threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cartos.inference.recognizer import Recognizer
from cartos.profiles.schema import SyncConfig
from cartos.service.config import Credentials
from cartos.sync.bundles import BundleStore
from cartos.sync.bundles.store import Outcome
from cartos.sync.cart_client import CartSync, SyncSettings
from cartos.sync.catalogue_apply import CatalogueUpdater

log = logging.getLogger(__name__)


def sync_settings(config: SyncConfig, credentials: Credentials) -> SyncSettings:
    """MQTT settings; a TLS key comes from the service's credentials, never from TOML."""
    tls = None
    if config.tls is not None:
        tls = {"ca_certs": str(config.tls.ca_certs), "certfile": str(config.tls.certfile),
               "keyfile": str(credentials.path(config.tls.key_credential))}
    return SyncSettings(host=config.host, port=config.port, keepalive_s=config.keepalive_s,
                        tls=tls)


def start_hub_link(config: SyncConfig, credentials: Credentials, catalogue: Path,
                   basket_db: Path, state_dir: Path,
                   on_applied: Callable[[Recognizer | None], None]) -> CartSync:
    """Start the sync client; ``on_applied`` is called (on the sync thread) after every
    release that was applied or rolled back, so the runtime reloads its catalogue. It is
    given the recogniser the health check built from an applied release (None after a
    rollback), so the runtime need not build it again."""
    updater = CatalogueUpdater(catalogue, models_dir=state_dir / "models", cart=config.cart)

    def bundles() -> BundleStore:
        return BundleStore(catalogue, root_key=config.root_key, store_id=config.store,
                           apply=updater.apply, restore=updater.restore,
                           health_check=updater.health_check)

    def outcome(result: Outcome) -> None:
        log.info("catalogue release v%s: %s %s", result.version, result.status,
                 result.reason or "")
        if result.status == "applied":
            on_applied(updater.recognizer)
        elif result.status == "rolled_back":
            on_applied(None)

    return CartSync(basket_db, config.store, config.cart, sync_settings(config, credentials),
                    bundles=bundles, staging=state_dir / "bundle-staging",
                    on_outcome=outcome).start()
