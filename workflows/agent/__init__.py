"""The agent: ``AgentWorkflow`` (``workflow.py``), a thin shell over components that share one
``AgentContext`` (``context.py``), their pure helpers, and the agent's detector tick."""
