"""What-if: a candidate config judged against what its agent really received and proposed
(docs/what-if.md). Read-only, streaming, reusing the policy and the agent's own state logic."""

from aiops.whatif.models import (
    ChangedDecision,
    DecisionView,
    EventChanges,
    Verdict,
    VerdictCount,
    WhatIfReport,
)
from aiops.whatif.replay import what_if

__all__ = [
    "ChangedDecision",
    "DecisionView",
    "EventChanges",
    "Verdict",
    "VerdictCount",
    "WhatIfReport",
    "what_if",
]
