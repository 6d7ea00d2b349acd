"""Cutting and publishing catalogue releases: sign what the master catalogue teaches, retain it.

A release is a signed ``catalogue`` bundle of the master catalogue's
difference from the carts' baseline (:meth:`HubCatalogue.fleet_parts`). The
version counter lives in the master catalogue file, committed before the
bundle is published, so a hub that restarts never reuses a version (carts
would refuse it as a replay). The chunks of the release two versions back are
cleared from the broker (an empty retained message deletes one), so retained
storage holds at most the current release and the one carts may still be
downloading.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Final

import paho.mqtt.client as mqtt

from cartos.catalog.store import CatalogStore
from cartos.hub.bundles import CHUNK_BYTES, publish_bundle
from cartos.hub.catalogue import HubCatalogue
from cartos.sync import topics
from cartos.sync.bundles.keys import SigningKey
from cartos.sync.bundles.manifest import Manifest, build_manifest, parse_manifest, strict_loads

log = logging.getLogger(__name__)

BUNDLE_TYPE: Final = "catalogue"
RELEASE_META: Final = "fleet_release"
"""Master-catalogue meta: ``{"version", "manifests": [older, newer]}`` of the releases out."""


@dataclass(frozen=True)
class Release:
    version: int
    envelope: bytes
    manifest: Manifest
    chunks: int
    published_at: float


class Releaser:
    """Signs and publishes the master catalogue's state for one store."""

    def __init__(self, catalogue: HubCatalogue, key: SigningKey, store: str,
                 validity_s: int = 7 * 86_400, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.catalogue = catalogue
        self.key = key
        self.store = store
        self.validity_s = validity_s
        self.chunk_bytes = chunk_bytes

    def _next_version(self) -> tuple[int, list[bytes]]:
        with CatalogStore(self.catalogue.path) as store:
            state = json.loads(store.meta_get(RELEASE_META) or '{"version": 0, "manifests": []}')
            version = int(state["version"]) + 1
            with store.change("release", f"release v{version}"):
                store.meta_set(RELEASE_META, json.dumps({**state, "version": version}))
        return version, [m.encode() for m in state["manifests"]]

    def _remember(self, version: int, manifest: Manifest) -> None:
        with CatalogStore(self.catalogue.path) as store:
            state = json.loads(store.meta_get(RELEASE_META) or "{}")
            kept = [*state.get("manifests", [])[-1:], manifest.canonical().decode()]
            with store.change("release", f"published v{version}"):
                store.meta_set(RELEASE_META, json.dumps({"version": version, "manifests": kept}))

    def release(self, client: mqtt.Client, now: float | None = None) -> Release:
        """Cut the next version from the catalogue's current state and publish it."""
        now = time.time() if now is None else now
        version, older = self._next_version()
        parts = self.catalogue.fleet_parts()
        manifest = build_manifest(bundle_type=BUNDLE_TYPE, store=self.store, version=version,
                                  issued_at=int(now), expires_at=int(now) + self.validity_s,
                                  key_id=self.key.key_id, parts=parts)
        envelope = self.key.sign(manifest)
        chunks = publish_bundle(client, self.store,
                                [(envelope, manifest, {n: d for n, (_k, d) in parts.items()})],
                                certificates=[self.key.certificate_envelope],
                                chunk_bytes=self.chunk_bytes)
        self._remember(version, manifest)
        if len(older) == 2:  # what was published before the previous release: nobody needs it
            self._clear(client, parse_manifest(strict_loads(older[0])))
        log.info("released %s v%d (%d chunks)", BUNDLE_TYPE, version, chunks)
        return Release(version, envelope, manifest, chunks, time.time())

    def _clear(self, client: mqtt.Client, manifest: Manifest) -> None:
        ref = topics.bundle_ref(manifest.type, manifest.version)
        for spec in manifest.parts:
            for index in range(max(1, math.ceil(spec.size / self.chunk_bytes))):
                client.publish(topics.bundle_chunk(self.store, ref, spec.name, index), b"",
                               qos=1, retain=True)
