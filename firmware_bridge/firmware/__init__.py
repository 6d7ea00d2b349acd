"""The cart microcontroller's firmware (MicroPython), importable on CPython for tests.

On the board these modules are copied flat next to ``codec.py``, ``mcu_link.py``
and ``scale.py`` (see README.md); this package file only lets the CPython
emulator and tests import them as ``firmware_bridge.firmware.*``.
"""
