"""Benchmarks: each ``bench_<topic>.py`` prints its figures as ratios against a baseline run beside it."""
