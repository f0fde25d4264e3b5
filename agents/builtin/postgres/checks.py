"""The five conditions the postgres agent looks for, and what each one means by default."""

from __future__ import annotations

from typing import Literal, TypeGuard

from aiops.contracts.models import EventType, RiskLevel, Severity

Check = Literal["long_queries", "idle_in_transaction", "lock_chains", "bloat", "connections"]
LONG_QUERIES: Check = "long_queries"
IDLE_IN_TRANSACTION: Check = "idle_in_transaction"
LOCK_CHAINS: Check = "lock_chains"
BLOAT: Check = "bloat"
CONNECTIONS: Check = "connections"
CHECKS: tuple[Check, ...] = (LONG_QUERIES, IDLE_IN_TRANSACTION, LOCK_CHAINS, BLOAT, CONNECTIONS)

DEFAULT_RISK = {
    LONG_QUERIES: RiskLevel.MEDIUM,  # the statement is lost, the session and its transaction survive
    IDLE_IN_TRANSACTION: RiskLevel.MEDIUM,  # the transaction was doing nothing; its work is rolled back
    LOCK_CHAINS: RiskLevel.HIGH,  # kills a session that may be doing real work
    BLOAT: RiskLevel.LOW,  # plain VACUUM takes no exclusive lock
    CONNECTIONS: RiskLevel.HIGH,  # disconnects clients (idle ones)
}
SEVERITY = {
    LONG_QUERIES: Severity.MEDIUM,
    IDLE_IN_TRANSACTION: Severity.MEDIUM,
    LOCK_CHAINS: Severity.HIGH,
    BLOAT: Severity.LOW,
    CONNECTIONS: Severity.HIGH,
}
EVENT_TYPE = {
    LONG_QUERIES: EventType.ALERT,
    IDLE_IN_TRANSACTION: EventType.ALERT,
    LOCK_CHAINS: EventType.ALERT,
    BLOAT: EventType.METRIC_THRESHOLD,
    CONNECTIONS: EventType.METRIC_THRESHOLD,
}
IMPACT = {
    LONG_QUERIES: "the running statement is cancelled; the client gets an error",
    IDLE_IN_TRANSACTION: "the session is closed and its open transaction rolled back",
    LOCK_CHAINS: "the blocking session is closed and its transaction rolled back",
    BLOAT: "VACUUM reads the table and frees dead tuples; no exclusive lock",
    CONNECTIONS: "idle client connections are closed",
}
DEFAULT_ALERT_NAMES: dict[str, Check] = {
    "PostgresLongRunningQuery": LONG_QUERIES,
    "PostgresIdleInTransaction": IDLE_IN_TRANSACTION,
    "PostgresLockWaits": LOCK_CHAINS,
    "PostgresTableBloat": BLOAT,
    "PostgresConnectionsSaturated": CONNECTIONS,
}


def is_check(value: object) -> TypeGuard[Check]:
    return isinstance(value, str) and value in CHECKS
