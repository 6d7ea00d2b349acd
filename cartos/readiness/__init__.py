"""Pre-deployment readiness of a catalogue: seven checks, each with a value, a threshold and a
verdict, written as a report a person can act on and a JSON a deployment script can gate on.

``cartos readiness`` runs them; :func:`cartos.readiness.report.assess` is the same run from
Python. The checks and their thresholds are in :mod:`cartos.readiness.checks`, the report
files in :mod:`cartos.readiness.report`.

Only the errors and exit codes are imported here: the CLI imports this package on every
``cartos`` invocation, and the checks pull in numpy, OpenCV and the recogniser.
"""

from __future__ import annotations

from cartos.readiness.errors import (
    EXIT_BAD_INPUT,
    EXIT_CONCERN,
    EXIT_OK,
    HistoryError,
    InputSetError,
    ReadinessError,
    ThresholdsError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CONCERN",
    "EXIT_OK",
    "HistoryError",
    "InputSetError",
    "ReadinessError",
    "ThresholdsError",
]
