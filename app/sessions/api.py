"""Pure helpers around the Managed Agents API: the create request for a spec, and reading the
API's answers and errors. No I/O."""

from __future__ import annotations

from typing import Any

import anthropic

from app.logs import redact
from app.sessions.types import SessionSpec

RETRYABLE_4XX = frozenset({408, 409, 429})
# A create that failed with one of these may have created the session before it failed.
AMBIGUOUS_CREATE_STATUS = frozenset({500, 502, 504})


def create_params(spec: SessionSpec, token: str, *, github_web_url: str) -> dict[str, Any]:
    """The `sessions.create` arguments: the agent pinned to a version, the repository mounted at
    the head commit with `token` (an empty one mounts a public repository without any; none at all
    when the spec says not to mount it), metadata, a title and the budget; the agent with overrides
    (its prompt, its tools and MCP servers) and the vaults when the spec has them."""
    agent: dict[str, Any] = {"type": "agent", "id": spec.agent_id}
    if spec.system_override is not None or spec.agent_tools is not None or spec.mcp_servers:
        agent = {"type": "agent_with_overrides", "id": spec.agent_id}
        if spec.system_override is not None:
            agent["system"] = spec.system_override
        if spec.agent_tools is not None:
            agent["tools"] = spec.agent_tools
        if spec.mcp_servers:
            agent["mcp_servers"] = spec.mcp_servers
    if spec.agent_version is not None:
        agent["version"] = spec.agent_version
    metadata = {"prmedic_job": str(spec.job_id), "repository": spec.repo, "kind": spec.kind}
    if spec.pr_number is not None:
        metadata["pr"] = str(spec.pr_number)
    for key, value in spec.metadata.items():
        if len(metadata) >= 16:
            break
        metadata[str(key)[:64]] = str(value)[:512]
    repository: dict[str, Any] = {"type": "github_repository", "url": f"{github_web_url.rstrip('/')}/{spec.repo}",
                                  "checkout": {"type": "commit", "sha": spec.head_sha}}
    if token:  # none: a public repository, cloned anonymously (`prmedic run` with a user's token)
        repository["authorization_token"] = token
    params: dict[str, Any] = {
        "agent": agent,
        "environment_id": spec.environment_id,
        "resources": [repository] if spec.mount_repository else [],
        "metadata": metadata,
        "title": spec.title or f"prmedic {spec.kind} {spec.repo}"
                               + (f"#{spec.pr_number}" if spec.pr_number is not None else "")
                               + f" @ {spec.head_sha[:7]}",
    }
    if spec.vault_ids:
        params["vault_ids"] = list(spec.vault_ids)
    if spec.budget_cents:
        params["budget"] = {"type": "limit",
                            "max_list_cost": {"amount": str(int(spec.budget_cents)), "currency": "USD"}}
    return params


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"


def repository_resource_id(session: Any) -> str | None:
    for resource in getattr(session, "resources", None) or ():
        if getattr(resource, "type", None) == "github_repository":
            return resource.id
    return None


def retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return min(float(headers["retry-after-ms"]) / 1000, 60.0)
        if "retry-after" in headers:
            return min(float(headers["retry-after"]), 60.0)
    except ValueError:
        return None
    return None


def api_message(exc: anthropic.APIStatusError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{exc.status_code} {err['message']}"
    return f"{exc.status_code} {exc.message}"


def status_text(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    name = exc.__class__.__name__
    return f"{name} {status}" if status else f"{name}: {redact(str(exc))[:200]}"
