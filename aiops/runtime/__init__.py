"""The worker runtime: building and running a worker, its agent-instance cache, and the
config listener that carries versions stored by anyone to the running agents."""
