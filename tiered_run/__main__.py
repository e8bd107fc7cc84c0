from __future__ import annotations

from tiered_run.entry import main

main()
