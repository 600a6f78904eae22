"""Benchmarks run by `python -m bench [--full]` (make bench): one bench_*.py module each, see __main__.py."""
