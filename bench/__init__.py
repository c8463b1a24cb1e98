"""Benchmarks: each bench_*.py module prints its figures and the ratio to the
baseline it names, measured in the same run. Run all with `make bench` or one
with `python -m bench NAME`."""
