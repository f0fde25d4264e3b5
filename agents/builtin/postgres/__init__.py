"""The ``postgres`` agent: finds sessions and tables that hurt a PostgreSQL server and fixes them.

It watches, over asyncpg, one server (``settings.dsn_secret``, a secret reference to a
``postgresql://`` URL):

- long-running queries (``active`` longer than ``long_query_seconds``): ``pg_cancel_backend``
  (or ``pg_terminate_backend`` with ``long_query_action: terminate``);
- sessions idle in a transaction (longer than ``idle_in_transaction_seconds``):
  ``pg_terminate_backend``;
- blocking lock chains (someone waits on a lock longer than ``lock_wait_seconds``):
  ``pg_terminate_backend`` of the root blocker;
- table bloat (``n_dead_tup`` over ``min_dead_tuples`` and ``dead_tuple_ratio``): ``VACUUM (ANALYZE)``;
- connection saturation (``connection_saturation_ratio`` of ``max_connections``):
  ``pg_terminate_backend`` of the sessions idle longer than ``idle_session_seconds``.

Every target is pinned to one *occurrence*: a session is named by its pid, its
``backend_start`` and the start of what it is doing (query, transaction or idle period),
all to the microsecond; a table by its oid and its vacuum count. Execute only signals a
session whose occurrence still matches, so a statement can never hit a different query that
reused the pid, and a table vacuumed since is not vacuumed again. The targets come from the
approved plan, never from the event alone. The action ledger (``state_dir``) records each target
done, so a retried execute resumes where a crashed attempt stopped and a finished action answers
with its first result.

Modules: ``checks`` (the conditions and their defaults), ``settings``, ``queries`` (read-only
looks at the server), ``events`` (the detector), ``plan`` (pinned statements), ``execute``
(acting once, and verifying) and ``agent`` (the hooks).
"""

from agents.builtin.postgres.agent import PostgresAgent
from agents.builtin.postgres.checks import CHECKS
from agents.builtin.postgres.settings import PostgresSettings

__all__ = ["CHECKS", "PostgresAgent", "PostgresSettings"]
