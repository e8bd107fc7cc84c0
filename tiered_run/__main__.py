from __future__ import annotations

from tiered_run.cli import main

main()
