"""The cart process of ``cartos bench sync``: writes corrections into its basket and uplinks them.

Run as ``python -m cartos.bench.sync_cart BASKET STORE CART PORT TOTAL [RATE]`` (RATE:
corrections per second, as fast as the disk allows when absent). The
benchmark SIGKILLs and restarts it: it resumes from the basket file itself
(correction ``i`` has the idempotency key ``answer:i``, so the one being
written when the process died is written once), exactly as the cart runtime
resumes its session.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.sync.cart_client import CartSync, SyncSettings


def main(argv: list[str]) -> int:
    basket_db, store, cart = Path(argv[0]), argv[1], argv[2]
    port, total = int(argv[3]), int(argv[4])
    interval = 1.0 / float(argv[5]) if len(argv) > 5 else 0.0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    uplink = CartSync(basket_db, store, cart,
                        SyncSettings(port=port, window=200, reconnect_max_s=1.0)).start()
    with BasketStore(basket_db) as basket:
        if basket.session is None:
            basket.apply(SessionOpened("bench:open", "6c1d7a52-5b5e-4f0e-9d55-2a4b8f3c9e01"))
        written = basket.outbox_stats()["corrections"].last_seq
        next_at = time.monotonic()
        for i in range(written, total):
            if stop.is_set():
                break
            basket.apply(ItemAdded(f"answer:{i}", f"sku-{i % 97}", 1, corrects=f"prompt:{i}"))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    while not stop.is_set():
        time.sleep(0.1)
    uplink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
