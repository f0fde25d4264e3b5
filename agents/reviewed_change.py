"""Apply exactly the reviewed dry run, once: the execute of agents whose plan is a dry run.

Some agents plan by asking their tool what it *would* change (``terraform plan``,
``ansible-playbook --check --diff``) and show the rendered answer to the approver. What the
approver signs is that text; its sha256 heads the plan's details (``# terraform plan sha256:<hex>
of <where>``), so execute can tell whether the world still matches the review. Execute then:

1. refuses (non-retryable) when no approved plan with that header reached it: never act blind;
2. answers a retry whose result the ledger holds with that result: the change never runs twice;
3. dry-runs again and refuses (non-retryable) unless the pending change renders to the approved
   digest. One exception: nothing is pending and an earlier attempt recorded its intent, which
   means that attempt applied the change and died before recording the result ("recovered");
4. records its intent, applies, and records a successful result (a failure is returned, not
   recorded, so a later attempt may try again once the dry run matches).

The agent supplies the dry run, the apply and the wording; this module owns the order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.ledger import ActionLedger
from aiops.contracts.errors import NonRetryableActionError
from aiops.contracts.models import ActionResult, AgentAction


def text_digest(text: str) -> str:
    """The sha256 of the rendered dry run: what the approver read, and what execute compares."""
    return hashlib.sha256(text.encode()).hexdigest()


def clip(text: str, limit: int, rest: str = "more characters") -> str:
    """``text`` cut to ``limit`` characters for the evidence; the digest still covers all of it."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} {rest})"


@dataclass(frozen=True)
class DryRun:
    """What the tool would change now: whether anything, the digest of its text, one line a change."""

    changed: bool
    digest: str
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reviewed:
    """How one agent type heads its evidence and words the outcomes execute can have."""

    label: str  # "terraform plan": the header reads "# terraform plan sha256:<hex> of <where>"
    digest_key: str  # the result's data key for the approved digest ("plan_sha256")
    blind: str  # the refusal when no approved plan reached execute
    moved_on: str  # the refusal when the dry run changed, with {approved} and {current}
    recovered: str  # an earlier attempt applied it, and nothing is left
    nothing: str  # the approved dry run itself changed nothing

    def header(self, digest: str, where: str) -> str:
        return f"# {self.label} sha256:{digest} of {where}"

    def approved_digest(self, action: AgentAction) -> str:
        """The digest the approver signed, from the approved plan's header; refused when absent."""
        approved = action.parameters.get("approved_plan")
        details = str(approved.get("details", "")) if isinstance(approved, dict) else ""
        match = re.search(rf"^# {re.escape(self.label)} sha256:([0-9a-f]{{64}})", details, re.MULTILINE)
        if match is None:
            raise NonRetryableActionError(self.blind)
        return match.group(1)


async def execute_reviewed(
    ledger: ActionLedger,
    action: AgentAction,
    reviewed: Reviewed,
    dry_run: Callable[[], Awaitable[DryRun]],
    apply: Callable[[str, DryRun], Awaitable[ActionResult]],
) -> ActionResult:
    """Run ``apply(approved_digest, current)`` at most once per action, and only while ``dry_run``
    still shows the approved change (see the module docstring for each outcome)."""
    approved = reviewed.approved_digest(action)
    async with ledger.entry(action) as entry:
        if (done := entry.done_result()) is not None:
            return done
        current = await dry_run()
        if current.digest != approved:
            if not current.changed and entry.intent is not None:
                return entry.finish(
                    ActionResult(
                        success=True,
                        message=reviewed.recovered,
                        data={reviewed.digest_key: approved, "recovered": True},
                    )
                )
            raise NonRetryableActionError(
                reviewed.moved_on.format(approved=approved[:12], current=current.digest[:12])
            )
        if not current.changed:
            return entry.finish(
                ActionResult(success=True, message=reviewed.nothing, data={reviewed.digest_key: approved})
            )
        entry.intend({reviewed.digest_key: approved})
        result = await apply(approved, current)
        return entry.finish(result) if result.success else result
