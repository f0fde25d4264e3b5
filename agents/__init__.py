"""The agent SDK: models, BaseAgent, the registry and the approval policy.

Nothing here imports Temporal worker code, so agent packages stay plain Python.
"""

from agents.base_agent import AgentLifecycle, BaseAgent
from agents.registry import AgentFactory, default_factory, load_agent_modules, register_agent
from aiops.contracts.config import AgentConfig, Integration, RetrySettings, RuntimeSettings
from aiops.contracts.errors import (
    AgentError,
    AgentLifecycleError,
    InvalidAgentConfigError,
    NonRetryableActionError,
    UnknownAgentTypeError,
)
from aiops.contracts.models import (
    ActionResult,
    ActionType,
    AgentAction,
    AgentType,
    AutomationLevel,
    EventType,
    HealthReport,
    Plan,
    RiskLevel,
    Severity,
    SystemEvent,
)

__all__ = [
    "ActionResult",
    "ActionType",
    "AgentAction",
    "AgentConfig",
    "AgentError",
    "AgentFactory",
    "AgentLifecycle",
    "AgentLifecycleError",
    "AgentType",
    "AutomationLevel",
    "BaseAgent",
    "EventType",
    "HealthReport",
    "Integration",
    "InvalidAgentConfigError",
    "NonRetryableActionError",
    "Plan",
    "RetrySettings",
    "RiskLevel",
    "RuntimeSettings",
    "Severity",
    "SystemEvent",
    "UnknownAgentTypeError",
    "default_factory",
    "load_agent_modules",
    "register_agent",
]
