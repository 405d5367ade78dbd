"""`python -m benchmarks.aggregate`: the aggregate kernels beside pandas, polars and a memory pass, and the
processor end to end beside a read-only pass over the same rows."""
