"""Benchmarks; run with `python -m bench.<name>`. Not part of the timed test suite."""
