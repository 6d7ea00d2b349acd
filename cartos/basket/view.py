"""The basket as plain data: what the screen, ``cartos basket show`` and tests look at.

The view is read back from the committed tables rather than maintained
alongside them, so it can never show a change that did not reach the disk.
Its shape is a stable JSON contract::

    {"session": "s-42" | null, "status": "open" | "closed" | null, "version": 7,
     "items": [{"sku", "qty", "unit_price_cents", "unit_weight_g", "evidence_id"}],
     "pending_prompts": [{"id", "question", "options", "opened_at", "expires_at"}],
     "alerts": [{"id", "kind", "evidence", "raised_at"}],
     "review": 2}
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def empty_view() -> dict[str, Any]:
    """The view when no session is on file."""
    return {
        "session": None,
        "status": None,
        "version": 0,
        "items": [],
        "pending_prompts": [],
        "alerts": [],
        "review": 0,
    }


def load_view(conn: sqlite3.Connection, session_id: str | None = None) -> dict[str, Any]:
    """The view of ``session_id``, or of the open session, or else of the latest one."""
    if session_id is None:
        row = conn.execute(
            "SELECT id, status, version FROM sessions "
            "ORDER BY status = 'open' DESC, opened_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id, status, version FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
    if row is None:
        return empty_view()
    sid, status, version = str(row[0]), str(row[1]), int(row[2])
    items = [
        {
            "sku": sku,
            "qty": int(qty),
            "unit_price_cents": price,
            "unit_weight_g": weight,
            "evidence_id": evidence,
        }
        for sku, qty, price, weight, evidence in conn.execute(
            "SELECT sku, qty, unit_price_cents, unit_weight_g, evidence_id FROM items "
            "WHERE session_id = ? ORDER BY sku",
            (sid,),
        )
    ]
    prompts = [
        {
            "id": pid,
            "question": question,
            "options": json.loads(options),
            "opened_at": opened_at,
            "expires_at": expires_at,
        }
        for pid, question, options, opened_at, expires_at in conn.execute(
            "SELECT id, question, options, opened_at, expires_at FROM prompts "
            "WHERE session_id = ? AND status = 'open' ORDER BY opened_at, id",
            (sid,),
        )
    ]
    alerts = [
        {"id": int(aid), "kind": kind, "evidence": json.loads(evidence), "raised_at": at}
        for aid, kind, evidence, at in conn.execute(
            "SELECT id, kind, evidence, raised_at FROM alerts WHERE session_id = ? ORDER BY id",
            (sid,),
        )
    ]
    review = int(
        conn.execute("SELECT COUNT(*) FROM review WHERE session_id = ?", (sid,)).fetchone()[0]
    )
    return {
        "session": sid,
        "status": status,
        "version": version,
        "items": items,
        "pending_prompts": prompts,
        "alerts": alerts,
        "review": review,
    }


def render_text(view: dict[str, Any]) -> str:
    """A human table of the view for a terminal."""
    if view["session"] is None:
        return "no shopping session on file"
    lines = [f"session {view['session']} ({view['status']}), version {view['version']}"]
    if view["items"]:
        lines.append(f"  {'sku':<24} {'qty':>5} {'price':>9} {'weight g':>9}  evidence")
        for item in view["items"]:
            price = item["unit_price_cents"]
            weight = item["unit_weight_g"]
            lines.append(
                f"  {item['sku']:<24} {item['qty']:>5} "
                f"{'' if price is None else f'{price / 100:.2f}':>9} "
                f"{'' if weight is None else f'{weight:.1f}':>9}  {item['evidence_id'] or ''}"
            )
    else:
        lines.append("  (basket empty)")
    for prompt in view["pending_prompts"]:
        lines.append(
            f"  prompt {prompt['id']}: {prompt['question']} [{' / '.join(prompt['options'])}]"
        )
    for alert in view["alerts"]:
        lines.append(f"  alert #{alert['id']} {alert['kind']}: {json.dumps(alert['evidence'])}")
    lines.append(f"  review queue: {view['review']}")
    return "\n".join(lines)
