"""Ingest benchmark: end-to-end rates of the ingester beside baselines measured in the same run.

Run it with `python -m benchmarks.ingest` (see `__main__` for the options and what each figure means).
"""
