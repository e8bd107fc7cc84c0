"""The benchmark behind scripts/bench.py: guards, workloads, sections and their figures."""
