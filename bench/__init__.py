"""Benchmarks and load tools: `python -m bench` (make bench) and `python -m bench.load`."""
