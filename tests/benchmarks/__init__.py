"""Tests of the benchmark scripts ' own logic (the benchmarks themselves run for hours)."""
