"""Event throughput: the throughput figures of ``bench/targets.py`` (storm, batched, fleet, history).

    python bench/event_throughput.py [targets.py options, e.g. --repeat 3 --events 20000]

Same as ``python bench/targets.py --only storm,batched,fleet,history`` (an ``--only`` given
wins); see ``targets.py`` for what each clock measures. Counts are read from the agents' state,
the raw side is batched like the agent, and the fleet's raw side takes its events by the same
intake update (and, for reference, by signal).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import targets

THROUGHPUT = "storm,batched,fleet,history"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--only" or a.startswith("--only=") for a in argv):
        argv = ["--only", THROUGHPUT, *argv]
    asyncio.run(targets.main(argv))
