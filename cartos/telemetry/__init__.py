"""What the cart tells the people who run the fleet about itself.

Store operations need to see, per cart, whether recognition is holding up
(decision tiers, corrections per SKU), whether the cart is degraded (sensor
health, operating mode, memory headroom) and whether it is fast enough
(event→decision latency). :mod:`cartos.telemetry.metrics` keeps those numbers
in Prometheus form so the cart's local API can expose them at ``/metrics``.
"""

from cartos.telemetry.metrics import OPERATING_MODES, Metrics

__all__ = ["OPERATING_MODES", "Metrics"]
