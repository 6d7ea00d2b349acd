"""``cartos run``: the cart process as a systemd service.

Start-up order matters to systemd: READY=1 goes out only after the catalogue
was opened and checked and the sensors were opened (the microcontroller link
may still be connecting: a cart with a dead board runs degraded rather than
not at all). The loop pings the watchdog through a heartbeat, so a hung loop
gets the service restarted; SIGTERM ends it cleanly with STOPPING=1.
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from cartos.api.server import ApiServer
from cartos.api.store_view import StoreView
from cartos.basket.store import BasketStore
from cartos.catalog.store import CatalogStore
from cartos.profiles.schema import EMULATOR_PORT, DeviceProfile
from cartos.runtime.cart import CartRuntime, StoreViewBasket
from cartos.runtime.errors import RuntimeStartError
from cartos.runtime.hub_link import start_hub_link
from cartos.sensors.bridge.profile import emulator_for
from cartos.sensors.camera import FrameSource, ImageDirectoryReplay, OpenCVSource
from cartos.service.config import load_service_config
from cartos.service.lifecycle import Lifecycle
from cartos.service.notify import Notifier
from cartos.service.watchdog import Watchdog
from cartos.sync.cart_client import CartSync
from cartos.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

LOOP_SLEEP_S = 0.02
SENSOR_WAIT_S = 10.0


def camera_for(profile: DeviceProfile, replay: Path | None = None) -> FrameSource | None:
    """The camera source the profile describes (``replay`` overrides it with a folder)."""
    cam = profile.camera
    if replay is not None:
        return ImageDirectoryReplay(replay, fps=cam.fps, loop=True)
    if cam.source == "device" and cam.device is not None:
        return OpenCVSource(cam.device, width=cam.width, height=cam.height, fps=cam.fps)
    if cam.source == "file" and cam.path is not None:
        return OpenCVSource(Path(cam.path), pace_fps=cam.fps)
    if cam.source == "rtsp" and cam.url is not None:
        return OpenCVSource(cam.url)
    if cam.source == "replay" and cam.path is not None:
        return ImageDirectoryReplay(Path(cam.path), fps=cam.fps, loop=True)
    return None  # replay with frames pushed by a harness: none in a standalone run


def run_service(
    profile_name: str,
    catalogue: Path,
    state_dir: Path | None = None,
    api_port: int | None = 8420,
    replay: Path | None = None,
    seconds: float | None = None,
    announce: Any = print,
    port: str | None = None,
) -> int:
    """Run the cart until SIGTERM (or ``seconds``); returns the exit status.

    ``port`` overrides the profile's serial device (bench bring-up on another tty).
    """
    config = load_service_config(profile_name)
    profile = config.profile
    state = state_dir or Path(os.environ.get("STATE_DIRECTORY", "/var/lib/cartos"))
    state.mkdir(parents=True, exist_ok=True)
    notifier = Notifier.from_env()
    lifecycle = Lifecycle(notifier)
    restore_signals = lifecycle.install_stop_signals()
    emulator = None
    link: CartSync | None = None
    try:
        if not catalogue.exists():
            raise RuntimeStartError(f"catalogue {catalogue} does not exist")
        with CatalogStore(catalogue) as store:
            skus = [r.sku for r in store.list_skus(status="active")]
            version = store.version
        lifecycle.mark("catalogue", f"catalogue v{version}, {len(skus)} SKUs")
        port = port or profile.bridge.port
        if port == EMULATOR_PORT:
            emulator = emulator_for(profile, state / "cart-mcu").start()
            port = str(emulator.link_path)
        metrics = Metrics(known_skus=skus)
        holder: dict[str, CartRuntime] = {}

        def health() -> dict[str, object]:
            rt = holder.get("runtime")
            return rt.health.to_dict(time.monotonic()) if rt else {"mode": "starting"}

        def answered(prompt_id: str, answer: str) -> None:
            holder["runtime"].answer_prompt(prompt_id, answer, recorded=True)

        store_view = StoreView(partial(BasketStore, state / "basket.db"), health,
                               on_answer=answered)
        runtime = CartRuntime(profile, catalogue, state / "basket.db", state, port=port,
                              camera=camera_for(profile, replay),
                              basket=StoreViewBasket(store_view), metrics=metrics)
        holder["runtime"] = runtime
        runtime.start()
        runtime.bridge.wait_ready(SENSOR_WAIT_S)
        if profile.sync is not None:
            link = start_hub_link(profile.sync, config.credentials, catalogue,
                                  state / "basket.db", state, runtime.request_reload)
            announce(f"hub link: store {profile.sync.store} as {profile.sync.cart} via "
                     f"{profile.sync.host}:{profile.sync.port}")
        api = None
        if api_port is not None:
            api = ApiServer(store_view, port=api_port, metrics=metrics)
            api.start()
            announce(f"cart API on {api.url}")
        lifecycle.mark("sensors", f"mode {runtime.mode}")
        _loop(runtime, lifecycle, notifier, store_view, seconds)
        if link is not None:
            link.stop()
        if api is not None:
            api.stop()
        runtime.stop()
        return 0
    finally:
        lifecycle.stopping("shutting down")
        if emulator is not None:
            emulator.stop()
        restore_signals()


def _loop(runtime: CartRuntime, lifecycle: Lifecycle, notifier: Notifier,
          store_view: StoreView, seconds: float | None) -> None:
    end = time.monotonic() + seconds if seconds else float("inf")
    mode = ""
    with Watchdog.from_env(notifier) as watchdog:
        while not lifecycle.stop_event.is_set() and time.monotonic() < end:
            runtime.step()
            watchdog.heartbeat()
            now_mode = runtime.mode
            if now_mode != mode:
                mode = now_mode
                if mode == "full":
                    lifecycle.clear_degraded("sensors")
                else:
                    lifecycle.set_degraded("sensors", mode)
                store_view.publish_health()
                runtime.metrics.set_mode(mode)
                log.info("mode: %s", mode)
            time.sleep(LOOP_SLEEP_S)
