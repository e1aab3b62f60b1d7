"""A strict, stateful simulator of Anthropic's Managed Agents API (aiohttp).

The real ``anthropic`` SDK reaches it through ``base_url`` / ``ANTHROPIC_BASE_URL``.

* Strict: every request must carry ``anthropic-beta: managed-agents-2026-04-01``, an API key
  (``x-api-key`` or ``Authorization: Bearer``) and ``anthropic-version``. Bodies are validated
  against the SDK's own param ``TypedDict``s (types *and* unknown keys) plus the documented
  rules (tool names, metadata limits, multiagent roster, networking/packages, budget, ...).
  Anything wrong is answered with the Anthropic error shape and recorded in ``sim.violations``.
* Every response and every emitted event is validated against the SDK's response models
  before it leaves the simulator (a failure there is a simulator bug and is reported loudly).
* Stateful: agents (with versions), environments, sessions, resources, threads and an
  append-only event log per session; sessions are driven by *scripts* (see the step builders
  in ``steps`` and the ready-made scripts in ``ready``).

Public surface:

    sim = ManagedAgentsSimulator(step_delay=0.005, ping_interval=0.5)
    app = sim.make_app()                        # aiohttp application (the fixture serves it)

    # choosing a session's script (first match wins):
    sim.router_script = router_answer("DEEP: …")  # sessions of the agent named `router` with no
                                                 # resources (prmedic's router; None: no special case)
    sim.verifier_script = verifier_run(passed=False)  # sessions of the agent named `verifier` (a
                                                 # fix's verification; default: every command passes)
    sim.scripts["review"] = normal_review_run()  # + session metadata {"script": "review"}
    sim.script_for(lambda create_body: ...)      # return a Script (or a factory) or None
    sim.queue_script(s1, s2)                     # the next sessions created, in order
    sim.default_script = end_turn_only()         # otherwise (built-in default: end_turn_only())
    sim.sessions[sid].script = ...               # swap for the session's next turns

    # faults
    sim.fail_next_session_creates(n, status=529 | 429, retry_after=0.01)
    sim.fail_next(method, path, n, status=...)
    sim.drop_streams_after(n_events, times=1, mode="abort" | "eof")

    # inspection
    sim.calls (Call(method, path, body)), sim.write_calls(since=sim.mark()), sim.requests
    sim.violations, sim.expect_violations, sim.interrupts, sim.conflicts
    sim.agents / sim.environments / sim.sessions[sid] (SimSession: status, events, thread_logs,
    threads, tool_results, confirmations, interrupts, user_messages, usage, stream_drops,
    resources[i]["_token"])
    await sim.wait_idle(sid, "requires_action"), sim.wait_for_event(sid, type, **match),
    sim.wait_until(predicate)

A script is ``Script(*steps)`` (one turn per ``user.message``; ``.then_turn(*steps)`` adds
turns). The runner emits ``session.status_running`` when a turn starts and after tool results
come back, and ``session.status_idle`` (end_turn) if a turn ends without a ``stop_*`` step.
Sub-agent work stays in its thread's log; ``CROSSPOSTED_TYPES`` are copied to the session log
(``sim.flatten_threads = True`` copies everything), and so is a sub-agent's tool use waiting for a
confirmation. ``mcp_tool_use`` takes its permission from the agent's ``mcp_toolset`` (``always_ask``
waits for a ``user.tool_confirmation``) and fails, as the platform would, when the environment's
networking does not allow MCP servers; ``vault_ids`` must be ``vlt_…`` ids.

Layout: ``common`` (constants, errors, records), ``validation`` (against the SDK's types),
``script``, ``steps`` and ``ready`` (scripts, step builders, ready-made scripts), ``session``
(:class:`SimSession`), ``simulator`` (:class:`ManagedAgentsSimulator`) and its route mixins under
``routes/`` (transport, agents, environments, sessions, events).
"""

from __future__ import annotations

from .common import (
    AMOUNT_RE, ApiError, BETA, BUILTIN_TOOLS, CROSSPOSTED_TYPES, CUSTOM_TOOL_NAME, Call, DEFAULT_PRICING,
    GITHUB_URL_RE, RequestRecord, SimulatorBug, new_id,
)
from .validation import check_response, validate_params
from .script import Script, ScriptContext, ScriptLike, Step, ToolResult
from .steps import (
    agent_message, agent_thinking, custom_tool_use, custom_tool_uses, drop_stream, if_tool_error,
    mcp_tool_use, model_request, on_tool_result, pause, session_error, status_rescheduled, status_running, stop,
    stop_budget_reached, stop_end_turn, stop_refusal, stop_retries_exhausted, terminate, thread_created,
    thread_idle, thread_message, thread_reply, thread_running, thread_terminated, tool_use, usage_snapshot,
)
from .session import SimSession
from .simulator import ManagedAgentsSimulator
from .ready import (
    DEFAULT_REVIEW_CALLS, bad_tool_input_then_fix, budget_reached, dropped_stream, end_turn_only,
    normal_review_run, refusal, repository_clone_error, retries_exhausted, router_answer, task_commands,
    terminated, verifier_run,
)

__all__ = [
    "BETA",
    "ApiError",
    "Call",
    "ManagedAgentsSimulator",
    "Script",
    "ScriptContext",
    "SimSession",
    "ToolResult",
    # steps
    "agent_message",
    "agent_thinking",
    "custom_tool_use",
    "custom_tool_uses",
    "drop_stream",
    "if_tool_error",
    "mcp_tool_use",
    "model_request",
    "on_tool_result",
    "pause",
    "session_error",
    "status_rescheduled",
    "status_running",
    "stop",
    "stop_budget_reached",
    "stop_end_turn",
    "stop_refusal",
    "stop_retries_exhausted",
    "terminate",
    "thread_created",
    "thread_idle",
    "thread_message",
    "thread_reply",
    "thread_running",
    "thread_terminated",
    "tool_use",
    "usage_snapshot",
    # scripts
    "bad_tool_input_then_fix",
    "budget_reached",
    "dropped_stream",
    "end_turn_only",
    "normal_review_run",
    "refusal",
    "repository_clone_error",
    "retries_exhausted",
    "router_answer",
    "task_commands",
    "terminated",
    "verifier_run",
]
