"""A real Mosquitto running the shipped TLS configuration, for the ACL tests.

The broker is started from ``packaging/mosquitto/mosquitto.conf`` and
``packaging/mosquitto/acl`` with only what cannot be shipped rewritten: file
paths (into a temporary directory), the listener port (a free one on
127.0.0.1), the user to run as, and logging (everything, to stderr, captured in
a file, so the tests can read "Denied PUBLISH" lines). Every other line, ``require_certificate``,
``use_identity_as_username``, ``use_username_as_clientid``, ``crlfile`` and the
ACL included, is the shipped text, so the tests check what is deployed.
"""

from __future__ import annotations

import datetime as dt
import getpass
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cartos.bench.broker import find_mosquitto, free_port
from cartos.sync import pki
from tests.sync.conftest import require_mosquitto

PACKAGING: Final = Path(__file__).resolve().parents[2] / "packaging" / "mosquitto"
SHIPPED_CONF: Final = PACKAGING / "mosquitto.conf"
SHIPPED_ACL: Final = PACKAGING / "acl"
EXAMPLE_STORE: Final = "s001"
"""The store the shipped ACL was rendered for (``render_acl("s001")``)."""


require_broker = require_mosquitto
"""The broker executable; skip without one (fail under CARTOS_REQUIRE_BROKER=1)."""


def mosquitto_version() -> str:
    """The first line of ``mosquitto -h`` ("mosquitto version 2.0.11")."""
    binary = find_mosquitto()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


@dataclass(frozen=True)
class StorePki:
    """The key material of one test store, written as the broker and clients expect it."""

    directory: Path
    ca: pki.CertificateAuthority
    ca_cert: Path
    crl: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def create(cls, directory: Path, store: str = EXAMPLE_STORE) -> StorePki:
        """A fresh CA for ``store`` with a broker certificate and an empty CRL."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = pki.create_store_ca(store)
        ca_cert = directory / "ca.crt"
        ca.write(ca_cert, directory / "ca.key")
        crl = directory / "ca.crl"
        pki.write_crl(crl, pki.build_crl(ca))
        server = pki.issue_server_certificate(ca)
        server.write(directory / "broker.crt", directory / "broker.key")
        return cls(directory, ca, ca_cert, crl, directory / "broker.crt", directory / "broker.key")

    def client(self, credential: pki.Credential, name: str | None = None) -> ClientFiles:
        """Write ``credential`` for a client and return the paths paho's ``tls_set`` takes."""
        stem = name or credential.identity
        cert, key = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        credential.write(cert, key)
        return ClientFiles(stem, cert, key, credential)

    def cart(
        self,
        number: int,
        *,
        valid_days: float = pki.DEFAULT_CLIENT_DAYS,
        now: dt.datetime | None = None,
        name: str | None = None,
    ) -> ClientFiles:
        """Issue and write the certificate of cart ``number`` of this store."""
        credential = pki.issue_cart_certificate(self.ca, number, valid_days=valid_days, now=now)
        return self.client(credential, name)

    def hub(self) -> ClientFiles:
        """Issue and write the hub's certificate."""
        return self.client(pki.issue_hub_certificate(self.ca))


@dataclass(frozen=True)
class ClientFiles:
    """A client's certificate and key on disk, and the credential they hold."""

    name: str
    cert: Path
    key: Path
    credential: pki.Credential

    @property
    def identity(self) -> str:
        """The certificate CN, which the broker uses as username (and client id)."""
        return self.credential.identity


# Options whose value is a path on the deployed host, mapped to the test file.
_PATH_OPTIONS: Final = ("acl_file", "cafile", "certfile", "keyfile", "crlfile")


@dataclass
class TlsBroker:
    """One Mosquitto process on a free port, configured from the shipped files."""

    store_pki: StorePki
    workdir: Path
    acl_text: str = field(default_factory=lambda: SHIPPED_ACL.read_text(encoding="utf-8"))
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    overrides: dict[str, str] = field(default_factory=dict)
    """Options whose shipped value a test replaces on purpose (``{"option": "value"}``)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        """The rewritten configuration file."""
        return self.workdir / "mosquitto.conf"

    @property
    def acl_path(self) -> Path:
        """The ACL file the broker loads."""
        return self.workdir / "acl"

    @property
    def log_path(self) -> Path:
        """Everything the broker writes to stderr (debug level)."""
        return self.workdir / "mosquitto.log"

    def render_config(self) -> str:
        """The shipped configuration with paths, port, user and logging rewritten.

        Fails if a line it must rewrite is missing from the shipped file, so a
        change there cannot silently leave the tests on a different setup.
        """
        files = {
            "acl_file": self.acl_path,
            "cafile": self.store_pki.ca_cert,
            "certfile": self.store_pki.server_cert,
            "keyfile": self.store_pki.server_key,
            "crlfile": self.store_pki.crl,
        }
        seen: set[str] = set()
        out: list[str] = []
        for raw in SHIPPED_CONF.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            key = line.split(" ", 1)[0] if line and not line.startswith("#") else ""
            if key in _PATH_OPTIONS:
                out.append(f"{key} {files[key]}")
            elif key == "persistence_location":
                out.append(f"persistence_location {self.workdir}/")
            elif key == "listener":
                out.append(f"listener {self.port} {self.host}")
            elif key == "log_type":
                if "log_type" not in seen:
                    out.append("log_type all")
            elif key == "log_dest":
                if "log_dest" not in seen:
                    out.append("log_dest stderr")
            elif key in self.overrides:
                out.append(f"{key} {self.overrides[key]}")
            else:
                out.append(raw)
            if key:
                seen.add(key)
        missing = {*_PATH_OPTIONS, "persistence_location", "listener", "log_type"} - seen
        missing |= set(self.overrides) - seen
        if missing:
            raise AssertionError(f"shipped mosquitto.conf lacks {sorted(missing)}")
        if "log_dest" not in seen:
            out.append("log_dest stderr")
        # Stay the invoking user: as root, Mosquitto would otherwise switch to the
        # "mosquitto" user, which cannot read the test's 0600 keys.
        out.append(f"user {getpass.getuser()}")
        return "\n".join(out) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Write the config and ACL, start Mosquitto and wait until the port accepts."""
        binary = require_broker()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.acl_path.write_text(self.acl_text, encoding="utf-8")
        self.config_path.write_text(self.render_config(), encoding="utf-8")
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); it saves its persistence file first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port: the way to make a new CRL take effect."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Send SIGHUP: Mosquitto re-reads the ACL, its certificate and the CRL.

        The new CRL applies to new handshakes only; live connections stay up.
        """
        if self.process is None:
            raise RuntimeError("broker is not running")
        self.process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        """What the broker has logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 2.0, start: int = 0) -> bool:
        """Whether ``needle`` appears in the log (after offset ``start``) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in self.log_text()[start:]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
