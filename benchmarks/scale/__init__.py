"""Scale benchmark: one versus two processes per role, and growth from 1 to 50 million stored readings.

Run with `python -m benchmarks.scale` (see `__main__.py`).
"""
