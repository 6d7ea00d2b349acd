# Board entry point: MicroPython runs main.py after boot.py on every reset.
#
# Kept to the loop itself; the wiring lives in board.py. MicroPython subset:
# see codec.py.
"""Start the cart firmware: wire the board, then step the application forever."""

try:
    from firmware_bridge.firmware import board
except ImportError:  # flat layout on the board
    import board  # type: ignore[no-redef]

BOARD = None  # None: chosen from sys.platform ("rp2" -> rp2040-pico, "esp32" -> esp32-devkit)
LINK = board.LINK_USB  # board.LINK_USB: USB-CDC (the REPL's port); board.LINK_UART: link UART

if __name__ == "__main__":
    running = board.start(BOARD, LINK)
    if running is not None:  # None: safe mode, stay at the REPL
        app, wdt = running
        while True:
            app.step()
            wdt.feed()
