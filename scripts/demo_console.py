"""The demo's gateway config: the REST API and the approver's console, ready to serve after a run.

Every run writes ``gateway.yaml`` in the data folder (idempotent: the same content again leaves
the file as it is; a file that differs, e.g. edited by hand, is replaced with its ``version``
raised, so a gateway already serving it reloads instead of refusing). It holds one source on
loopback without auth, a route to each terraform agent with its config file (the gateway starts
an agent that is not running from it), and ``api:`` with the console and no identity provider:
people sign in with a personal API token (``aiops api-token create``) or a passkey.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from demo_common import DATA, say

GATEWAY_PORT = int(os.environ.get("AIOPS_GATEWAY_PORT", "9470"))
URL = f"http://127.0.0.1:{GATEWAY_PORT}"

CONFIG = """\
# The demo's gateway config, written by scripts/demo.py on every run (docs/gateway.md, docs/api.md,
# docs/console.md). Serve it: aiops gateway --routes {path}
version: {version}
sources:
  demo:
    auth: {{type: none}}       # the gateway listens on 127.0.0.1 only
routes:
  - name: prod
    matchers: ['env="prod"']
    agents: [demo-terraform]
    agent_configs: {{demo-terraform: demo-terraform.json}}
  - name: staging
    matchers: ['env="staging"']
    agents: [demo-staging]
    agent_configs: {{demo-staging: demo-staging.json}}
api:
  audience: aiops-api
  console:                     # no identity provider: sign in with an API token or a passkey
    public_url: {url}
"""
VERSION = re.compile(r"(?m)^version: (\d+)$")


def shown(path: Path) -> str:
    """``path`` as the user types it from the project's folder (relative when it is inside)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_gateway_config() -> Path:
    """``gateway.yaml`` in the data folder, the same on every run."""
    path = DATA / "gateway.yaml"
    wanted = CONFIG.format(path=shown(path), version="{version}", url=URL)
    old = path.read_text() if path.exists() else ""
    found = VERSION.search(old)
    if found and VERSION.sub("version: {version}", old, count=1) == wanted:
        return path  # already this content: a running gateway keeps its version
    version = int(found.group(1)) + 1 if found else 1
    path.write_text(wanted.replace("{version}", str(version), 1))
    return path


def console_commands(path: Path) -> None:
    """The commands that serve the API and the console from the config just written."""
    say(f"The REST API and the approver's console: a gateway config is ready in {shown(path)}")
    print('  In your shell, from this folder (source .venv/bin/activate; eval "$(aiops dev up)"):')
    log, pid = shown(DATA / "gateway.log"), shown(DATA / "gateway.pid")  # stop.sh stops it by its pid
    print(f"    aiops gateway --routes {shown(path)} 2>{log} & echo $! >{pid}")
    print("    TOKEN=$(aiops api-token create alice --role sre --role approver -q)  # printed once")
    pretty = "python -m json.tool | head -n 20"
    print(f'    curl -s -H "Authorization: Bearer $TOKEN" {URL}/v1/actions | {pretty}')
    print(f"  then open {URL}/console/ and sign in with the token (echo $TOKEN)")
