"""Everything that touches the world: agent hooks, storage, notifications."""
