"""Benchmarks: the cost of observing, each figure beside a baseline measured in the same run."""
