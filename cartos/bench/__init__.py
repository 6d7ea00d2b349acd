"""Benchmarks: measurements on real data, printed as side-by-side ratios.

Never imported by runtime code; run through ``cartos bench …``.
"""
