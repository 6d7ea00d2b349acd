"""Drift and retraining triggers: is what the cart sees still what the catalogue was built on?

``features`` turns an item crop into input statistics (brightness, contrast, sharpness,
colour balance) and a recognition into embedding statistics (nearest-prototype
similarity); ``psi`` compares a window of them with a reference window by Population
Stability Index; ``monitor`` turns those comparisons, per-class accuracy estimated from
corrections, and catalogue growth into alerts with their evidence.
"""
