"""The PC emulator of the cart board (host only): the real firmware on a pty, simulated peripherals.

``board.Emulator`` runs ``firmware/app.py`` against ``peripherals`` (load-cell
physics, HX711, scanner) and ``faults`` (bit errors, garbage, drops, stalls,
unplug); ``traces`` generates recorded-style weight traces for benchmarks.
"""
