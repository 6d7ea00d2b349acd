"""Rules a healthy basket file obeys beyond what SQLite's own checks can see.

``PRAGMA integrity_check`` proves the B-trees are sound; it cannot tell that
a command was applied twice or that the outbox skipped a message. These
checks can, because the store keeps redundant books on purpose: a session's
version must equal the number of its applied commands in the ledger, and the
never-dropped outbox streams must hold exactly the unacknowledged sequence
range. ``cartos basket check`` and the durability benchmark run them after
every crash.
"""

from __future__ import annotations

import json
import sqlite3

from cartos.basket.outbox import sequence_problems


def invariant_problems(conn: sqlite3.Connection) -> list[str]:
    """Every broken invariant, one line each; empty when the basket is consistent."""
    problems: list[str] = []
    open_sessions = conn.execute("SELECT COUNT(*) FROM sessions WHERE status = 'open'").fetchone()
    if int(open_sessions[0]) > 1:
        problems.append(f"{open_sessions[0]} sessions are open at once")
    for sid, version, applied in conn.execute(
        "SELECT s.id, s.version, (SELECT COUNT(*) FROM commands c "
        "WHERE c.session_id = s.id AND c.applied = 1) FROM sessions s"
    ):
        if int(version) != int(applied):
            problems.append(
                f"session {sid}: version {version} but {applied} applied commands in the ledger"
            )
    bad_items = conn.execute("SELECT COUNT(*) FROM items WHERE qty <= 0").fetchone()[0]
    if bad_items:
        problems.append(f"{bad_items} item lines with a non-positive quantity")
    for pid, status, answer, options in conn.execute(
        "SELECT id, status, answer, options FROM prompts"
    ):
        if status == "answered" and answer not in json.loads(options):
            problems.append(f"prompt {pid}: answer {answer!r} is not one of its options")
        if status != "answered" and answer is not None:
            problems.append(f"prompt {pid}: {status} but carries an answer")
    closed_with_open_prompts = conn.execute(
        "SELECT COUNT(*) FROM prompts p JOIN sessions s ON s.id = p.session_id "
        "WHERE s.status = 'closed' AND p.status = 'open'"
    ).fetchone()[0]
    if closed_with_open_prompts:
        problems.append(f"{closed_with_open_prompts} open prompts in closed sessions")
    problems.extend(sequence_problems(conn))
    return problems
