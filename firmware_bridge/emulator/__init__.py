"""The PC emulator of the cart board (host only)."""
