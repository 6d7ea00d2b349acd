"""Journal lines carry ``<N>`` priorities and no timestamp; terminal lines are plain."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartos.service.logging_setup import configure_logging, journal_priority, writes_to_journal


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "stdout.log").open("w+", encoding="utf-8") as fh:
        yield fh


def _journal_env(stream: TextIO) -> dict[str, str]:
    stat = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}


def _emit_all_levels(name: str) -> None:
    log = logging.getLogger(name)
    log.debug("d")
    log.info("i")
    log.log(25, "n")
    log.warning("w")
    log.error("e")
    log.critical("c")


def test_journal_lines_have_priority_prefixes(
    root_logger: logging.Logger, log_file: TextIO
) -> None:
    env = _journal_env(log_file)
    assert writes_to_journal(log_file, env)
    configure_logging(logging.DEBUG, stream=log_file, environ=env)
    _emit_all_levels("cartos.test")
    log_file.seek(0)
    assert log_file.read().splitlines() == [
        "<7>cartos.test: d",
        "<6>cartos.test: i",
        "<5>cartos.test: n",
        "<4>cartos.test: w",
        "<3>cartos.test: e",
        "<2>cartos.test: c",
    ]


def test_a_traceback_stays_one_journal_entry(root_logger: logging.Logger, log_file: TextIO) -> None:
    configure_logging(stream=log_file, journal=True)
    try:
        raise RuntimeError("scale link lost")
    except RuntimeError:
        logging.getLogger("cartos.bridge").exception("reading\nfailed")
    log_file.seek(0)
    lines = log_file.read().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("<3>cartos.bridge: reading\\nfailed\\nTraceback")
    assert lines[0].endswith("RuntimeError: scale link lost")


def test_plain_lines_outside_the_journal(root_logger: logging.Logger, log_file: TextIO) -> None:
    configure_logging(stream=log_file, environ={})
    logging.getLogger("cartos.test").warning("two\nlines")
    logging.getLogger("cartos.test").debug("below the level")
    log_file.seek(0)
    lines = log_file.read().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING cartos\.test: two lines", lines[0]
    )


def test_journal_stream_of_another_file_means_plain(tmp_path: Path, log_file: TextIO) -> None:
    with (tmp_path / "other").open("w", encoding="utf-8") as other:
        env = _journal_env(other)
    assert not writes_to_journal(log_file, env)
    assert not writes_to_journal(log_file, {"JOURNAL_STREAM": "garbage"})
    assert not writes_to_journal(log_file, {})


@given(st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=100))
def test_priority_never_rises_as_the_level_falls(low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    assert 2 <= journal_priority(high) <= journal_priority(low) <= 7
