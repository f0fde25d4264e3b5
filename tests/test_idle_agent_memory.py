"""What keeps an idle agent small (docs/scale.md, "What an idle agent keeps"), checked by behaviour.

Memory itself is measured in bench/ (``bench/idle_memory.py``); these check that each economy
still holds and changes nothing an agent does: the start input read from a raw payload and
released, and the start call sent without its defaults and read back as the same call.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue

from aiops.contracts.activities import ConfigProposal, StartAgentCall
from aiops.contracts.agent import AgentWorkflowInput
from tests.helpers import agent_config
from workflows.agent.lifecycle import compact, parse_input


def raw_json(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def test_the_start_input_is_read_from_its_raw_payload_which_is_then_let_go() -> None:
    sent = AgentWorkflowInput(config=agent_config("example"), started_by="alice")
    raw = raw_json(sent.model_dump_json().encode())
    taken, problem = parse_input(raw)
    assert problem is None
    assert taken == sent
    assert raw.payload.data == b""  # the activation's payload is no longer held


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b'{"config": {"id": "x", "name": "x", "type": "t", "colour": "blue"}}', "config.colour"),
        (b"[1, 2]", "AgentWorkflowInput"),
    ],
)
def test_a_bad_start_input_is_a_placeholder_and_its_problems(data: bytes, named: str) -> None:
    taken, problem = parse_input(raw_json(data))
    assert problem is not None and named.lower() in problem.lower()
    assert taken.config.id == "invalid-input"


async def test_a_start_input_that_is_no_json_fails_the_agent_saying_so(
    client, worker, task_queue: str
) -> None:
    """Read by the SDK as ``Any``, such a payload failed every workflow task for ever."""
    handle = await client.start_workflow(
        "AgentWorkflow",
        raw_json(b'{"config": {"id": "x"'),
        id=f"agent-nojson-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    message = str(failed.value.cause)
    assert "invalid agent start input: undecodable payload" in message, message


def test_plain_data_is_still_taken_as_it_is() -> None:
    sent = AgentWorkflowInput(config=agent_config("example"))
    taken, problem = parse_input(json.loads(sent.model_dump_json()))
    assert problem is None and taken == sent


def test_the_start_call_goes_without_its_defaults_and_reads_back_the_same() -> None:
    config = agent_config("example", settings={"endpoint": "http://x"})
    call = StartAgentCall(config=config, proposal=ConfigProposal(config=config, author="a", comment="c"))
    sent = compact(call)
    assert isinstance(sent, RawValue)
    assert len(sent.payload.data) < len(call.model_dump_json()) / 4
    assert StartAgentCall.model_validate_json(sent.payload.data) == call
