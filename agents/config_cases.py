"""Running a config's cases (``AgentConfig.tests``) through the agent's own ``process_event``.

On a fresh instance built from the candidate config (never the running agent's: a case must
not disturb it), initialized and started like a worker's, stopped afterwards. Only the decision
hook runs: no action is started, planned or executed. Each case has the config's decision
timeout, and all of them together at most ``budget`` seconds (the caller's own deadline: the
validation activity's is 30 seconds); a case left when it is spent fails, saying so.
Judged by ``aiops.contracts.config_cases.judge_case``.
"""

from __future__ import annotations

import asyncio

from agents.registry import AgentFactory
from agents.secrets import resolve_secrets
from aiops.contracts.config import AgentConfig
from aiops.contracts.config_cases import CaseResult, judge_case


async def run_cases(factory: AgentFactory, config: AgentConfig, budget: float = 20.0) -> list[CaseResult]:
    """Every case's verdict, in order (empty when the config has none)."""
    if not config.tests:
        return []
    agent = factory.create(resolve_secrets(config))
    try:
        await agent.initialize()
        await agent.start()
    except Exception as err:  # the agent cannot even start with this config: every case fails
        reason = f"the agent did not start: {type(err).__name__}: {err}"
        return [judge_case(config, case, None, reason) for case in config.tests]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    results = []
    try:
        for case in config.tests:
            timeout = min(config.runtime.decision_timeout_seconds, deadline - loop.time())
            if timeout <= 0:
                results.append(judge_case(config, case, None, f"not run: the cases' {budget:g}s were spent"))
                continue
            try:
                action = await asyncio.wait_for(agent.process_event(case.event), timeout)
            except TimeoutError:
                results.append(judge_case(config, case, None, f"no decision within {timeout:.3g}s"))
            except Exception as err:  # the agent's failure on this case is the case's verdict
                results.append(judge_case(config, case, None, f"{type(err).__name__}: {err}"))
            else:
                results.append(judge_case(config, case, action))
    finally:
        try:
            await agent.stop()
        except Exception:  # a stop that fails does not change the verdicts
            agent.logger.warning("stopping the agent that ran the config cases failed", exc_info=True)
    return results
