"""What every chapter of the demo shares: this run's id, the data folder, alice, and printing.

Each run of the demo has its own id (``RUN``): it is in the Terraform modules' values, the disk's
files and the events, so a second run tells a fresh story beside the first instead of being
deduplicated as a repeat of it, and nothing the user made is deleted.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from agents import AgentConfig
from aiops import keys
from aiops.client import AiopsClient
from aiops.contracts.action import ActionRecord
from aiops.contracts.config import ApprovalSettings, Approver

PORT = int(os.environ.get("AIOPS_TEMPORAL_PORT", "7233"))
UI = f"http://127.0.0.1:{os.environ.get('AIOPS_TEMPORAL_UI_PORT', PORT + 1000)}"
TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
DATA = Path(os.environ.get("AIOPS_DEV_DATA", "temporal-dev/.data")).resolve()
RUN = f"{datetime.now(UTC):%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
# alice holds the roles every command of the README and docs/cli.md needs on the demo's agents:
# sre (approve, stop, resume) and admin (config apply and rollback).
ALICE_ROLES = ["sre", "admin"]


def _bold(text: str) -> str:
    """Bold on a terminal; plain text when redirected to a file or pipe (or NO_COLOR is set)."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[1m{text}\033[0m"
    return text


def say(text: str) -> None:
    print(f"\n{_bold(f'▸ {text}')}", flush=True)


def show(record: ActionRecord) -> None:
    print(f"  action   {record.action.id}")
    print(f"  risk     {record.action.risk_level.value}   status {record.status.value}")
    if record.decision:
        print(f"  policy   {record.decision.outcome.value}: {record.decision.reason}")
    if record.plan:
        print(f"  plan     {record.plan.summary}")
        for change in record.plan.changes:
            print(f"             {change}")
    if record.result:
        print(f"  result   {record.result.message or record.result.error}")


def aiops_cli(*args: str, env: dict[str, str] | None = None) -> None:
    """Run the ``aiops`` CLI as an operator would, showing the command and its output."""
    print(f"\n  $ aiops {shlex.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "aiops.cli", *args], check=True, env=env or dict(os.environ))


def aiops_cli_refused(*args: str) -> None:
    """Run the ``aiops`` CLI for a command that must be refused (exit status 1), without any key
    file (``AIOPS_KEY_FILE`` points at none), so the request goes unsigned whatever the shell has."""
    print(f"\n  $ aiops {shlex.join(args)}", flush=True)
    env = {**os.environ, keys.KEY_FILE_ENV: str(DATA / "no-key-file")}
    done = subprocess.run([sys.executable, "-m", "aiops.cli", *args], env=env)
    if done.returncode != 1:
        raise SystemExit(f"expected a refusal (exit 1), got exit {done.returncode}")


def alice_key() -> Path:
    """alice's own key pair, as `aiops keys generate` makes it (kept in the demo's data folder)."""
    path = DATA / "alice.key.json"
    if not path.exists():
        aiops_cli("keys", "generate", "alice", "--out", str(path))
    return path


def approvers() -> ApprovalSettings:
    """alice, whose decisions and commands are verified with her public key (no dev mode)."""
    public = keys.load(alice_key()).public_key()
    return ApprovalSettings(approvers=[Approver(name="alice", roles=ALICE_ROLES, public_key=public)])


def save_config(config: AgentConfig) -> Path:
    """The config as a file beside the data, for `aiops config apply` after the demo."""
    path = DATA / f"{config.id}.json"
    path.write_text(config.model_dump_json(indent=2, exclude_defaults=True) + "\n")
    return path


async def clean_slate(aiops: AiopsClient, agent_ids: list[str]) -> None:
    """Stop the demo agents an earlier run left running (signed by alice, without draining: their
    actions still waiting for approval are aborted), so this run starts them afresh."""
    left = [agent_id for agent_id in agent_ids if await aiops.agents.is_running(agent_id)]
    if not left:
        return
    say(f"A fresh story: stopping what an earlier demo run left running ({', '.join(left)})")
    key = keys.load(alice_key())
    for agent_id in left:
        try:
            await aiops.agents.stop(agent_id, reason=f"demo run {RUN} starts afresh", drain=False, key=key)
            print(f"  {agent_id}: stopped by alice (signed); its pending actions are aborted")
        except Exception as err:  # e.g. an agent whose config does not know this alice's key
            await aiops.agents.handle(agent_id).terminate(reason=f"demo run {RUN} starts afresh")
            print(f"  {agent_id}: the signed stop was refused ({err}); terminated instead")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    for agent_id in left:
        while await aiops.agents.is_running(agent_id):
            if loop.time() > deadline:
                await aiops.agents.handle(agent_id).terminate(reason="did not stop within a minute")
                print(f"  {agent_id}: did not stop within a minute; terminated")
                break
            await asyncio.sleep(0.2)
