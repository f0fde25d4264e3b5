"""Record the llm diagnosis histories the replay test checks: ``python -m tests.record_llm_histories PREFIX``.

Like ``tests/record_histories.py`` (whose policy holds: the current generation, ``g1_``; a new
PREFIX only beside a patched change to ``agents/llm/workflow.py``; recorded files are never
overwritten), for the diagnosis
workflow, which runs on a worker of its own with Pydantic AI's plugin. Files go to
``tests/histories/llm/``; ``tests/test_replay.py`` replays every one of them. A file that exists
is kept (never overwritten), so a new case can join a prefix's set.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import tests.support.agents_for_tests  # noqa: F401
from activities.agent_activities import AgentActivities
from agents.llm.contracts import DiagnosisInput, diagnosis_task_queue, diagnosis_workflow_id
from agents.llm.settings import LlmSettings
from agents.llm.workflow import DiagnosisWorkflow
from agents.registry import load_agent_modules
from aiops.contracts.search_attributes import ALL
from aiops.runtime.worker_build import build_worker
from tests.conftest import TEMPORAL_BIN
from tests.helpers import event
from tests.support.llm_models import RESTART_ANSWER, register, scripted

HISTORIES = Path(__file__).parent / "histories" / "llm"
CATALOG: list[dict[str, Any]] = [
    {
        "name": "restart-web",
        "action_type": "restart_service",
        "targets": ["service/*"],
        "parameters": {"reason": {"type": "string", "enum": ["oom", "hang"]}},
        "risk_floor": "medium",
    }
]


async def diagnose(client: Client, task_queue: str, name: str, settings: dict[str, Any], prefix: str) -> None:
    path = HISTORIES / f"{prefix}{name}.json"
    if path.exists():  # recorded histories are never overwritten: keep it, record the others
        print(f"{path.name} exists: kept")
        return
    agent_id = f"llm-record-{name.replace('_', '-')}"
    e = event("alert", source="service/checkout", id=f"evt-{name}", summary="checkout is out of memory")
    request = DiagnosisInput(
        agent_id=agent_id,
        task_queue=task_queue,
        event=e,
        settings=LlmSettings.model_validate(settings),
        timeout_seconds=60,
    )
    workflow_id = diagnosis_workflow_id(agent_id, e.id)
    result = await client.execute_workflow(
        DiagnosisWorkflow.run, request, id=workflow_id, task_queue=diagnosis_task_queue(task_queue)
    )
    print(f"{name}: proposal {result.proposal is not None}, reason {result.no_proposal_reason}")
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.name} ({len(history.events)} events)")


def compact_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    answer = {
        "diagnosis": {"summary": "checkout is out of memory", "confidence_percent": 80},
        "proposal": {
            "catalog_entry": "restart-web",
            "target": "service/checkout",
            "risk_level": "high",
            "why": "a restart frees the memory",
            "parameters": {"reason": "oom"},
        },
    }
    return ModelResponse(parts=[TextPart(json.dumps(answer))])


async def main() -> int:
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    if not prefix:
        raise SystemExit("usage: python -m tests.record_llm_histories PREFIX (e.g. g1_)")
    load_agent_modules(["agents.llm"])
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN, data_converter=pydantic_data_converter, search_attributes=ALL
    )
    try:
        client = env.client
        task_queue = f"record-{uuid.uuid4().hex[:8]}"
        logs = Path(tempfile.mkdtemp(prefix="llm-record-"))
        (logs / "checkout.log").write_text("line\nkernel: Out of memory: Killed process 42 (checkout)\n")
        async with build_worker(client, task_queue, AgentActivities(client=client)):  # no database: logged
            tool_model = scripted([("read_file_tail", {"path": str(logs / "checkout.log")})], RESTART_ANSWER)
            await diagnose(
                client,
                task_queue,
                "diagnosis_tool_call_audited",
                {
                    "endpoint": register("record-tool", tool_model),
                    "catalog": CATALOG,
                    "tools": {"file_roots": [str(logs)]},
                },
                prefix,
            )
            compact = {**register("record-compact", FunctionModel(compact_answer)), "output_mode": "compact"}
            await diagnose(
                client, task_queue, "diagnosis_compact", {"endpoint": compact, "catalog": CATALOG}, prefix
            )
            ops = Path(__file__).parent / "support" / "mcp_ops_server.py"
            mcp = {
                "mcp_servers": [
                    {
                        "name": "ops",
                        "command": [sys.executable, str(ops), str(logs / "calls")],
                        "read_only_tools": ["service_status"],
                    }
                ],
                "agent_status": False,
            }
            mcp_model = scripted([("mcp_ops_service_status", {"service": "checkout"})], RESTART_ANSWER)
            await diagnose(
                client,
                task_queue,
                "diagnosis_mcp_tool",
                {"endpoint": register("record-mcp", mcp_model), "catalog": CATALOG, "tools": mcp},
                prefix,
            )
            garbage = register("record-garbage", scripted(answer="not json at all"))
            await diagnose(
                client, task_queue, "diagnosis_garbage", {"endpoint": garbage, "catalog": CATALOG}, prefix
            )
    finally:
        await env.shutdown()
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)  # the SDK's native threads can abort an interpreter's finalization
