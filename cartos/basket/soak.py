"""A scripted shopping session applied by a process that is meant to be killed.

The durability check (:mod:`cartos.bench.durability`, ``tests/basket``) runs
this module as a child process, ``SIGKILL``s it at random moments and starts
it again, the way a watchdog restarts the cart runtime. The script is
generated from a seed, so parent and child agree on every command without
sharing anything but the seed, and the generator also records what the
basket must look like after each step: the parent compares the file against
that expectation after every kill.

Protocol on stdout, one line per command, written only after ``apply``
returned (so after ``COMMIT``): ``ack <index> <applied> <duplicate> <version>``;
``done`` when the script is finished. Run it as
``python -m cartos.basket.soak --db PATH --seed N --length N --start I``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from cartos.basket.events import (
    AlertRaised,
    Command,
    ItemAdded,
    ItemRemoved,
    PromptAnswered,
    PromptExpired,
    PromptOpened,
    QuantityChanged,
    ReviewQueued,
    SessionClosed,
    SessionOpened,
    sensor_key,
)
from cartos.basket.store import BasketStore

Fingerprint = tuple[
    str | None, str | None, int, tuple[tuple[str, int], ...], tuple[str, ...], int, int
]
"""(session, status, version, items, open prompt ids, alert count, review count)."""

_SKUS = tuple(f"sku-{n:03d}" for n in range(40))


@dataclass(frozen=True, slots=True)
class Script:
    """The commands in order, and the expected basket after each of them."""

    commands: list[Command]
    expected: list[Fingerprint]

    def key(self, index: int) -> str:
        return self.commands[index].key


@dataclass(slots=True)
class _Model:
    """The generator's own idea of the basket, independent of the store's code."""

    session: str | None = None
    status: str | None = None
    version: int = 0
    items: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    alerts: int = 0
    review: int = 0

    def fingerprint(self) -> Fingerprint:
        return (
            self.session,
            self.status,
            self.version,
            tuple(sorted(self.items.items())),
            tuple(sorted(self.prompts)),
            self.alerts,
            self.review,
        )


def fingerprint(view: dict[str, Any]) -> Fingerprint:
    """The same summary as the generator's, computed from a store's view."""
    return (
        view["session"],
        view["status"],
        int(view["version"]),
        tuple(sorted((str(i["sku"]), int(i["qty"])) for i in view["items"])),
        tuple(sorted(str(p["id"]) for p in view["pending_prompts"])),
        len(view["alerts"]),
        int(view["review"]),
    )


def build_script(seed: int, length: int) -> Script:
    """A long, valid mixed session sequence of exactly ``length`` commands; every one changes state.

    The mix covers every command type, removals of more than is present
    (alert rule), corrections, prompt answers and expiries, and session
    close/reopen, so a restart can land in any kind of step.
    """
    rng = random.Random(seed)
    model = _Model()
    commands: list[Command] = []
    expected: list[Fingerprint] = []
    boot = f"soak{seed}"
    sessions = 0
    prompts = 0
    while len(commands) < length:
        index = len(commands)
        key = sensor_key(boot, index)
        cmd = _next_command(rng, model, key, index, sessions, prompts)
        if isinstance(cmd, SessionOpened):
            sessions += 1
        if isinstance(cmd, PromptOpened):
            prompts += 1
        commands.append(cmd)
        expected.append(model.fingerprint())
    return Script(commands, expected)


def _next_command(
    rng: random.Random, model: _Model, key: str, index: int, sessions: int, prompts: int
) -> Command:
    """Pick a command valid in ``model``'s state and apply it to the model."""
    if model.status != "open":
        model.session = f"{key}-session{sessions}"
        model.status, model.version = "open", 1
        model.items, model.prompts, model.alerts, model.review = {}, {}, 0, 0
        return SessionOpened(key, model.session)
    model.version += 1
    roll = rng.random()
    if roll < 0.03 and model.version > 30:
        model.status = "closed"
        model.prompts = {}
        return SessionClosed(key, rng.choice(("checkout", "abandoned")))
    if roll < 0.45 or not model.items:
        sku = rng.choice(_SKUS)
        qty = rng.randint(1, 3)
        model.items[sku] = model.items.get(sku, 0) + qty
        weight = round(rng.uniform(20, 2000), 1)
        return ItemAdded(key, sku, qty, rng.randint(49, 1999), weight, f"ev{index}")
    if roll < 0.60:
        sku = rng.choice(sorted(model.items))
        present = model.items[sku]
        qty = present + rng.randint(1, 2) if rng.random() < 0.1 else rng.randint(1, present)
        if qty > present:
            model.alerts += 1
        left = present - min(qty, present)
        if left:
            model.items[sku] = left
        else:
            del model.items[sku]
        return ItemRemoved(key, sku, qty, f"ev{index}")
    if roll < 0.68:
        sku = rng.choice(sorted(model.items))
        qty = rng.choice([q for q in range(5) if q != model.items[sku]])
        if qty:
            model.items[sku] = qty
        else:
            del model.items[sku]
        return QuantityChanged(key, sku, qty, f"ev{index}", corrects=sensor_key("soak", index - 1))
    if roll < 0.76 or not model.prompts:
        prompt_id = f"{model.session}-p{prompts}"
        options = ("yes", "no", "call attendant")[: rng.randint(2, 3)]
        model.prompts[prompt_id] = options
        return PromptOpened(key, prompt_id, "Did you add this item?", options, None)
    if roll < 0.84:
        prompt_id = rng.choice(sorted(model.prompts))
        options = model.prompts.pop(prompt_id)
        if rng.random() < 0.3:
            return PromptExpired(key, prompt_id)
        return PromptAnswered(key, prompt_id, rng.choice(options))
    if roll < 0.92:
        model.alerts += 1
        kind = rng.choice(("unscanned", "ticket_switch", "weight_mismatch"))
        return AlertRaised(key, kind, {"index": index, "delta_g": round(rng.gauss(0, 50), 1)})
    model.review += 1
    candidates = tuple((rng.choice(_SKUS), round(rng.random(), 3)) for _ in range(3))
    return ReviewQueued(key, f"/var/cartos/crops/{index}.jpg", "low margin", candidates, 250.0)


def run_child(
    db: str,
    seed: int,
    length: int,
    start: int,
    *,
    telemetry_every: int,
    telemetry_cap: int,
    out: TextIO,
) -> int:
    """Apply ``script[start:]``, acknowledging each command on ``out`` after its commit."""
    script = build_script(seed, length)
    with BasketStore(db, telemetry_cap=telemetry_cap) as store:
        for index in range(start, length):
            result = store.apply(script.commands[index])
            out.write(
                f"ack {index} {int(result.applied)} {int(result.duplicate)} "
                f"{result.basket_version}\n"
            )
            out.flush()
            if telemetry_every and index % telemetry_every == 0:
                store.record_telemetry({"index": index, "items": len(store.view()["items"])})
    out.write("done\n")
    out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cartos.basket.soak", description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--telemetry-every", type=int, default=5)
    parser.add_argument("--telemetry-cap", type=int, default=50)
    args = parser.parse_args(argv)
    return run_child(
        args.db,
        args.seed,
        args.length,
        args.start,
        telemetry_every=args.telemetry_every,
        telemetry_cap=args.telemetry_cap,
        out=sys.stdout,
    )


if __name__ == "__main__":
    sys.exit(main())
