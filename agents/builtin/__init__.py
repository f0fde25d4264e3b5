"""The built-in agent types that operate real systems; importing this package registers them."""

from agents.builtin import ansible, disk, postgres, service, terraform

__all__ = ["ansible", "disk", "postgres", "service", "terraform"]
