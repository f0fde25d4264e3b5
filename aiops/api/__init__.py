"""The REST API under ``/v1`` (docs/api.md), mounted in the gateway's process.

* ``auth``: bearer tokens (an identity provider's JWT, or a personal API token) → a person and roles;
* ``models``: the bodies the contracts do not already name;
* ``app``: the FastAPI application, its error answers and its body limit;
* ``routes``: the endpoints, each one call on ``aiops.client.AiopsClient``.
"""
