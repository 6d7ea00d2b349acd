"""The hub's configuration (TOML): one typed tree, unknown keys refused, every field documented.

    store = "s001"
    hub_id = "hub-s001"
    database = "/var/lib/cartos-hub/hub.db"   # or "postgresql://hub@db.store.lan/cartos"

    [catalogue]                                  # optional: learn and release
    path = "/var/lib/cartos-hub/catalogue.db"
    signing_key = "/etc/cartos-hub/signing.pem"
    certificate = "/etc/cartos-hub/signing.cert"

    [review]                                     # optional, needs [catalogue]
    database = "/var/lib/cartos-hub/review.db"   # default: review.db next to the hub DB
    crop_retention_days = 30                     # crops of labelled/dismissed items
    open_retention_days = 90                     # crops of items nobody looked at
    api_host = "127.0.0.1"
    api_port = 8081                              # 0: no API (items still taken in)

    [broker]
    host = "broker.store.lan"
    port = 8883
    [broker.tls]
    ca_certs = "/etc/cartos-hub/store-ca.pem"
    certfile = "/etc/cartos-hub/hub.pem"
    keyfile = "/etc/cartos-hub/hub.key"

Relative paths are relative to the file. A configuration that does not
validate is a :class:`~cartos.service.errors.ConfigError` (exit code 78), so a
supervisor stops restarting a hub that cannot work.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cartos.hub.message_store import is_postgres_url
from cartos.profiles.loader import describe_error
from cartos.service.errors import ConfigError
from cartos.sync import topics


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Section):
    """The hub's client certificate for the broker's TLS listener (``cartos.sync.pki``)."""

    ca_certs: Path = Field(description="The store CA certificate (PEM), to check the broker's.")
    certfile: Path = Field(description="The hub's client certificate (PEM); its CN names it.")
    keyfile: Path = Field(description="The hub's private key (PEM, readable by the hub only).")


class BrokerConfig(_Section):
    """Where the store's MQTT broker listens."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 with TLS).")
    tls: TlsConfig | None = Field(default=None, description="Client-certificate TLS; none: plain.")


class CanaryConfig(_Section):
    """Canary rollout (``cartos.hub.canary``): who goes first and what halts a release."""

    carts: list[str] = Field(default_factory=list,
                             description="Canary cart ids; empty: `fraction` of known carts.")
    fraction: float = Field(default=0.1, ge=0.0, le=1.0,
                            description="Share of known carts chosen (stably, by hash).")
    soak_minutes: float = Field(default=10.0, ge=0.0, le=10_080.0,
                                description="How long canary carts run a release first.")
    min_adopted: float = Field(default=0.5, ge=0.0, le=1.0,
                               description="Share of canary carts that must hold it to promote.")
    min_events: int = Field(default=50, ge=0,
                            description="Canary item events needed before comparing corrections.")
    max_correction_increase: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Halt when canary carts' correction share exceeds the others' by more.")


class CatalogueConfig(_Section):
    """The master catalogue the hub learns into and releases from (``cartos.hub.catalogue``)."""

    path: Path = Field(description="The master catalogue (SQLite), provisioned with a baseline.")
    signing_key: Path = Field(description="The hub's Ed25519 signing key (PEM).")
    certificate: Path = Field(description="Its root-signed certificate (the envelope file).")
    release_interval_s: float = Field(default=0.5, ge=0.0, le=3600.0,
                                      description="Least time between two releases.")
    validity_days: int = Field(default=7, ge=1, le=365,
                               description="How long a release stays valid on the carts.")
    canary: CanaryConfig | None = Field(
        default=None, description="Release to a few carts first; none: to every cart at once.")


class ReviewConfig(_Section):
    """The review queue: item crops for attendants to label (``cartos.hub.review``)."""

    database: Path | None = Field(
        default=None, description="The review queue's SQLite file; default review.db next "
                                  "to the hub database (next to the master catalogue when "
                                  "the hub database is PostgreSQL).")
    crop_retention_days: float = Field(
        default=30.0, ge=0.0, le=3650.0,
        description="Days a crop is kept after its item was labelled, registered or dismissed.")
    open_retention_days: float = Field(
        default=90.0, ge=0.0, le=3650.0,
        description="Days a crop of an item still open is kept after it arrived.")
    api_host: str = Field(default="127.0.0.1", min_length=1,
                          description="Address the attendants' API binds to.")
    api_port: int = Field(default=8081, ge=0, le=65535,
                          description="Port of the attendants' API; 0: no API.")


class HubConfig(_Section):
    """One hub per store."""

    store: str = Field(description="The store id, as in the carts' topics and certificates.")
    hub_id: str = Field(description="This hub's identity (its certificate CN); sent in every ack.")
    database: str = Field(description="SQLite file of everything the carts sent, or a "
                                      "postgresql:// URL (needs the hub-postgres extra).")
    catalogue: CatalogueConfig | None = Field(
        default=None, description="Learn corrections and release catalogues; none: receive only.")
    review: ReviewConfig | None = Field(
        default=None, description="Take review items in for attendants; needs [catalogue].")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="The broker.")
    batch: int = Field(default=500, ge=1, le=10_000,
                       description="Most messages committed in one transaction.")
    linger_s: float = Field(default=0.02, ge=0.0, le=1.0,
                            description="Wait for more messages before committing a batch.")


def load_hub_config(path: Path) -> HubConfig:
    """Read and validate ``path``; every problem is a :class:`ConfigError` naming the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        config = HubConfig.model_validate(data)
        topics.validate_segment(config.store, "store")
        if config.review is not None and config.catalogue is None:
            raise ValueError("[review] needs a [catalogue] section: labelling a review item "
                             "teaches the master catalogue")
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.parent

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    tls = config.broker.tls
    if tls is not None:
        tls = TlsConfig(ca_certs=resolve(tls.ca_certs), certfile=resolve(tls.certfile),
                        keyfile=resolve(tls.keyfile))
    catalogue = config.catalogue
    if catalogue is not None:
        catalogue = catalogue.model_copy(update={
            "path": resolve(catalogue.path), "signing_key": resolve(catalogue.signing_key),
            "certificate": resolve(catalogue.certificate)})
    database = config.database if is_postgres_url(config.database) \
        else str(resolve(Path(config.database)))
    review = config.review
    if review is not None:
        beside = catalogue.path if is_postgres_url(database) and catalogue is not None \
            else Path(database)
        review = review.model_copy(update={
            "database": resolve(review.database) if review.database is not None
            else beside.parent / "review.db"})
    return config.model_copy(update={
        "database": database,
        "catalogue": catalogue,
        "review": review,
        "broker": config.broker.model_copy(update={"tls": tls}),
    })
