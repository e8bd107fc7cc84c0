from __future__ import annotations

from tiered_run.cli.entry import main

main()
