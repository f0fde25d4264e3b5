"""Operator-side code: connecting to Temporal and the client facade."""
