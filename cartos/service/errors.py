"""Errors of the systemd service plumbing (notification, configuration, credentials).

A cart that cannot read its configuration must stop with one line that says which file or
which credential to fix; restarting it would only repeat the same failure, so configuration
errors carry their own exit code (78, EX_CONFIG from sysexits.h) that the unit file lists in
``RestartPreventExitStatus=``.
"""

from __future__ import annotations

from cartos.errors import CartosError

# sysexits.h EX_CONFIG: the unit file stops restarting the service on this code.
EXIT_CONFIG = 78


class ServiceError(CartosError):
    """The service could not talk to systemd or set itself up."""


class NotifyError(ServiceError):
    """``$NOTIFY_SOCKET`` or ``$WATCHDOG_USEC`` hold something systemd never sets."""


class ConfigError(ServiceError):
    """The profile or a site override cannot be read or does not validate."""

    exit_code = EXIT_CONFIG


class CredentialError(ConfigError):
    """A secret the service needs is not among its systemd credentials."""


class LifecycleError(ServiceError):
    """The start-up sequence was reported out of order (an unknown readiness mark)."""
