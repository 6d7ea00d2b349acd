"""Cutting and publishing catalogue releases: sign what the master catalogue teaches, retain it.

A release is a signed ``catalogue`` bundle of the master catalogue's
difference from the carts' baseline (:meth:`HubCatalogue.fleet_parts`). The
version counter lives in the master catalogue file, committed before the
bundle is published, so a hub that restarts never reuses a version (carts
would refuse it as a replay).

A release goes out either to every cart (``stable``) or first to a few
(``canary``, :mod:`cartos.hub.canary`): the retained manifest then names the
stable release for everyone and the candidate for the canary carts only.
:meth:`Releaser.promote` makes the candidate stable; :meth:`Releaser.halt`
withdraws it and stops further releases until an operator resumes them. The
retained chunks of releases that are neither stable nor candidate are cleared
(an empty retained message deletes one), so the broker holds at most those two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt

from cartos.catalog.store import CatalogStore
from cartos.hub.bundles import CHUNK_BYTES, publish_chunks, publish_manifest
from cartos.hub.catalogue import HubCatalogue
from cartos.sync import topics
from cartos.sync.bundles.keys import SigningKey
from cartos.sync.bundles.manifest import (
    Manifest,
    build_manifest,
    chunk_count,
    parse_manifest,
    strict_loads,
)

log = logging.getLogger(__name__)

BUNDLE_TYPE: Final = "catalogue"
RELEASE_META: Final = "fleet_release"
"""Master-catalogue meta: the release counter and what is out (see :class:`ReleaseState`)."""


@dataclass(frozen=True)
class Release:
    version: int
    envelope: bytes
    manifest: Manifest
    chunks: int
    published_at: float
    canary_carts: tuple[str, ...] = ()


@dataclass
class ReleaseState:
    """Persisted in the master catalogue's meta so a restarted hub republishes the same."""

    version: int = 0
    stable: str | None = None
    """Envelope every cart should run."""
    canary: dict[str, Any] | None = None
    """``{"envelope", "version", "carts", "started_at"}`` of the candidate, if any."""
    halted: dict[str, Any] | None = None
    """``{"version", "reason", "at"}``: releases stop until :meth:`Releaser.resume`."""
    published: list[str] | None = None
    """Manifests (canonical JSON) whose chunks are still retained on the broker."""
    digest: str | None = None
    """sha256 over the parts of the newest release: nothing to release while it matches."""

    @classmethod
    def load(cls, text: str | None) -> ReleaseState:
        data = json.loads(text) if text else {}
        return cls(int(data.get("version", 0)), data.get("stable"), data.get("canary"),
                   data.get("halted"), list(data.get("published", [])), data.get("digest"))

    def dump(self) -> str:
        return json.dumps({"version": self.version, "stable": self.stable,
                           "canary": self.canary, "halted": self.halted,
                           "published": self.published or [], "digest": self.digest},
                          sort_keys=True)


class Releaser:
    """Signs and publishes the master catalogue's state for one store."""

    def __init__(self, catalogue: HubCatalogue, key: SigningKey, store: str,
                 validity_s: int = 7 * 86_400, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.catalogue = catalogue
        self.key = key
        self.store = store
        self.validity_s = validity_s
        self.chunk_bytes = chunk_bytes
        self._saved: str | None = None
        """The persisted state as last read or written: this releaser is its only writer, so
        the hub's loop, which looks at it on every pass, never has to reopen the file."""

    # -- state -------------------------------------------------------------------------

    def state(self) -> ReleaseState:
        """A copy of the release state (callers change it and hand it to ``_save``)."""
        if self._saved is None:
            with CatalogStore(self.catalogue.path) as store:
                self._saved = store.meta_get(RELEASE_META) or ""
        return ReleaseState.load(self._saved)

    def _save(self, state: ReleaseState, summary: str) -> None:
        text = state.dump()
        with CatalogStore(self.catalogue.path) as store, store.change("release", summary):
            store.meta_set(RELEASE_META, text)
        self._saved = text

    def needs_release(self) -> bool:
        """Whether the master catalogue differs from the newest release."""
        return _digest(self.catalogue.fleet_parts()) != self.state().digest

    # -- releasing ---------------------------------------------------------------------

    def release(self, client: mqtt.Client, now: float | None = None,
                canary_carts: Sequence[str] = ()) -> Release:
        """Cut the next version from the catalogue's current state and publish it, to
        every cart or, with ``canary_carts``, to those only."""
        now = time.time() if now is None else now
        state = self.state()
        if state.halted is not None:
            raise RuntimeError(f"releases are halted since v{state.halted['version']}: "
                               f"{state.halted['reason']}")
        state.version += 1
        version = state.version
        self._save(state, f"release v{version}")  # the number is spent before anything is out
        parts = self.catalogue.fleet_parts()
        manifest = build_manifest(bundle_type=BUNDLE_TYPE, store=self.store, version=version,
                                  issued_at=int(now), expires_at=int(now) + self.validity_s,
                                  key_id=self.key.key_id, parts=parts)
        envelope = self.key.sign(manifest)
        chunks = publish_chunks(client, self.store, manifest,
                                {n: d for n, (_k, d) in parts.items()},
                                chunk_bytes=self.chunk_bytes)
        state.published = [*(state.published or []), manifest.canonical().decode()]
        state.digest = _digest(parts)
        if canary_carts:
            state.canary = {"envelope": envelope.decode(), "version": version,
                            "carts": sorted(canary_carts), "started_at": now}
        else:
            state.stable, state.canary = envelope.decode(), None
        self._publish(client, state)
        self._save(state, f"published v{version}")
        log.info("released %s v%d (%d chunks)%s", BUNDLE_TYPE, version, chunks,
                 f" to {len(canary_carts)} canary carts" if canary_carts else "")
        return Release(version, envelope, manifest, chunks, time.time(), tuple(canary_carts))

    def promote(self, client: mqtt.Client) -> int:
        """The canary candidate becomes what every cart runs; returns its version."""
        state = self.state()
        if state.canary is None:
            raise RuntimeError("no canary release to promote")
        state.stable, version = state.canary["envelope"], int(state.canary["version"])
        state.canary = None
        self._publish(client, state)
        self._save(state, f"promoted v{version}")
        log.info("promoted %s v%d to every cart", BUNDLE_TYPE, version)
        return version

    def halt(self, client: mqtt.Client, reason: str) -> dict[str, Any]:
        """Withdraw the canary candidate and stop releasing; returns what was halted
        (``version``, ``carts``) so the canary carts can be told to roll back."""
        state = self.state()
        if state.canary is None:
            raise RuntimeError("no canary release to halt")
        halted = {"version": int(state.canary["version"]), "reason": reason, "at": time.time(),
                  "carts": list(state.canary["carts"])}
        state.halted, state.canary = halted, None
        self._publish(client, state)
        self._save(state, f"halted v{halted['version']}")
        log.warning("halted canary %s v%d: %s", BUNDLE_TYPE, halted["version"], reason)
        return halted

    def resume(self) -> None:
        """An operator looked at the halted release; releasing may go on."""
        state = self.state()
        state.halted = None
        self._save(state, "releases resumed")

    def republish(self, client: mqtt.Client) -> None:
        """Publish the retained manifest again (after a hub restart or a broker that lost it)."""
        self._publish(client, self.state())

    def _publish(self, client: mqtt.Client, state: ReleaseState) -> None:
        stable = [state.stable.encode()] if state.stable else []
        canary = None
        if state.canary is not None:
            canary = (list(state.canary["carts"]), [str(state.canary["envelope"]).encode()])
        publish_manifest(client, self.store, stable, canary=canary,
                         certificates=[self.key.certificate_envelope])
        live = {e for e in (state.stable, (state.canary or {}).get("envelope")) if e}
        live_versions = {int(json.loads(e)["manifest"]["version"]) for e in live}
        kept = []
        for text in state.published or []:
            manifest = parse_manifest(strict_loads(text.encode()))
            if manifest.version in live_versions:
                kept.append(text)
            else:
                self._clear(client, manifest)
        state.published = kept

    def _clear(self, client: mqtt.Client, manifest: Manifest) -> None:
        ref = topics.bundle_ref(manifest.type, manifest.version)
        for spec in manifest.parts:
            for index in range(chunk_count(spec.size, self.chunk_bytes)):
                client.publish(topics.bundle_chunk(self.store, ref, spec.name, index), b"",
                               qos=1, retain=True)


def _digest(parts: dict[str, tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        kind, data = parts[name]
        h.update(f"{name}\0{kind}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
