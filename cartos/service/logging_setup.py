"""Log lines the journal understands: one line per record, syslog priority as a ``<N>`` prefix.

Under systemd, stdout goes to journald, which files every line as a separate entry, reads a
leading ``<N>`` as the entry's syslog priority (sd-daemon(3): ``<3>`` is SD_ERR) and stamps
the time itself. So under the journal each record is written as ``<N>logger: message`` with
its newlines escaped (a traceback stays one entry, at its priority, instead of a dozen
info-level fragments) and no timestamp. In a terminal the same records get a timestamp and a
level name instead. Whether stdout is the journal is decided the way systemd.exec(5) says:
``$JOURNAL_STREAM`` holds ``device:inode`` of the journal stream, and it only counts when
the stream we write to is that very file (a child whose output was redirected inherits the
variable, but not the stream).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

JOURNAL_STREAM_ENV = "JOURNAL_STREAM"

# sd-daemon(3) priorities.
SD_CRIT = 2
SD_ERR = 3
SD_WARNING = 4
SD_NOTICE = 5
SD_INFO = 6
SD_DEBUG = 7

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def journal_priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels between the standard ones round down)."""
    if levelno >= logging.CRITICAL:
        return SD_CRIT
    if levelno >= logging.ERROR:
        return SD_ERR
    if levelno >= logging.WARNING:
        return SD_WARNING
    if levelno > logging.INFO:
        return SD_NOTICE
    if levelno >= logging.INFO:
        return SD_INFO
    return SD_DEBUG


def _single_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, newlines escaped, no timestamp (journald adds its own)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"<{journal_priority(record.levelno)}>{_single_line(super().format(record))}"


class PlainFormatter(logging.Formatter):
    """``time LEVEL logger: message`` on one line, for a terminal or a plain log file."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(super().format(record).splitlines())


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM``)."""
    env = os.environ if environ is None else environ
    raw = env.get(JOURNAL_STREAM_ENV)
    if not raw:
        return False
    device, _, inode = raw.partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        # No file descriptor (captured output) or a malformed variable: not the journal.
        return False


def configure_logging(
    level: int = logging.INFO,
    *,
    stream: TextIO | None = None,
    journal: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (stdout) in the journal or plain format.

    Replaces the root logger's handlers, so it is called once at service start-up; ``journal``
    forces the format, otherwise it is detected from ``$JOURNAL_STREAM``. Returns the handler.
    """
    out = sys.stdout if stream is None else stream
    use_journal = writes_to_journal(out, environ) if journal is None else journal
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if use_journal else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
