"""Store PKI for the MQTT transport: CA, broker, cart and hub certificates, CRL, broker ACL.

Why a PKI at all: the store network is untrusted, so the broker must know *which
cart* is talking before it lets a message into the topic tree. Each cart gets a
TLS client certificate whose Common Name is its identity; Mosquitto runs with
``require_certificate true`` and ``use_identity_as_username true``, so the
identity the ACL sees (``%u``) is whatever the store CA signed, never what the
client claims in its CONNECT packet (the client id, ``%c``, is chosen by the
client and is therefore never used for authorisation).

Design choices:

* **One CA per store.** A cart from another store (or a certificate from any
  other CA) fails the TLS handshake before MQTT starts. The CA key signs cart,
  hub and broker certificates and the CRL; it belongs on the provisioning
  station, encrypted at rest (:func:`write_private_key` takes a passphrase),
  never on the hub or a cart.
* **EC P-256 / ECDSA-SHA256** everywhere: every TLS stack on the carts and
  brokers (OpenSSL 1.1+, mbedTLS, EMQX/VerneMQ on Erlang) accepts it for
  client authentication, which is not yet true of Ed25519 certificates.
* **Identities** are ``cart-<store>-<number>`` and ``hub-<store>``: ASCII,
  no ``/``, ``+``, ``#`` or spaces. Mosquitto refuses *all* pattern-ACL access
  to a client whose username or client id contains ``+``, ``#`` or ``/`` (it
  could otherwise widen its own ``%u`` topic), so an identity with those
  characters would be a cart that can never publish. The ``cart-`` and
  ``hub-`` prefixes keep the two roles apart: the CA never issues a cart
  certificate that could be mistaken for the hub's ``user`` line in the ACL,
  and no cart can be named ``bundles`` or ``hub`` (the store-wide segments).
* **Store binding** is done in the ACL, not left to the hub: the ACL is
  rendered per store (:func:`render_acl`) with the store id as a literal topic
  level, so ``pattern write cartos/v1/s001/%u/events`` lets cart ``%u`` write
  only under its own store. A broker serves one store (the hub's Mosquitto);
  a clustered multi-store broker gets one such block per store (see
  ``packaging/mosquitto/README.md``). The hub still checks that the identity
  in a topic is a cart it registered (:func:`parse_identity` gives the store
  and number back), because a valid certificate is necessary, not sufficient.
* **Revocation** is a CRL file the broker loads (``crlfile``). The CRL is the
  only record of revocations: :func:`revoke` reads it, verifies it was signed
  by this CA, adds the serial and re-signs it. OpenSSL refuses *every* client
  once the CRL's ``nextUpdate`` has passed, so :func:`refresh_crl` must run
  well before that (a daily timer re-signing a 30-day CRL is the intent).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cartos.sync.errors import CertificateRevocationError, IdentityError, PkiError, TopicError
from cartos.sync.topics import ROOT, UPLINK_STREAMS, validate_cart, validate_segment

CART_PREFIX: Final = "cart-"
HUB_PREFIX: Final = "hub-"
CART_NUMBER_DIGITS: Final = 4
"""Cart numbers are zero-padded to at least this many digits so identities sort."""
MAX_CART_NUMBER: Final = 99_999_999

DEFAULT_CA_DAYS: Final = 3650
DEFAULT_SERVER_DAYS: Final = 397
"""Broker certificate lifetime: rotated yearly with the hub, like any TLS server."""
DEFAULT_CLIENT_DAYS: Final = 825
"""Cart and hub certificates: a cart is re-provisioned at its service interval."""
DEFAULT_CRL_DAYS: Final = 30
"""CRL ``nextUpdate`` distance; refreshed daily, so a missed day is not an outage."""
BACKDATE: Final = dt.timedelta(minutes=5)
"""``notBefore`` is set this far back so a cart whose clock is slightly behind accepts it."""

_CURVE: Final = ec.SECP256R1()
_HASH: Final = hashes.SHA256()
_CART_RE: Final = re.compile(r"cart-(?P<store>.+)-(?P<number>[0-9]{4,8})")
_HUB_RE: Final = re.compile(r"hub-(?P<store>.+)")

PrivateKey = ec.EllipticCurvePrivateKey


# -- identities ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """A parsed certificate identity: the role, its store and (for a cart) its number."""

    role: Literal["cart", "hub"]
    store: str
    number: int | None
    name: str
    """The identity itself, as it appears in the certificate CN and the MQTT username."""


def validate_store_id(store: str) -> str:
    """Return ``store`` if it is a usable store id (a safe topic segment), else raise.

    The store id becomes a literal topic level in the ACL and part of every
    identity, so it obeys the same rule as any topic segment.
    """
    try:
        return validate_segment(store, "store id")
    except TopicError as exc:
        raise IdentityError(str(exc)) from None


def cart_identity(store: str, number: int) -> str:
    """The identity (certificate CN, MQTT username, topic segment) of cart ``number``."""
    validate_store_id(store)
    if isinstance(number, bool) or not isinstance(number, int):
        raise IdentityError(f"cart number must be an int, got {type(number).__name__}")
    if not 1 <= number <= MAX_CART_NUMBER:
        raise IdentityError(f"cart number {number} outside 1..{MAX_CART_NUMBER}")
    return _checked(f"{CART_PREFIX}{store}-{number:0{CART_NUMBER_DIGITS}d}")


def hub_identity(store: str) -> str:
    """The identity of the store's hub: the one ``user`` the ACL grants downlink writes."""
    validate_store_id(store)
    return _checked(f"{HUB_PREFIX}{store}")


def parse_identity(name: str) -> Identity:
    """Split an identity into role, store and cart number; raise IdentityError if malformed.

    The hub uses this on the ``<cart>`` segment of every uplink topic to check
    the cart belongs to its store and is registered, before trusting it.
    """
    _checked(name)
    if match := _CART_RE.fullmatch(name):
        store = validate_store_id(match["store"])
        return Identity("cart", store, int(match["number"]), name)
    if match := _HUB_RE.fullmatch(name):
        return Identity("hub", validate_store_id(match["store"]), None, name)
    raise IdentityError(f"{name!r} is neither cart-<store>-<number> nor hub-<store>")


def _checked(name: str) -> str:
    """An identity must be a valid, non-reserved cart topic segment (no ``/``, ``+``, ``#``)."""
    try:
        return validate_cart(name)
    except TopicError as exc:
        raise IdentityError(str(exc)) from None


# -- key material --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """A certificate with its private key: what a broker, cart or hub is given."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def identity(self) -> str:
        """The certificate's Common Name."""
        return common_name(self.certificate)

    def write(self, cert_path: Path, key_path: Path, passphrase: bytes | None = None) -> None:
        """Write the certificate (0644) and the key (0600, optionally encrypted)."""
        write_certificate(cert_path, self.certificate)
        write_private_key(key_path, self.private_key, passphrase)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A store's CA: signs the broker, hub and cart certificates and the CRL."""

    store: str
    certificate: x509.Certificate
    private_key: PrivateKey

    def write(self, cert_path: Path, key_path: Path, passphrase: bytes | None = None) -> None:
        """Write the CA certificate (distributed to every party) and its key (kept offline)."""
        write_certificate(cert_path, self.certificate)
        write_private_key(key_path, self.private_key, passphrase)


def common_name(certificate: x509.Certificate) -> str:
    """The subject CN of ``certificate`` (the identity Mosquitto uses as username)."""
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise PkiError(f"certificate has {len(values)} common names, expected one")
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def _new_key() -> PrivateKey:
    return ec.generate_private_key(_CURVE)


def _now(now: dt.datetime | None) -> dt.datetime:
    value = now if now is not None else dt.datetime.now(dt.UTC)
    if value.tzinfo is None:
        raise PkiError("timestamps must be timezone-aware (UTC)")
    return value.astimezone(dt.UTC)


def _positive_days(days: float, what: str) -> dt.timedelta:
    if not days > 0:
        raise PkiError(f"{what} must be positive, got {days}")
    return dt.timedelta(days=days)


# -- issuing -------------------------------------------------------------------


def create_store_ca(
    store: str, *, valid_days: float = DEFAULT_CA_DAYS, now: dt.datetime | None = None
) -> CertificateAuthority:
    """Create the self-signed CA of ``store`` (``pathlen:0``: it signs end entities only)."""
    validate_store_id(store)
    start = _now(now)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cartos"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"cartos store {store} CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + _positive_days(valid_days, "valid_days"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, _HASH)
    )
    return CertificateAuthority(store, cert, key)


def _issue(
    ca: CertificateAuthority,
    common: str,
    *,
    usage: x509.ObjectIdentifier,
    valid_days: float,
    now: dt.datetime | None,
    san: x509.SubjectAlternativeName | None = None,
) -> Credential:
    start = _now(now)
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cartos"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"store {ca.store}"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + _positive_days(valid_days, "valid_days"))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # One purpose per certificate: a leaked broker key cannot log in as a
        # client, and a cart key cannot impersonate the broker.
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return Credential(builder.sign(ca.private_key, _HASH), key)


def issue_server_certificate(
    ca: CertificateAuthority,
    *,
    hostnames: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    valid_days: float = DEFAULT_SERVER_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """The broker's TLS server certificate; carts check it against the store CA and SAN.

    Pass the hub's DNS name and/or fixed address on the store network; the
    defaults (``localhost``, ``127.0.0.1``) suit a broker tested on one host.
    """
    if not hostnames and not ip_addresses:
        raise PkiError("a server certificate needs at least one hostname or IP address")
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    try:
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    except ValueError as exc:
        raise PkiError(str(exc)) from None
    common = hostnames[0] if hostnames else ip_addresses[0]
    return _issue(
        ca,
        common,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        valid_days=valid_days,
        now=now,
        san=x509.SubjectAlternativeName(names),
    )


def issue_cart_certificate(
    ca: CertificateAuthority,
    number: int,
    *,
    valid_days: float = DEFAULT_CLIENT_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """Client certificate of cart ``number`` of the CA's store (CN ``cart-<store>-<n>``).

    ``now`` sets the start of validity (less :data:`BACKDATE`); provisioning
    normally leaves it unset.
    """
    identity = cart_identity(ca.store, number)
    return _issue(
        ca, identity, usage=ExtendedKeyUsageOID.CLIENT_AUTH, valid_days=valid_days, now=now
    )


def issue_hub_certificate(
    ca: CertificateAuthority,
    *,
    valid_days: float = DEFAULT_CLIENT_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """Client certificate of the store's hub (CN ``hub-<store>``): downlink and bundle writer."""
    return _issue(
        ca,
        hub_identity(ca.store),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        valid_days=valid_days,
        now=now,
    )


# -- revocation ----------------------------------------------------------------


def build_crl(
    ca: CertificateAuthority,
    revoked: Iterable[x509.RevokedCertificate] = (),
    *,
    number: int = 1,
    valid_days: float = DEFAULT_CRL_DAYS,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked``; ``number`` must grow with every issue.

    The broker needs a CRL from the start (``crlfile`` is set in the example
    config), so provisioning writes an empty one together with the CA.
    """
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(start - BACKDATE)
        .next_update(start + _positive_days(valid_days, "valid_days"))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.private_key, _HASH)


def load_crl(path: Path, ca: CertificateAuthority) -> x509.CertificateRevocationList:
    """Read the CRL at ``path`` and check it was issued and signed by ``ca``."""
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateRevocationError(f"cannot read CRL {path}: {exc}") from None
    public = ca.private_key.public_key()
    if crl.issuer != ca.certificate.subject or not crl.is_signature_valid(public):
        raise CertificateRevocationError(f"CRL {path} was not issued by the {ca.store} CA")
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def revoke(
    ca: CertificateAuthority,
    crl_path: Path,
    certificate: x509.Certificate,
    *,
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
    valid_days: float = DEFAULT_CRL_DAYS,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Add ``certificate`` to the CRL at ``crl_path`` (created if absent) and rewrite it.

    Returns the new CRL. Revoking an already revoked certificate only
    re-signs the list. The broker applies the new CRL to *new* connections
    when it reloads it (see ``packaging/mosquitto/README.md``); a cart that is
    connected stays connected until the broker is restarted.
    """
    if certificate.issuer != ca.certificate.subject:
        raise CertificateRevocationError(
            f"{common_name(certificate)!r} was not issued by the {ca.store} CA"
        )
    try:
        certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateRevocationError(
            f"{common_name(certificate)!r} is not signed by the {ca.store} CA"
        ) from None
    entries: list[x509.RevokedCertificate] = []
    number = 1
    if crl_path.exists():
        previous = load_crl(crl_path, ca)
        entries = list(previous)
        number = _crl_number(previous) + 1
    when = _now(now)
    if all(e.serial_number != certificate.serial_number for e in entries):
        builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(certificate.serial_number)
            .revocation_date(when)
        )
        if reason is not x509.ReasonFlags.unspecified:
            builder = builder.add_extension(x509.CRLReason(reason), critical=False)
        entries.append(builder.build())
    crl = build_crl(ca, entries, number=number, valid_days=valid_days, now=when)
    write_crl(crl_path, crl)
    return crl


def refresh_crl(
    ca: CertificateAuthority,
    crl_path: Path,
    *,
    valid_days: float = DEFAULT_CRL_DAYS,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Re-sign the CRL at ``crl_path`` with a fresh ``nextUpdate``; run it daily.

    Why it matters: once ``nextUpdate`` has passed, OpenSSL fails every
    client handshake with "CRL has expired", so a forgotten CRL locks every
    cart *and* the hub out of the broker.
    """
    previous = load_crl(crl_path, ca)
    crl = build_crl(
        ca, list(previous), number=_crl_number(previous) + 1, valid_days=valid_days, now=now
    )
    write_crl(crl_path, crl)
    return crl


def is_revoked(crl: x509.CertificateRevocationList, certificate: x509.Certificate) -> bool:
    """Whether ``certificate``'s serial is listed in ``crl``."""
    return crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


# -- broker ACL ------------------------------------------------------------------


CART_WRITE_LEAVES: Final[tuple[str, ...]] = (
    "available",
    *UPLINK_STREAMS,
    "state",
    "cmd/res",
)
"""Topics under ``cartos/v1/<store>/<cart>/`` the cart itself publishes (uplink)."""
CART_READ_LEAVES: Final[tuple[str, ...]] = ("ack", "cmd/req")
"""Topics under ``cartos/v1/<store>/<cart>/`` only the hub publishes (downlink)."""


def render_acl(store: str) -> str:
    """The Mosquitto ``acl_file`` for ``store``'s broker (the shipped example is ``s001``).

    Cart rules are ``pattern`` lines on ``%u`` (the certificate CN, via
    ``use_identity_as_username``) with the store id as a literal level, so a
    cart can write only its own uplink topics in its own store and read only
    its own downlink topics and the store's bundles. The hub gets an explicit
    ``user`` block. Anything not granted is denied.
    """
    validate_store_id(store)
    hub = hub_identity(store)
    base = f"{ROOT}/{store}"
    lines = [
        f"# Mosquitto ACL for the cartos broker of store {store!r}.",
        f"# Generated by cartos.sync.pki.render_acl({store!r}); regenerate it per store rather",
        "# than editing it by hand. Everything not granted here is denied.",
        "#",
        "# Identities come from the TLS client certificate (use_identity_as_username):",
        "# %u is the certificate CN, issued by this store's CA as cart-<store>-<number>",
        "# or hub-<store>. The client id (%c) is chosen by the client and is never used.",
        "# Mosquitto denies every pattern rule to a client whose username or client id",
        "# contains '+', '#' or '/'; the CA never issues such an identity.",
        "#",
        f"# The store id ({store}) is a literal level, not '+': a cart can write only under",
        "# its own identity *in this store*. A pattern with '+' in the store level would",
        "# let cart X of any store publish cartos/v1/<other store>/X/... on a shared broker.",
        "",
        "# Carts: write their own uplink topics only.",
        *(f"pattern write {base}/%u/{leaf}" for leaf in CART_WRITE_LEAVES),
        "",
        "# Carts: read their own downlink topics (written by the hub only).",
        *(f"pattern read {base}/%u/{leaf}" for leaf in CART_READ_LEAVES),
        "",
        "# Carts: read the store's signed bundles (manifest and chunks); only the hub writes",
        "# them. A pattern without %u applies to every authenticated client (Mosquitto logs",
        "# a harmless warning about it), whereas a 'topic' line before any 'user' line",
        "# would apply to clients without a username only, and there are none here.",
        f"pattern read {base}/bundles/#",
        "",
        "# The hub: reads everything of its store, writes every cart's downlink and the",
        "# bundles. It never writes a cart's uplink (the pattern lines above also apply to",
        f"# the hub, but only to the unused cart segment {hub!r}).",
        f"user {hub}",
        f"topic read {base}/#",
        *(f"topic write {base}/+/{leaf}" for leaf in CART_READ_LEAVES),
        f"topic write {base}/bundles/#",
        "",
    ]
    return "\n".join(lines)


# -- files ---------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte on, then rename over.

    The temporary file is created with the final mode, so a key is never
    readable by others even for a moment, and a crash leaves the old file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have removed bits we asked for
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    """Write a PEM certificate (0644: certificates are public)."""
    _write_atomic(path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """Write a PEM CRL (0644), atomically, so the broker never reads half a list."""
    _write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    """Write a PKCS#8 PEM private key with mode 0600, encrypted when ``passphrase`` is given.

    Broker, hub and cart keys are left unencrypted (services start unattended;
    the file mode and the device's disk protection guard them); the CA key
    should always get a passphrase.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_atomic(path, data, 0o600)


def load_credential(cert_path: Path, key_path: Path, passphrase: bytes | None = None) -> Credential:
    """Read a certificate and its EC private key, checking that they belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), passphrase)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot load {cert_path} / {key_path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path} is not an EC private key")
    if key.public_key() != cert.public_key():
        raise PkiError(f"{key_path} does not match {cert_path}")
    return Credential(cert, key)


def load_certificate_authority(
    cert_path: Path, key_path: Path, passphrase: bytes | None = None
) -> CertificateAuthority:
    """Read a store CA written by :meth:`CertificateAuthority.write` (store taken from the CN)."""
    credential = load_credential(cert_path, key_path, passphrase)
    match = re.fullmatch(r"cartos store (?P<store>.+) CA", common_name(credential.certificate))
    if match is None:
        raise PkiError(f"{cert_path} is not a cartos store CA")
    return CertificateAuthority(
        validate_store_id(match["store"]), credential.certificate, credential.private_key
    )
