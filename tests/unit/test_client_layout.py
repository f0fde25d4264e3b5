"""The client's layout holds: one facade of typed sub-clients, and only two of them read PostgreSQL.

The split of the client by subject is only worth keeping if it stays split: these tests fail when a
sub-client starts reading the database, or when the facade grows behaviour of its own.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import aiops.client as client_package
from aiops.client import AiopsClient
from aiops.client.agents import AgentsClient
from aiops.client.approvals import ApprovalsClient
from aiops.client.audit import AuditClient
from aiops.client.config import ConfigClient
from aiops.client.events import EventsClient
from aiops.contracts.errors import AiopsError

PACKAGE = Path(client_package.__file__).parent
DATABASE_MODULES = ("activities.database.audit_log", "activities.database.config_store")


def touches(path: Path, attribute: str) -> bool:
    """Whether a module reads ``attribute`` of something (or imports a database reader)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in DATABASE_MODULES:
            return True
        if isinstance(node, ast.Attribute) and node.attr == attribute:
            return True
    return False


def test_only_the_config_and_audit_sub_clients_read_the_database() -> None:
    readers = {p.stem for p in PACKAGE.glob("*.py") if touches(p, "database")}
    assert readers == {"config", "audit"}
    # The raw pool: held by the connection, closed by the facade, used by nobody else.
    holders = {p.stem for p in PACKAGE.glob("*.py") if touches(p, "pool")}
    assert holders <= {"config", "audit", "common", "facade"}


def test_the_facade_is_the_sub_clients_and_nothing_else() -> None:
    facade = AiopsClient(client=None, task_queue="q", actor="bob")  # type: ignore[arg-type]
    subjects = {
        "agents": AgentsClient,
        "events": EventsClient,
        "approvals": ApprovalsClient,
        "config": ConfigClient,
        "audit": AuditClient,
    }
    for name, kind in subjects.items():
        sub = getattr(facade, name)
        assert isinstance(sub, kind), name
        assert sub._conn is facade.connection, f"{name} has a connection of its own"
    own = {
        name
        for name, member in vars(AiopsClient).items()
        if inspect.iscoroutinefunction(member) or (inspect.isfunction(member) and not name.startswith("_"))
    }
    assert own == {"close"}, f"the facade should delegate nothing: {sorted(own)}"


def test_every_client_error_is_an_aiops_error() -> None:
    raised = [
        member
        for name, member in vars(client_package).items()
        if inspect.isclass(member) and issubclass(member, Exception) and name in client_package.__all__
    ]
    assert len(raised) == 11  # every class in aiops.client.errors.__all__
    assert all(issubclass(kind, AiopsError) for kind in raised)
