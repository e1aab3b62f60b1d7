"""Agent and environment definitions (`agents/`, `environments/`) and their sync to Managed Agents."""

from app.agents.definitions import (
    AgentDefinition,
    DefinitionError,
    Definitions,
    EnvironmentDefinition,
    load_definitions,
)
from app.agents.per_job import choose_environment, render_system_prompt
from app.agents.sync import AgentRef, SyncedAgents, SyncResult, ensure_synced, sync_definitions

__all__ = [
    "AgentDefinition", "AgentRef", "DefinitionError", "Definitions", "EnvironmentDefinition", "SyncResult",
    "SyncedAgents", "choose_environment", "ensure_synced", "load_definitions", "render_system_prompt",
    "sync_definitions",
]
