"""Run a workload in a CPU tier under time, memory and task ceilings, and report."""

from __future__ import annotations

__version__ = "0.1.0"
