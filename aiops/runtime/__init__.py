"""The worker runtime: building and running a worker, its agent-instance cache, the framework
services it lends agent code (``services.py``), and the config listener that carries versions
stored by anyone to the running agents."""
