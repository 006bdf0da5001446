"""Benchmarks for the bus layer and the daemon; run them with ``python -m bench`` (see README.md).

Nothing here asserts: every benchmark measures the project's code and a baseline in the same run,
interleaved round by round on this noisy shared machine, and prints medians, percentiles and ratios.
"""
