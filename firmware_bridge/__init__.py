"""The cart microcontroller link, both ends of it: spec, codec, MCU side, firmware, emulator.

``PROTOCOL.md`` is the specification; ``codec.py`` (framing, CRC, messages,
dictionary), ``mcu_link.py`` (the MCU's link layer and event queue) and
``scale.py`` (calibration, tare, settle detection) are written in the Python
subset MicroPython runs, import nothing from ``cartos`` and are flashed to the
board unchanged together with ``firmware/``. ``emulator/`` runs that same
firmware on a pseudo-terminal with simulated peripherals and line faults.
"""
