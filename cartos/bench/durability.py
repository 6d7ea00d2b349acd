"""``cartos bench durability``: kill the basket writer at random moments and count the damage.

The cart runtime is restarted by a watchdog after ``kill -9`` or a power cut
and must resume with every acknowledged command present exactly once. This
benchmark plays the watchdog: it starts :mod:`cartos.basket.soak` as a child
process, lets it acknowledge a random number of commands (sometimes none, so
the kill also lands during start-up and recovery), sends ``SIGKILL`` at a
random moment after that, and restarts it from the last acknowledged command,
which is sent again and must be answered as a duplicate. After every kill the
basket file is checked:

* **lost**: acknowledged commands missing from the idempotency ledger;
* **duplicated**: re-sent commands applied a second time, or commands with
  more than one outbox message;
* **kills_between_commit_and_ack**: kills that landed after a commit but
  before its acknowledgement reached the parent (the case idempotency exists
  for: the restarted child re-sends that command and must be told duplicate);
* **state_mismatches**: the basket differs from what the script says it must
  be after the committed prefix (a lost or doubled effect the ledger missed);
* **integrity_failures**: ``PRAGMA integrity_check`` / foreign-key failures;
* **invariant_failures**: broken basket invariants, including outbox
  sequences that are not contiguous.

Between kills the parent also acknowledges random outbox prefixes, as the
sync layer would. ``SIGKILL`` tests process crashes; power loss additionally
relies on ``synchronous=FULL`` (fsync of the WAL on commit), which a process
kill cannot exercise.
"""

from __future__ import annotations

import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cartos.basket.soak import Script, build_script, fingerprint
from cartos.basket.store import BasketStore

LogFn = Callable[[str], None]

_ACKED_STREAMS = ("events", "corrections", "review")


def run(
    kills: int,
    *,
    seed: int = 0,
    mean_acks: int = 8,
    workdir: Path | None = None,
    log: LogFn | None = None,
) -> dict[str, Any]:
    """Run ``kills`` kill/restart cycles and return the counters (required keys last)."""
    if kills < 1 or mean_acks < 1:
        raise ValueError("kills and mean_acks must be >= 1")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="cartos-durability-") as tmp:
            return run(kills, seed=seed, mean_acks=mean_acks, workdir=Path(tmp), log=log)
    say = log or (lambda message: None)
    length = kills * (2 * mean_acks + 6) + 50
    script = build_script(seed, length)
    db = workdir / "basket.db"
    rng = random.Random(seed * 7919 + 1)
    tally = _Tally()
    started = time.perf_counter()
    for kill in range(kills):
        if _kill_cycle(db, script, seed, length, mean_acks, rng, tally):
            say(f"script finished after {kill} kills")
            break
        tally.kills += 1
        _verify(db, script, rng, tally)
        if (kill + 1) % 25 == 0:
            say(f"{kill + 1} kills, {len(tally.acked)} commands acknowledged, {tally.summary()}")
    elapsed = time.perf_counter() - started
    return {
        "seed": seed,
        "script_length": length,
        "commands_committed": tally.committed,
        "resends": tally.resends,
        "kills_between_commit_and_ack": tally.unacked_commits,
        "state_mismatches": tally.state_mismatches,
        "invariant_failures": tally.invariant_failures,
        "outbox_acks": tally.outbox_acks,
        "seconds": round(elapsed, 2),
        "ms_per_kill_cycle": round(1000 * elapsed / max(tally.kills, 1), 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kills": tally.kills,
        "events_acknowledged": len(tally.acked),
        "lost": len(tally.lost),
        "duplicated": tally.duplicated,
        "integrity_failures": tally.integrity_failures,
    }


class _Tally:
    """Counters accumulated over the kill cycles."""

    def __init__(self) -> None:
        self.kills = 0
        self.acked: set[int] = set()
        self.top = -1
        self.lost: set[int] = set()
        self.duplicated = 0
        self.resends = 0
        self.state_mismatches = 0
        self.integrity_failures = 0
        self.invariant_failures = 0
        self.outbox_acks = 0
        self.committed = 0
        self.unacked_commits = 0

    def summary(self) -> str:
        return (
            f"lost {len(self.lost)}, duplicated {self.duplicated}, "
            f"integrity {self.integrity_failures}, invariants {self.invariant_failures}, "
            f"state {self.state_mismatches}"
        )


def _kill_cycle(
    db: Path,
    script: Script,
    seed: int,
    length: int,
    mean_acks: int,
    rng: random.Random,
    tally: _Tally,
) -> bool:
    """Start the child, kill it at a random point, record its acks; True if it finished."""
    start = max(tally.top, 0)
    command = [
        sys.executable,
        "-m",
        "cartos.basket.soak",
        "--db",
        str(db),
        "--seed",
        str(seed),
        "--length",
        str(length),
        "--start",
        str(start),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    target = rng.randint(0, 2 * mean_acks)
    lines: list[str] = []
    if target == 0:
        time.sleep(rng.uniform(0.0, 0.15))
    else:
        acks = 0
        while acks < target:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            acks += line.startswith("ack ")
        time.sleep(rng.uniform(0.0, 0.004))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines.extend(proc.stdout.read().splitlines(keepends=True))
    proc.stdout.close()
    finished = False
    for line in lines:
        if not line.endswith("\n"):
            continue
        if line == "done\n":
            finished = True
            continue
        _tag, index_s, _applied, duplicate, _version = line.split()
        index = int(index_s)
        if index == start and tally.top >= 0:
            tally.resends += 1
            if duplicate != "1":
                tally.duplicated += 1
        tally.acked.add(index)
        tally.top = max(tally.top, index)
    return finished


def _verify(db: Path, script: Script, rng: random.Random, tally: _Tally) -> None:
    """Check the file the killed child left behind against the script."""
    if not db.exists():
        if tally.acked:
            tally.lost.update(tally.acked)
        return
    with BasketStore(db) as store:
        problems = store.integrity_problems()
        if problems:
            tally.integrity_failures += 1
            return
        if store.check():
            tally.invariant_failures += 1
        ledger, multi = _ledger(db)
        tally.duplicated += multi
        committed = sum(1 for index in range(len(script.commands)) if script.key(index) in ledger)
        tally.committed = committed
        tally.unacked_commits += committed > tally.top + 1
        tally.lost.update(i for i in tally.acked if script.key(i) not in ledger)
        prefix_ok = all(script.key(i) in ledger for i in range(committed))
        if not prefix_ok or (
            committed and fingerprint(store.view()) != script.expected[committed - 1]
        ):
            tally.state_mismatches += 1
        if rng.random() < 0.3:
            stats = store.outbox_stats()
            for stream in _ACKED_STREAMS:
                info = stats[stream]
                if info.last_seq > info.acked_seq:
                    store.ack(stream, rng.randint(info.acked_seq + 1, info.last_seq))
                    tally.outbox_acks += 1


def _ledger(db: Path) -> tuple[set[str], int]:
    """Keys in the idempotency ledger, and commands with more than one outbox message."""
    conn = sqlite3.connect(db)
    try:
        keys = {str(r[0]) for r in conn.execute("SELECT key FROM commands")}
        multi = conn.execute(
            "SELECT COUNT(*) FROM (SELECT command_key FROM outbox WHERE command_key IS NOT NULL "
            "GROUP BY command_key HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    finally:
        conn.close()
    return keys, int(multi)
