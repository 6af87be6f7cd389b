"""Benchmarks of mirror against skopeo + tar + zstd: `python bench/run.py` (or `make bench`)."""
