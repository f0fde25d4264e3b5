"""DetectorWorkflow: one run of an agent's detector, delivered to the agent as events.

The agent's detector schedule (``activities/detector_activities.py``) starts it
every interval. It runs the agent type's ``detect`` hook in an activity and
signals what was found to the agent workflow, which deduplicates by event id
and decides like for any other event. A detector that finds nothing costs one
activity; one that fails is retried a few times and then recorded as this run's
failure, and the next tick tries again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.agent_activities import AgentActivities
    from aiops.contracts.activities import NON_RETRYABLE_AGENT_ERRORS, DetectionReport, DetectorInput
    from aiops.contracts.agent import DETECTOR_WORKFLOW_TYPE, AgentMessages, hooks_task_queue

# What one tick may deliver: well under a signal's payload limit, whatever the detector returns.
MAX_EVENTS_PER_TICK = 500


@workflow.defn(name=DETECTOR_WORKFLOW_TYPE)
class DetectorWorkflow:
    @workflow.run
    async def run(self, input: DetectorInput) -> DetectionReport:
        queue = hooks_task_queue(workflow.info().task_queue, input.config.type)  # where the type is
        found = await workflow.execute_activity_method(
            AgentActivities.detect,
            input.config,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=input.config.runtime.decision_timeout_seconds),
            retry_policy=RetryPolicy(
                maximum_attempts=3,
                initial_interval=timedelta(seconds=1),
                non_retryable_error_types=NON_RETRYABLE_AGENT_ERRORS,
            ),
        )
        events = found[:MAX_EVENTS_PER_TICK]
        if len(found) > len(events):
            workflow.logger.warning(
                "detector of %s found %d events; delivering the first %d",
                input.config.id,
                len(found),
                len(events),
            )
        if events:
            await workflow.get_external_workflow_handle(input.agent_workflow_id).signal(
                AgentMessages.submit_events, [e.model_dump(mode="json") for e in events]
            )
        return DetectionReport(found=len(found), delivered_ids=[e.id for e in events])
