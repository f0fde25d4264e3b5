"""Deterministic workflow code: the agent entity workflow and the action workflow."""
