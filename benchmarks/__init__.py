"""Benchmarks for py_async_lib (see benchmarks/throughput.py and test_bench.py)."""
