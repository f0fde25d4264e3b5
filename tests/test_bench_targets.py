"""The benchmark's smoke run: ``bench/targets.py --quick`` prints every figure of issue 11's
targets with its agent, raw and ratio columns. It checks the table, never the speed; the storm's
counts are checked because they are exact or wrong, whatever the machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts its own dev server and bench worker

ROOT = Path(__file__).resolve().parents[1]
FIGURES = [
    "1a storm",
    "1b storm",
    "2 batched",
    "3 fleet",
    "3' fleet",
    "4 history",
    "4s independent senders",
    "5 agent start",
    "6 idle RSS",
    "7 event -> execute",
    "7' event -> execute",
    "8 approval -> execute",
]


# About 40 s on a quiet machine; once, under the whole suite's load, it was still running when
# pytest's 300 s limit ended the test, which then showed nothing of where it was. Now the run's
# own limit comes first, and the failure shows what the bench had printed by then.
QUICK_RUN_SECONDS = 500


@pytest.mark.timeout(QUICK_RUN_SECONDS + 60)
def test_quick_run_prints_every_figure() -> None:
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "targets.py"), "--quick"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=QUICK_RUN_SECONDS,
        )
    except subprocess.TimeoutExpired as err:
        printed = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        pytest.fail(f"the quick run did not end in {QUICK_RUN_SECONDS} s; it had printed:\n{printed[-5000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("\nsummary", 1)[1].splitlines()
    rows = {
        line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in summary if "|" in line
    }
    for figure in FIGURES:
        [row] = [cells for name, cells in rows.items() if name.startswith(figure)]
        _, agent, raw, ratio, _, met = row
        assert agent != "-" and met not in ("not run", "?"), row
        if not figure.startswith(("1", "4")):  # the storm is judged by its counts, history absolutely
            assert raw != "-" and ratio != "-", row
    for storm in ("1a storm", "1b storm"):
        [row] = [cells for name, cells in rows.items() if name.startswith(storm)]
        assert row[-1] == "yes", f"the storm's counts were not exact: {row}\n{done.stdout}"
    [senders] = [cells for name, cells in rows.items() if name.startswith("4s independent senders")]
    assert "not exact" not in senders[-1], f"the independent senders' counts were not exact: {senders}"
    assert "outside Temporal's sandbox" in done.stdout.split("\nsummary", 1)[1]  # the ceiling is said
    [health] = [cells for name, cells in rows.items() if name.startswith("9 health")]
    assert "health_monitor.py" in health[4]
