"""Sensors: basket camera, load-cell scale and barcode scanner (host side).

The scale and scanner are reached through the cart's microcontroller over the
protocol in ``firmware_bridge/``; this package turns that link and the camera
into timestamped events for fusion. Filled by the sensors milestone.
"""
