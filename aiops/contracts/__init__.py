"""The contracts: every model that crosses a boundary (workflow inputs, messages and results,
activity arguments, tokens' claims, audit rows, search attributes, ids), in one home.

Nothing here imports anything else of the project: every other layer imports these.
"""
