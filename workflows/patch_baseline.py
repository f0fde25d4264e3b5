"""Which of its workflow's changes a run has, at the cost of one patch marker for new runs.

Every change to a running workflow is guarded with ``workflow.patched``. In a new run each call
records a marker and upserts the ``TemporalChangeVersion`` search attribute: two history events,
and two state machines the worker keeps for the run's whole life. Nine patches made every agent
start and every action carry eighteen such events, about 50 KB of worker memory per cached agent
and a slower first workflow task for each action.

So a workflow names a *baseline*: one patch that stands for every change it ``covers``. A run
started since the baseline records that one marker and has every covered change. A run started
before it (its history has no baseline marker) asks each covered change's own patch, at the same
point as it always did, so it replays exactly as it was recorded.

A change made after a baseline gets a patch of its own, asked with ``workflow.patched`` as
usual (``has`` refuses a patch the baseline does not cover: it would wrongly answer yes for runs
started between the baseline and the change). A later baseline may cover it in turn.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import workflow


class PatchBaseline:
    def __init__(self, baseline: str, covers: Iterable[str]) -> None:
        """Asked in the workflow's first activation (``@workflow.init`` or the start of ``run``):
        a run's first activation is always replayed from its history, so a run started before
        the baseline learns it from there, never from the code running now."""
        self.covers = frozenset(covers)
        self.since = workflow.patched(baseline)

    def has(self, patch_id: str) -> bool:
        """Whether this run has the change guarded by ``patch_id`` (one the baseline covers)."""
        if patch_id not in self.covers:
            raise ValueError(f"patch {patch_id!r} is not covered by this baseline; ask workflow.patched")
        return self.since or workflow.patched(patch_id)
