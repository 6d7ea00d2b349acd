"""Publishing signed bundles: the retained manifest message and every part's retained chunks.

Everything is retained, so a cart that was offline during a release gets the
newest manifest the moment it subscribes and can fetch the chunks at its own
pace; the manifest goes out last, so no cart ever sees a bundle whose chunks
are not there yet. Signing happens before this module (``cartos.sync.bundles``):
the broker and this code are not trusted by the carts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import paho.mqtt.client as mqtt

from cartos.sync import payloads, topics
from cartos.sync.bundles.manifest import Manifest, split_part

CHUNK_BYTES = 96 * 1024
"""Chunk size: well under the decoder's per-message cap once base64-encoded."""


def publish_chunks(client: mqtt.Client, store: str, manifest: Manifest,
                   parts: Mapping[str, bytes], *, chunk_bytes: int = CHUNK_BYTES,
                   timeout_s: float = 30.0) -> int:
    """Publish (retained) every chunk of one bundle's parts; waits for every PUBACK."""
    ref = topics.bundle_ref(manifest.type, manifest.version)
    infos = []
    for name, data in parts.items():
        for chunk in split_part(manifest, name, data, chunk_bytes):
            body = payloads.encode("bundle_chunk", payloads.chunk_payload(manifest.type, chunk))
            infos.append(client.publish(
                topics.bundle_chunk(store, ref, name, chunk.index), body, qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(timeout=timeout_s)
    return len(infos)


def publish_manifest(client: mqtt.Client, store: str, envelopes: Sequence[bytes], *,
                     certificates: Sequence[bytes] = (), revocations: bytes | None = None,
                     canary: tuple[Sequence[str], Sequence[bytes]] | None = None,
                     timeout_s: float = 30.0) -> None:
    """Publish the retained manifest message: the bundles every cart should run and, with
    ``canary=(cart ids, envelopes)``, the bundles only those carts should try first."""
    message: dict[str, object] = {
        "bundles": [envelope.decode() for envelope in envelopes],
        "certificates": [c.decode() for c in certificates],
    }
    if revocations is not None:
        message["revocations"] = revocations.decode()
    if canary is not None:
        message["canary"] = {"carts": list(canary[0]), "bundles": [e.decode() for e in canary[1]]}
    client.publish(topics.bundle_manifest(store), payloads.encode("bundle_manifest", message),
                   qos=1, retain=True).wait_for_publish(timeout=timeout_s)


def publish_bundle(
    client: mqtt.Client,
    store: str,
    offered: Sequence[tuple[bytes, Manifest, Mapping[str, bytes]]],
    *,
    certificates: Sequence[bytes] = (),
    revocations: bytes | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    timeout_s: float = 30.0,
) -> int:
    """Publish the chunks of every offered bundle, then one manifest naming them all.

    ``offered``: ``(signed envelope, manifest, {part name: bytes})`` per bundle type the
    store currently offers (one manifest message carries them all, so a release of one type
    never hides another). Returns the number of chunks published. Waits for every PUBACK.
    """
    chunks = sum(publish_chunks(client, store, manifest, parts, chunk_bytes=chunk_bytes,
                                timeout_s=timeout_s)
                 for _envelope, manifest, parts in offered)
    publish_manifest(client, store, [envelope for envelope, _m, _p in offered],
                     certificates=certificates, revocations=revocations, timeout_s=timeout_s)
    return chunks
