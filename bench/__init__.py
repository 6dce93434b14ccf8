"""Benchmarks of rsft: answer quality learned from noisy ratings (quality.py) and serving/round speed (speed.py).

Run them with `make bench-quality`, `make bench-speed` or `make bench-smoke`; docs/benchmarks.md shows the latest
results and how each number was produced.
"""
