"""The nexec agent daemon: takes jobs addressed to its host from NATS and replies."""

from agentd.agent import Agent, AgentCounters, AgentState
from agentd.config import AgentConfig
from agentd.executor import Executor, ProcessExecutor

__all__ = ["Agent", "AgentConfig", "AgentCounters", "AgentState", "Executor", "ProcessExecutor"]
