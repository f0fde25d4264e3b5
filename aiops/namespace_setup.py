"""Prepare a namespace for the framework: register its search attributes.

The dev server gets them at start (``temporal-dev/``); any other server, the
time-skipping test server included, gets them here. Safe to run repeatedly.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from aiops.contracts.search_attributes import ALL


async def missing_search_attributes(client: Client) -> list[str]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [key.name for key in ALL if key.name not in response.custom_attributes]


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register whichever of the framework's search attributes are missing; return their names."""
    try:
        missing = await missing_search_attributes(client)
    except RPCError as err:  # the time-skipping test server cannot list, only add
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = [key.name for key in ALL]
    if missing:
        # The SDK's enum has the proto's numbers (Keyword 2, Int 3, Datetime 6).
        types = {key.name: IndexedValueType.ValueType(key.indexed_value_type.value) for key in ALL}
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={name: types[name] for name in missing},
            )
        )
    return missing
