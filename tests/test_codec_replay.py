"""Turning encryption on does not break the recorded clear-text histories: they replay through the
codec's data converter (a clear payload is read as it is), the same histories tests/test_replay.py
replays without it. A history sealed with a key the replayer lacks fails: the workflow task, with
an error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.worker import Replayer

from aiops.codec import EncryptionCodec, UnknownKeyError, codec_data_converter
from tests.test_replay import HISTORIES, load
from workflows.action.workflow import ActionWorkflow
from workflows.agent.detector import DetectorWorkflow
from workflows.agent.workflow import AgentWorkflow
from workflows.health_monitor import HealthMonitorWorkflow
from workflows.sandbox import workflow_runner

CODEC = EncryptionCodec({"a": bytes(32)}, "a")


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_clear_text_history_replays_with_encryption_on(path: Path) -> None:
    replayer = Replayer(
        workflows=[AgentWorkflow, ActionWorkflow, DetectorWorkflow, HealthMonitorWorkflow],
        data_converter=codec_data_converter(CODEC),
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(load(path))


async def test_a_history_sealed_with_a_missing_key_fails_naming_it() -> None:
    history = load(next(p for p in HISTORIES if p.stem == "g1_action_auto"))
    started = history.events[0].workflow_execution_started_event_attributes.input
    sealed = await EncryptionCodec({"gone": bytes(range(32))}, "gone").encode(list(started.payloads))
    del started.payloads[:]
    started.payloads.extend(sealed)
    assert all(isinstance(p, Payload) for p in started.payloads)
    replayer = Replayer(
        workflows=[ActionWorkflow],
        data_converter=codec_data_converter(CODEC),
        workflow_runner=workflow_runner(),
    )
    # The workflow task fails (a worker retries it until the key is listed: nothing is lost); its
    # failure names the error type, its message (naming the key) is itself sealed.
    with pytest.raises(RuntimeError, match=UnknownKeyError.__name__):
        await replayer.replay_workflow(history)
    with pytest.raises(UnknownKeyError, match="encrypted with key 'gone'"):
        await codec_data_converter(CODEC).decode(list(started.payloads))
