"""Fusion: vision × weight delta × barcode → one decision per item event.

Consumes :class:`cartos.inference.recognizer.Recognition` answers (already
calibrated and tiered) and sensor events; knows nothing of ONNX. Filled by the
cart-runtime milestone.
"""
