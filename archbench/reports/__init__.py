"""Benchmark JSON -> tidy tables, per-use-case recommendations, HTML report and run comparison.

Reads only pytest-benchmark JSON; never imports torch, so it runs on any laptop.
"""
