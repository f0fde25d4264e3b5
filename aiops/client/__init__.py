"""The typed client over Temporal for operators, ingress, the demo and tests.

Nobody else spells workflow ids, signal names or search-attribute queries; errors say what to do
next. ``AiopsClient`` is the facade; each subject is a sub-client of it:

* ``agents`` (``agents.py``): start, status, list, and commands (pause, resume, stop, reset the
  circuit breaker) with their signed tokens;
* ``events`` (``events.py``): deliver events, with backoff, batching and per-event answers;
* ``approvals`` (``approvals.py``): the inbox, an action's record, approve / reject, tokens;
* ``config`` (``config.py``): apply, roll back, and the stored versions and their diffs;
* ``audit`` (``audit.py``): the trail and its hash-chain check.

``common.py`` holds what they share; ``errors.py`` what they raise. Only ``config`` and ``audit``
read PostgreSQL.
"""

from aiops.client import errors
from aiops.client.errors import *  # noqa: F403 (what the client raises is public: errors.__all__)
from aiops.client.facade import AiopsClient

__all__ = ["AiopsClient"]
__all__ += errors.__all__
