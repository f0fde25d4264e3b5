"""Helpers the benchmark scenarios share: payloads, bounded concurrency, the progress counter,
and the figures the summary table prints."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.observer_agent import read_count


def event_payload(i: int, prefix: str = "e") -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "type": "alert",
        "source": f"host-{i % 50}",
        "data": {"n": i},
    }


async def bounded(jobs: list[Callable[[], Awaitable[Any]]], in_flight: int) -> list[Any]:
    """Run ``jobs`` with at most ``in_flight`` at a time; their results in order."""
    semaphore = asyncio.Semaphore(in_flight)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Counter:
    """The worker's counter file (hook calls and raw handler runs, at least once each): a cheap
    progress signal read without disturbing the workflows. Never the final word on a count."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = 0

    def reset(self) -> None:
        self.base = read_count(self.path)

    @property
    def seen(self) -> int:
        return read_count(self.path) - self.base

    async def wait(self, target: int, within: float = 900, poll: float = 0.005, stall: float = 120) -> None:
        """Until ``target`` more are counted. Gives up after ``within`` seconds in all, or after
        ``stall`` seconds without one more count: a round stuck one short then fails in minutes,
        saying how far it got, rather than at the end of a long storm's bound."""
        now = time.monotonic()
        deadline, last, moved = now + within, -1, now
        while (seen := self.seen) < target:
            now = time.monotonic()
            if seen != last:
                last, moved = seen, now
            if now > deadline or now - moved > stall:
                raise TimeoutError(
                    f"only {seen}/{target} counted in {now - deadline + within:.0f}s "
                    f"(none more in the last {now - moved:.0f}s)"
                )
            await asyncio.sleep(poll)


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 900, poll: float = 0.02) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(poll)


PROFILE_ENV = "BENCH_PROFILE"  # a folder: py-spy samples the worker during each clock into it


@contextmanager
def profiled(pid: int, label: str) -> Iterator[None]:
    """With ``BENCH_PROFILE`` set, ``py-spy record`` the worker process ``pid`` while the block runs,
    into ``$BENCH_PROFILE/<label>.txt`` (collapsed stacks; ``bench/profile_top.py`` sums them).
    For finding where the time goes, never for the figures: sampling slows the worker a little."""
    folder = os.environ.get(PROFILE_ENV)
    if not folder or not pid:
        yield
        return
    out = Path(folder) / f"{label}.txt"
    spy_bin = Path(sys.executable).parent / "py-spy"
    spy_path = str(spy_bin) if spy_bin.exists() else shutil.which("py-spy")
    if spy_path is None:
        raise SystemExit(f"{PROFILE_ENV} needs py-spy: pip install -e '.[bench]'")
    spy = subprocess.Popen(
        [
            spy_path,
            "record",
            "-p",
            str(pid),
            "--format",
            "raw",
            "-o",
            str(out),
            "-r",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc (KB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Figure:
    """One row of the summary: the agent's and the raw value of each run, and the target.

    ``higher_is_better``: the ratio agent/raw must be at least ``target`` (throughput), else at
    most (latency, memory, history events). With ``absolute`` the target applies to the agent's
    value alone (the raw value is shown for reference). ``checks``: pass/fail per run for figures
    that are counts (the storm), shown instead of a ratio unless ``exact`` (then the ratio is
    judged too, and every run must also be exact). ``every_run``: the target must hold in every
    run, not only for the median (the noisy throughput figures of issue 30).
    """

    name: str
    unit: str
    target: float | None
    higher_is_better: bool = True
    absolute: bool = False
    agent: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    checks: list[bool] = field(default_factory=list)
    note: str = ""
    target_text: str = ""
    every_run: bool = False
    exact: bool = False

    def add(self, agent: float, raw: float | None = None) -> None:
        self.agent.append(agent)
        if raw is not None:
            self.raw.append(raw)

    @property
    def ratios(self) -> list[float]:
        return [a / r for a, r in zip(self.agent, self.raw, strict=False) if r]

    def met(self) -> str:
        if self.checks and not all(self.checks):
            return "NO (not exact)" if self.exact else "NO"
        if self.checks and not self.exact:
            return "yes"
        if self.target is None:
            return "-"
        values = self.agent if self.absolute else self.ratios
        if not values:
            return "?"
        judged = values if self.every_run else [statistics.median(values)]
        target = self.target
        ok = all(v >= target if self.higher_is_better else v <= target for v in judged)
        return "yes" if ok else "NO"

    def target_description(self) -> str:
        if self.target_text:
            return self.target_text
        if self.target is None:
            return "-"
        text = f"{'>=' if self.higher_is_better else '<='} {self.target:g}"
        if self.every_run:
            text += " every run"
        return text + (", exact" if self.exact else "")


def spread(values: list[float], digits: int = 2) -> str:
    """min / median / max (a single value alone)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def value_text(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    digits = 0 if max(abs(v) for v in values) >= 100 else 1 if max(abs(v) for v in values) >= 10 else 2
    return f"{spread(values, digits)} {unit}".strip()


def table(figures: list[Figure]) -> str:
    """figure | agent | raw | ratio (min / median / max) | target | met?"""
    rows = [("figure", "agent", "raw", "ratio min / median / max", "target", "met?")]
    for f in figures:
        target = f.target_description()
        ratio = "-" if f.absolute or (f.checks and not f.exact) else spread(f.ratios)
        met = f.met() if f.agent else "not run"
        rows.append((f.name, value_text(f.agent, f.unit), value_text(f.raw, f.unit), ratio, target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
