"""Calls a rotated connection drops are made again by the project's client, and applied once.

A dev server of its own closes every client connection after two seconds (0.1 s of grace), the
way a production frontend does every five minutes. A bare SDK client and the project's client
(``aiops.connection.connect``) make the same calls side by side, each on its own connection,
until the bare one has been dropped a few times: the project's client must see none of the drops,
and every update it made must have been applied exactly once, though some were sent more than once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from aiops.connection import connect
from aiops.dropped_calls import CALL_TIMED_OUT, dropped_by_the_connection
from tests.conftest import TEMPORAL_BIN
from tests.helpers import eventually

pytestmark = pytest.mark.slow

DROPS_TO_SEE = 3
WITHIN_SECONDS = 90.0
CALLERS = 8


@workflow.defn(name="DroppedCallsProbe")
class Probe:
    def __init__(self) -> None:
        self.applied = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def slow(self) -> int:
        """Holds the update call open for a while, so a rotation finds calls in flight."""
        self.applied += 1
        await workflow.sleep(1.0)
        return self.applied

    @workflow.query
    def count(self) -> int:
        return self.applied


# The stuck-task guard (tests/conftest.py) checks this module's own server too.
OWN_DEV_SERVER = "rotating"


@pytest_asyncio.fixture(scope="module")
async def rotating() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        dev_server_extra_args=[
            "--dynamic-config-value", 'frontend.keepAliveMaxConnectionAge="2s"',
            "--dynamic-config-value", 'frontend.keepAliveMaxConnectionAgeGrace="0.1s"',
        ],
        dev_server_startup_timeout=timedelta(seconds=30),
    )  # fmt: skip
    try:
        yield environment
    finally:
        await environment.shutdown()


class Caller:
    """Makes updates, describes, queries and lists on a probe workflow of its own until told to
    stop; counts what succeeded and what the connection dropped. One caller per workflow: the
    server buffers only one query per workflow while its task runs, and a full buffer is the
    server's refusal, not the connection's."""

    def __init__(self, client: Client, side: str, task_queue: str) -> None:
        self.client, self.side, self.task_queue = client, side, task_queue
        self.updates = 0
        self.dropped: list[BaseException] = []
        self.other: list[BaseException] = []

    async def start(self) -> Caller:
        # A start is not repeated by the interceptor (see aiops/dropped_calls.py): the test does it,
        # with the conflict policy that makes a repeat find the run a dropped start made.
        start = functools.partial(
            self.client.start_workflow, Probe.run, id=f"{self.side}-{uuid.uuid4()}",
            task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )  # fmt: skip
        self.handle = await eventually(start, lambda _: True)
        return self

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.handle.execute_update(Probe.slow)
                self.updates += 1
                await self.handle.describe()
                await self.handle.query(Probe.count)
                async for _ in self.client.list_workflows(f"WorkflowId = '{self.handle.id}'"):
                    pass
            except Exception as err:
                (self.dropped if dropped_by_the_connection(err) else self.other).append(err)


async def test_the_projects_client_makes_dropped_calls_again_and_applies_updates_once(
    rotating: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiops.dropped_calls")
    address = rotating.client.service_client.config.target_host
    task_queue = f"tq-{uuid.uuid4()}"
    bare = await Client.connect(address)
    ours = await connect(address=address, namespace="default")
    async with Worker(
        rotating.client, task_queue=task_queue, workflows=[Probe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):  # fmt: skip
        bare_callers = [await Caller(bare, "bare", task_queue).start() for _ in range(CALLERS)]
        our_callers = [await Caller(ours, "ours", task_queue).start() for _ in range(CALLERS)]
        stop = asyncio.Event()
        running = [asyncio.create_task(c.run(stop)) for c in bare_callers + our_callers]
        deadline = time.monotonic() + WITHIN_SECONDS
        while time.monotonic() < deadline and (
            sum(len(c.dropped) for c in bare_callers) < DROPS_TO_SEE or not repeats(caplog)
        ):
            await asyncio.wait(running, timeout=0.2)
        stop.set()
        await asyncio.gather(*running)

        bare_dropped = sum(len(c.dropped) for c in bare_callers)
        assert bare_dropped >= DROPS_TO_SEE, f"the connection dropped only {bare_dropped} bare calls"
        # What reaches our callers may only be the server's own answers (under rotations this
        # fast: a full query buffer, a workflow task being retried), which are not repeated.
        assert [e for c in our_callers for e in c.dropped] == []
        assert repeats(caplog), "the project's client was never dropped: nothing was tested"
        assert sum(c.updates for c in our_callers) > 0
        for caller in our_callers:  # every update applied once, though some were sent again
            # (asked until the probe's task has recovered, if a rotation left it being retried)
            applied = await eventually(functools.partial(caller.handle.query, Probe.count), lambda _: True)
            # each success applied, and no update twice: a call that ended in the server's own
            # error (not a drop) may or may not have been applied, once at most
            assert caller.updates <= applied <= caller.updates + len(caller.other)


def repeats(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The calls the project's client made again, as it logged them."""
    return [r.getMessage() for r in caplog.records if "making it again" in r.getMessage()]


async def test_an_update_past_its_own_deadline_is_not_made_again(
    client: Client, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK core reports a call's own ``rpc_timeout`` as ``CANCELLED`` "Timeout expired", which
    read as a dropped connection was made again three times: an intake update to an agent that
    could not answer took four times its timeout before its sender knew. Against the session's
    server (no rotation), through the project's interceptor: one attempt, and the timeout."""
    handle = await client.start_workflow(Probe.run, id=f"deadline-{uuid.uuid4()}", task_queue=task_queue)
    caplog.set_level(logging.INFO, logger="aiops.dropped_calls")
    try:  # no worker polls task_queue: the update is admitted and waits past its deadline
        with pytest.raises(WorkflowUpdateRPCTimeoutOrCancelledError) as timed_out:
            await handle.execute_update(Probe.slow, rpc_timeout=timedelta(seconds=1))
        cause = timed_out.value.__cause__
        # The call's own deadline, as the SDK core reports it (CANCELLED "Timeout expired") or, when
        # the server's wait ends first, as the server does (DEADLINE_EXCEEDED): neither is a drop.
        # Once in a suite run the server's came first.
        assert isinstance(cause, RPCError), cause
        assert (cause.status, cause.message) == (RPCStatusCode.CANCELLED, CALL_TIMED_OUT) or (
            cause.status == RPCStatusCode.DEADLINE_EXCEEDED
        ), cause
        assert not [r for r in caplog.records if "dropped by the connection" in r.getMessage()]
    finally:
        await handle.terminate("test done")
