"""Training loops and their run configuration, shared by the scripts in training/ and importable by tests,
benchmarks and notebooks."""
