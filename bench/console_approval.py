"""Approval in the console (a passkey touch) → execute started, beside the CLI path, same run.

    PYTHONPATH=. python bench/console_approval.py [--samples 20]

The stack: a dev server and the bench worker (``bench_stack``), the gateway serving the API and
the console in this process, the tests' local OIDC provider, headless Chromium with the DevTools
virtual authenticator. Alice signs in and enrolls a passkey once; the agent's config registers it
(and her Ed25519 key). Then, interleaved, for each sample an action waits for approval and:

* **console**: the action's page is open (the person reads it); the clock starts at the click
  on *Approve with passkey* and stops when the execute hook begins: the challenge from the API
  (claims from the action's pinned config), the passkey's assertion, the decision relayed and
  verified by the workflow, the execute activity dispatched;
* **one touch**: signed out (no session cookie), the action's page as a notice's link opens it,
  alice's name typed; the clock starts at the click and stops when the execute hook begins: the
  console's claims (from the pinned config), the one assertion, the console verifying it (which
  signs her in), the same assertion relayed and verified by the workflow, execute dispatched;
* **cli**: what ``aiops approvals approve ACTION --key FILE`` does: sign a token, send the
  ``decide`` update; the clock starts before the signing.

Prints p50 and p90 of each path and the p50 ratio. Needs Chromium (tests/support/browser.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import async_playwright

from aiops.client import AiopsClient
from aiops.contracts.config import ApprovalSettings, Approver
from aiops.keys import KeyFile
from bench.approval_latency import pending
from bench.stack import bench_stack
from tests.helpers import agent_config
from tests.support.browser import Evidence, ensure_chromium, launch_chromium
from tests.support.console_stack import console_stack
from tests.test_console_browser import enroll, sign_in, virtual_authenticator
from workflows.approval_token import generate_private_key, private_key_pem

ALICE = KeyFile(approver="alice", private_key=private_key_pem(generate_private_key()).decode())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def executed_at(aiops: AiopsClient, action_id: str) -> float:
    record = await aiops.approvals.wait_for_action(action_id)
    assert record.result is not None and record.result.data, record.status
    return float(record.result.data["started_at"])


async def console_sample(aiops: AiopsClient, page: Any, url: str, agent_id: str, config: Any) -> float:
    action_id = await pending(aiops, agent_id, config)
    await page.goto(f"{url}/console/actions/{action_id}")
    await page.wait_for_selector("button.passkey.approve")
    await asyncio.sleep(0.2)  # the person reads the page
    async with page.expect_navigation(timeout=30_000):  # the page reloads itself once decided
        sent = time.time()
        await page.click("button.passkey.approve")
        started = await executed_at(aiops, action_id)
    return started - sent


async def one_touch_sample(aiops: AiopsClient, page: Any, url: str, agent_id: str, config: Any) -> float:
    action_id = await pending(aiops, agent_id, config)
    await page.context.clear_cookies()  # signed out, as the approver who follows a notice's link
    await page.goto(f"{url}/console/actions/{action_id}")
    await page.fill("#decide-name", "alice")
    await asyncio.sleep(0.2)  # the person reads the notice
    async with page.expect_navigation(timeout=30_000):  # to the action's page, signed in
        sent = time.time()
        await page.click("button.passkey.approve")
        started = await executed_at(aiops, action_id)
    return started - sent


async def cli_sample(aiops: AiopsClient, agent_id: str, config: Any) -> float:
    action_id = await pending(aiops, agent_id, config)
    await asyncio.sleep(0.2)
    sent = time.time()
    await aiops.approvals.approve(action_id, key=ALICE)
    return await executed_at(aiops, action_id) - sent


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20, help="samples per path")
    args = parser.parse_args()
    chromium = ensure_chromium()
    async with bench_stack(in_memory=True) as stack:
        aiops = AiopsClient(stack.env.client, stack.task_queue)
        with tempfile.TemporaryDirectory() as tmp:
            async with console_stack(aiops, Path(tmp)) as console, async_playwright() as playwright:
                browser = await launch_chromium(playwright, chromium.path, Path(tmp) / "profile")
                page = await browser.new_page()
                await virtual_authenticator(page)
                evidence = Evidence(page, Path(tmp) / "screens")
                await sign_in(evidence, console, "alice")
                passkey = await enroll(evidence, console, "alice")
                alice = Approver(
                    name="alice", roles=["sre"], public_key=ALICE.public_key(), passkeys=[passkey]
                )
                approval = ApprovalSettings(
                    approvers=[alice], passkey_rp_id="localhost", passkey_origins=[console.url]
                )
                config = agent_config("bench_approval", approval=approval)
                await console_sample(aiops, page, console.url, config.id, config)  # warm-up
                await cli_sample(aiops, config.id, config)
                await one_touch_sample(aiops, page, console.url, config.id, config)  # signs her in
                results: dict[str, list[float]] = {"console": [], "one touch": [], "cli": []}
                for _ in range(args.samples):
                    results["console"].append(
                        await console_sample(aiops, page, console.url, config.id, config)
                    )
                    results["cli"].append(await cli_sample(aiops, config.id, config))
                    results["one touch"].append(
                        await one_touch_sample(aiops, page, console.url, config.id, config)
                    )
                for name, values in results.items():
                    print(
                        f"{name:<10} p50 {statistics.median(values) * 1000:7.1f} ms   "
                        f"p90 {percentile(values, 0.9) * 1000:7.1f} ms   ({len(values)} samples)"
                    )
                ratio = statistics.median(results["console"]) / statistics.median(results["cli"])
                print(f"console/cli p50 ratio {ratio:.2f}")
                await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
