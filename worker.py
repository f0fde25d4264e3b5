"""The worker: serves every workflow and activity of the framework on one task queue.

Run as many as you like on the same queue; each builds agent instances on
demand, so no worker depends on having seen another's work. SIGTERM or SIGINT
stops polling and lets running activities finish (up to the grace period).

    python worker.py [--task-queue aiops-agents] [--agent-module my_pkg.agents ...]

This file is the entry point; the process lives in ``aiops/runtime/worker_process.py``
(connecting, health and metrics, the config listener, shutdown) and what a worker
serves in ``aiops/runtime/worker_build.py``.
"""

from aiops.runtime.worker_process import main

if __name__ == "__main__":
    main()
