"""What every message a person sends to a workflow carries: who sends it, and room for proof.

Pause, resume, stop, reset-circuit-breaker, reconfigure, approve, reject,
hold, release and abort all extend ``OperatorMessage``: an ``actor`` (the name
the sender claims) and a ``credential`` (a signed token; verified in the
workflow once trusted approvals exist, ignored before). Every field a person
can type is bounded, so no payload can grow a workflow's state past the
server's limits.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_NAME = 200  # an actor, an approver, an author
MAX_TEXT = 2000  # a comment, a reason
MAX_CREDENTIAL = 8192  # a signed token with a few claims


class OperatorMessage(BaseModel):
    """Unknown fields are ignored (a future sender may add some); the known ones are bounded."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    actor: str = Field(default="", max_length=MAX_NAME)
    credential: str | None = Field(default=None, max_length=MAX_CREDENTIAL)
