"""Benchmark scripts of smart_hf, run as modules from the repository root: `python -m benchmarks.<name>`."""
