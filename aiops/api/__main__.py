"""``python -m aiops.api``: print the OpenAPI document (what docs/api/openapi.json holds).

PYTHONPATH=. python -m aiops.api > docs/api/openapi.json
"""

from __future__ import annotations

import json
from typing import Any

from aiops.api.app import build


def document() -> dict[str, Any]:
    """The document the API serves at /v1/openapi.json (it needs no gateway to be built)."""
    return build(None).openapi()  # type: ignore[arg-type]


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
