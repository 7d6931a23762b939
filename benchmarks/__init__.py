"""Benchmarks: each module prints figures comparing Orchard with a reference, side by side in one run."""
