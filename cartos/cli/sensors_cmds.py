"""``cartos sensors monitor PROFILE``: watch the microcontroller link live (bench bring-up)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import click

from cartos.cli.main import reports_errors


@click.group("sensors")
def sensors() -> None:
    """The sensors side on its own: the scale and scanner behind the microcontroller."""


@sensors.command("monitor")
@click.argument("profile")
@click.option("--seconds", default=10.0, show_default=True, help="How long to watch (0 = forever).")
@click.option("--samples", is_flag=True, help="Also print the streamed weight samples.")
@reports_errors
def monitor(profile: str, seconds: float, samples: bool) -> None:
    """Print every event from the board as a JSON line, then the link statistics.

    On a profile whose bridge port is "emulator" an emulated board is started
    (an idle basket, so mostly link and clock traffic); otherwise the profile's
    serial port is opened, which is how a new cart is brought up on the bench.
    """
    from cartos.profiles.loader import load_profile
    from cartos.sensors.bridge.client import BridgeClient
    from cartos.sensors.bridge.events import Sample
    from cartos.sensors.bridge.profile import emulator_for, scale_config

    prof = load_profile(profile)
    with tempfile.TemporaryDirectory(prefix="cartos-monitor-") as tmp:
        emulator = None
        port = prof.bridge.port
        if prof.bridge.is_emulated:
            emulator = emulator_for(prof, Path(tmp) / "cart-mcu").start()
            port = str(emulator.link_path)

        def show_sample(sample: Sample) -> None:
            if samples:
                click.echo(json.dumps({"type": "Sample", **dataclasses.asdict(sample)}))

        client = BridgeClient(
            port, baud=prof.bridge.baud, scale=scale_config(prof),
            clock_sync_interval_s=prof.bridge.clock_sync_interval_s,
            reconnect_max_backoff_s=prof.bridge.reconnect_max_backoff_s,
            on_sample=show_sample,
        ).start()
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        try:
            while time.monotonic() < deadline:
                event = client.get(0.2)
                if event is not None:
                    click.echo(json.dumps({"type": type(event).__name__,
                                           **dataclasses.asdict(event)}))
        except KeyboardInterrupt:
            pass
        finally:
            client.stop()
            if emulator is not None:
                emulator.stop()
        click.echo(json.dumps({"type": "LinkStats", **client.stats().to_dict()}))


def register(root: click.Group) -> None:
    root.add_command(sensors)
