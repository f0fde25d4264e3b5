"""What the worker process itself has left (memory, disk): part of every health verdict, since an
agent on a worker short of memory or disk is not healthy whatever its own checks say."""

from __future__ import annotations

import os
import resource
import shutil
import socket

from aiops.contracts.health import WorkerResources


def worker_resources(path: str = ".") -> WorkerResources:
    memory_kb = 0.0
    try:
        with open("/proc/self/status") as status:
            memory_kb = next(float(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        memory_kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    disk = shutil.disk_usage(path)
    return WorkerResources(
        worker=f"{socket.gethostname()}:{os.getpid()}",
        memory_mb=memory_kb / 1024,
        disk_free_ratio=disk.free / disk.total if disk.total else 1.0,
    )
