"""Benchmarks of the local pipeline, each figure set against a floor measured in the same run.

The machine the benchmarks run on is small, shared and noisy, so absolute
numbers mean little: every figure is printed next to a floor (the least the
same work could cost with the same emulators and clients) and judged as a
ratio. ``python -m bench`` runs them all; see bench/README.md.
"""
