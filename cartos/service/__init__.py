"""Running cartos as a systemd service: readiness, watchdog, configuration and logging.

On a cart the runtime is started by ``cartos@<profile>.service`` (``Type=notify``): systemd
must learn when the cart can actually recognise items (not merely when the process exists),
must restart a loop that hangs, hands secrets over as credentials instead of files in /etc,
and collects stdout into the journal. Each of those contracts lives in its own module here so
the runtime loop only calls a few methods and each contract is testable without systemd.
"""

from __future__ import annotations
