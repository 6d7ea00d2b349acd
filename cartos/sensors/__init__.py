"""Sensors, host side: basket camera, and the scale and scanner behind the microcontroller.

``bridge/`` drives the cart's microcontroller over the protocol in
``firmware_bridge/`` (settled weights, scans, scale states, clock sync),
``camera/`` captures or replays frames and finds what changed, and
``barcode/`` validates what the scanner read. Each turns hardware into
timestamped, validated events on the host's monotonic clock, for fusion.
"""
