"""The benchmark's progress counter stays exact when threads count at once.

The raw workflows of ``bench/`` count in their handlers, which the worker runs in its workflow
threads, several at the same moment. A round waits until the counter file shows every event, so a
file left one behind (two writes landing out of order) made a quick run wait its whole 900 s bound
in CI. This drives bursts of concurrent counts, as a fleet round does, and reads the file after each.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from bench import observer_agent
from bench.observer_agent import count_decision, read_count

BURSTS = 300
THREADS = 10


def test_the_counter_file_shows_every_count_after_each_burst_of_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "counter"
    monkeypatch.setenv("BENCH_COUNTER_FILE", str(path))
    monkeypatch.setattr(observer_agent, "_fd", None)
    monkeypatch.setattr(observer_agent, "_decided", 0)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    behind = []
    try:
        for burst in range(1, BURSTS + 1):
            start = threading.Barrier(THREADS)

            def count(start: threading.Barrier = start) -> None:
                start.wait()
                count_decision()

            threads = [threading.Thread(target=count) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if read_count(str(path)) != burst * THREADS:
                behind.append(burst)
    finally:
        sys.setswitchinterval(switch)
        if observer_agent._fd is not None:
            os.close(observer_agent._fd)
    assert not behind, f"the file was behind after {len(behind)} of {BURSTS} bursts"
    assert read_count(str(path)) == BURSTS * THREADS
