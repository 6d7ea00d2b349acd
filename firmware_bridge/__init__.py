"""The cart microcontroller link: wire protocol codec, emulator and firmware.

Self-contained (runs on CPython and MicroPython); imports nothing from
``cartos``. Filled by the sensors milestone.
"""
