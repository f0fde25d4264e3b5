"""A fresh time-skipping test server, with the framework's search attributes registered.

One per test: an agent left running by an earlier test keeps tasks that a stopped worker may
have polled, and those lock time skipping in real time until they time out, which once stalled
a later test's sleep past its RPC deadline.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from aiops.codec import DATA_CONVERTER
from aiops.namespace_setup import ensure_search_attributes

TEST_SERVER = str(Path(sys.executable).parent / "temporal-test-server")


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEST_SERVER, data_converter=DATA_CONVERTER
    )
    await ensure_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()
