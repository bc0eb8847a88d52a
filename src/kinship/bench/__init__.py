"""Benchmarks run by `kinship bench ...` (measurements by command, never by timed tests)."""
