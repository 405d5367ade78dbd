"""`python -m benchmarks.soak`: an accelerated city with faults into a platform of separate processes, watched for
growing memory and lag; see `benchmarks.soak.__main__`."""
