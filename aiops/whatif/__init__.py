"""What-if: a candidate config judged against what its agent really received and proposed
(docs/what-if.md). Read-only, streaming, reusing the policy and the agent's own state logic.

The package exposes the entry point and the report with the names its readers match on; the
report's other parts (``ChangedDecision``, ``EventChanges``, ``VerdictCount``) are in
``aiops.whatif.models``."""

from aiops.whatif.models import DecisionView, Verdict, WhatIfReport
from aiops.whatif.replay import what_if

__all__ = ["DecisionView", "Verdict", "WhatIfReport", "what_if"]
