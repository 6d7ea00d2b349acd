"""Errors of the pre-deployment readiness report.

``cartos readiness`` is run by a deployment script that must tell three outcomes apart: the
catalogue is fit to ship (0), a check found a concern (1), or the report could not be made at
all because an input is unusable (78). A concern is a finding, not an error, so it is never
raised; only unusable input is, and it carries EX_CONFIG (78, sysexits.h) so a script cannot
mistake a typo in a path for a failed check.
"""

from __future__ import annotations

from cartos.errors import CartosError

EXIT_OK = 0
"""Every check that could be measured is ok."""

EXIT_CONCERN = 1
"""At least one check is a concern."""

EXIT_BAD_INPUT = 78
"""An input (catalogue, profile, manifest, history, thresholds) cannot be used: EX_CONFIG."""


class ReadinessError(CartosError):
    """The readiness report cannot be made from these inputs."""

    exit_code = EXIT_BAD_INPUT


class ThresholdsError(ReadinessError):
    """The thresholds file is unreadable, not TOML, or names a key or value it may not."""


class HistoryError(ReadinessError):
    """The ``--history`` file is neither a catalogue nor a readable change-history JSON."""


class InputSetError(ReadinessError):
    """A validation or unknown-item image set is unreadable or holds nothing usable."""
