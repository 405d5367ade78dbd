"""Test harness pieces shared by test modules and benchmarks: databases, brokers, in-process roles."""
