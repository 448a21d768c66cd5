"""The benchmark (``python3 -m benchmarks.bench`` from the repository root) and its latency proxy."""
