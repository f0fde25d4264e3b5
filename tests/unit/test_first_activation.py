"""The meeting point between an eager action start and the runner (activities/first_activation.py):
told from another thread, bounded, and forgetting only its own watch."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from activities.first_activation import FirstActivations


async def test_told_from_an_activation_thread_the_start_goes_on() -> None:
    first = FirstActivations(wait=timedelta(seconds=30))
    watch = first.expect("action-1")
    assert first.awaited("action-1") and not first.awaited("action-2")
    thread = threading.Thread(target=first.computed, args=("action-1",))
    thread.start()
    assert await first.computed_in_time(watch)
    thread.join()
    first.release("action-1", watch)
    assert not first.awaited("action-1")
    first.computed("action-1")  # told again, or of a run nobody waits for: nothing happens


async def test_never_told_the_start_waits_its_bound_and_says_so() -> None:
    first = FirstActivations(wait=timedelta(milliseconds=1))
    watch = first.expect("action-1")
    assert not await first.computed_in_time(watch)
    first.release("action-1", watch)
    assert not first.awaited("action-1")


async def test_a_start_forgets_only_its_own_watch() -> None:
    first = FirstActivations()
    earlier = first.expect("action-1")
    later = first.expect("action-1")  # the same start run again while the first still waits
    first.release("action-1", earlier)
    assert first.awaited("action-1")
    first.computed("action-1")
    assert await first.computed_in_time(later) and not earlier.done()
    first.release("action-1", later)
    assert not first.awaited("action-1")


def test_told_after_the_loop_closed_nothing_raises() -> None:
    loop = asyncio.new_event_loop()
    first = FirstActivations()

    async def watch() -> None:
        first.expect("action-1")

    loop.run_until_complete(watch())
    loop.close()
    first.computed("action-1")
