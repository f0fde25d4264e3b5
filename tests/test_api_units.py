"""The REST API's pure parts, without servers: roles, JWT checks, the callers' rate buckets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aiops.api.app import Buckets
from aiops.api.auth import Principal, Unauthenticated, bearer, has_role, verify_jwt
from aiops.gateway.config import RateLimit
from tests.support import identity_provider as idp
from tests.support.api_stack import AUDIENCE, login_jwt


@pytest.mark.parametrize(
    ("roles", "needed", "allowed"),
    [
        (["viewer"], "viewer", True),
        (["viewer"], "operator", False),
        (["operator"], "viewer", True),
        (["sre"], "operator", True),
        (["sre"], "admin", False),
        (["admin"], "sre", True),
        (["approver"], "viewer", False),
        (["approver"], "decide", True),
        (["viewer"], "decide", False),
        ([], "viewer", False),
        (["root"], "viewer", False),
    ],
)
def test_roles_are_a_ladder_and_deciding_takes_a_decide_role(
    roles: list[str], needed: str, allowed: bool
) -> None:
    who = Principal(name="p", roles=roles, via="token")
    assert has_role(who, needed, ["approver", "operator", "sre", "admin"]) is allowed


@pytest.mark.parametrize(
    ("header", "says"),
    [("", "missing Authorization"), ("Token abc", "must be 'Bearer"), ("Bearer ", "must be 'Bearer"),
     ("Bearer " + "x" * 20_000, "over 16384")],
)  # fmt: skip
def test_a_bearer_header_is_checked_before_anything_is_decoded(header: str, says: str) -> None:
    with pytest.raises(Unauthenticated, match=says):
        bearer(header)


def test_a_jwt_maps_its_groups_to_roles_and_ignores_unknown_groups() -> None:
    issuer = idp.trusted_issuer()  # sre-team -> sre, ops -> operator
    token = login_jwt("alice", ["sre-team", "ops", "nobody-knows", 7])  # type: ignore[list-item]
    who = verify_jwt(token, [issuer], AUDIENCE, datetime.now(UTC))
    assert (who.name, who.roles, who.via, who.issuer) == ("alice", ["operator", "sre"], "oidc", idp.ISSUER)


def test_a_jwt_without_exp_or_with_a_name_too_long_is_refused() -> None:
    issuer = idp.trusted_issuer()
    with pytest.raises(Unauthenticated, match="not acceptable"):
        verify_jwt(login_jwt("alice", [], exp=None), [issuer], AUDIENCE, datetime.now(UTC))
    with pytest.raises(Unauthenticated, match="not a name"):
        verify_jwt(login_jwt("a" * 201, []), [issuer], AUDIENCE, datetime.now(UTC))


def test_the_callers_buckets_are_bounded_and_drop_the_least_recently_used() -> None:
    limit = RateLimit(per_second=0.001, burst=1)
    buckets = Buckets(max_keys=2)
    assert buckets.take("a", limit) == 0
    assert buckets.take("a", limit) > 0  # a's burst is spent
    assert buckets.take("b", limit) == 0
    assert buckets.take("c", limit) == 0  # a, the least recently used, is dropped
    assert buckets.take("a", limit) == 0  # a fresh bucket: the bound costs precision, never memory
    assert buckets.take("c", limit) > 0
