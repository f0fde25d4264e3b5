"""Start, stop and inspect the local PostgreSQL server of the dev stack.

    python temporal-dev/postgres.py start|stop|status|url

The cluster lives in ``temporal-dev/.data/postgres`` (git-ignored; ``AIOPS_DEV_DATA``
moves it) and listens on 127.0.0.1 at ``AIOPS_PG_PORT`` (default 15432, not the
usual 5432, so a developer's own server is left alone). It uses the machine's
PostgreSQL binaries; when they are missing and we are root, Debian's
``postgresql`` package is installed. As root the server runs as the ``postgres``
user (PostgreSQL refuses to run as root). Starting twice says "already running".
Only the standard library is used here; the test suite imports it too.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("AIOPS_DEV_DATA", HERE / ".data")) / "postgres"
DEFAULT_PORT = int(os.environ.get("AIOPS_PG_PORT", "15432"))
DATABASE = "aiops"
SERVER_USER = "postgres"


def bin_dir() -> Path:
    """Where initdb, pg_ctl and postgres live; installs Debian's package if none is found."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("PostgreSQL is not installed; installing Debian's postgresql package ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        return bin_dir()
    sys.exit("PostgreSQL binaries (pg_ctl, initdb) are missing: install the postgresql package")


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *command]
    return command


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(as_server_user(command), capture_output=True, text=True, **kwargs)


def url(port: int = DEFAULT_PORT, database: str = DATABASE) -> str:
    return f"postgresql://{SERVER_USER}@127.0.0.1:{port}/{database}"


def is_running(data: Path = DEFAULT_DATA) -> bool:
    if not (data / "PG_VERSION").exists():
        return False
    return run([str(bin_dir() / "pg_ctl"), "status", "-D", str(data)]).returncode == 0


def start(data: Path = DEFAULT_DATA, port: int = DEFAULT_PORT, quiet: bool = False) -> str:
    """Start the server (initializing the cluster and the database the first time); return its URL."""
    binaries = bin_dir()
    say = (lambda *_: None) if quiet else print
    if is_running(data):
        say(f"PostgreSQL already running at 127.0.0.1:{port} ({data})")
        return url(port)
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, SERVER_USER, SERVER_USER)
        data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        say(f"initializing a PostgreSQL cluster in {data} ...")
        init = run(
            [str(binaries / "initdb"), "-D", str(data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8"]
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
    started = run(
        [
            str(binaries / "pg_ctl"),
            "start",
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-w",
            "-o",
            options,
        ],
        timeout=120,
    )
    if started.returncode != 0:
        log = (data / "server.log").read_text()[-2000:] if (data / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{log}")
    ensure_database(binaries, port)
    say(f"PostgreSQL ready at 127.0.0.1:{port}; DATABASE_URL={url(port)}")
    return url(port)


def ensure_database(binaries: Path, port: int) -> None:
    exists = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
    connect = ["-h", "127.0.0.1", "-p", str(port), "-U", SERVER_USER]
    for _ in range(50):
        check = run([str(binaries / "psql"), *connect, "-d", "postgres", "-tAc", exists])
        if check.returncode == 0:
            break
        time.sleep(0.1)
    if check.stdout.strip() != "1":
        create = run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SERVER_USER, DATABASE]
        )
        if create.returncode != 0:
            raise RuntimeError(f"createdb failed: {create.stderr.strip()}")


def stop(data: Path = DEFAULT_DATA, quiet: bool = False) -> None:
    say = (lambda *_: None) if quiet else print
    if not is_running(data):
        say("PostgreSQL is not running")
        return
    run([str(bin_dir() / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], timeout=60)
    say("PostgreSQL stopped")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("start", "stop", "status", "url"):
        print(f"usage: {Path(__file__).name} start|stop|status|url")
        return 2
    command = argv[0]
    if command == "start":
        try:
            start()
        except RuntimeError as err:
            print(err)
            return 1
    elif command == "stop":
        stop()
    elif command == "status":
        running = is_running()
        print(f"PostgreSQL {'running' if running else 'not running'} ({DEFAULT_DATA})")
        return 0 if running else 1
    else:
        print(url())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
