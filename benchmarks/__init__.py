"""Benchmarks: ``python -m benchmarks`` prints a table of figures (not a test)."""
