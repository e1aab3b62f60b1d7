"""The session core with no I/O: `SessionState` driven by plain event objects."""

from __future__ import annotations

import itertools
from types import SimpleNamespace as NS

from anthropic.types.beta import BetaManagedAgentsSessionUsage

from app.agents.tool_policy import ToolIdentity
from app.sessions import SessionFailed, SessionRetryable
from app.sessions.state import (
    Answer,
    Confirm,
    EventWindow,
    Fail,
    Finish,
    SendTask,
    SessionState,
    ToolUse,
    Wait,
)

_ids = itertools.count(1)


def event(type_: str, **fields) -> NS:
    fields.setdefault("id", f"sevt_{next(_ids)}")
    fields.setdefault("processed_at", None)
    return NS(type=type_, **fields)


def idle(reason: str, *event_ids: str, **details) -> NS:
    stop = NS(type=reason, event_ids=list(event_ids)) if reason == "requires_action" else NS(type=reason)
    return event("session.status_idle", stop_reason=stop, stop_details=NS(**details) if details else None)


def error(kind: str, retry: str = "retrying", message: str = "it broke") -> NS:
    return event("session.error", error=NS(type=kind, retry_status=NS(type=retry), message=message))


def tool_use(name: str = "publish_review", **input_) -> NS:
    return event("agent.custom_tool_use", name=name, input=input_)


def agent_message(text: str, thread: str | None = None) -> NS:
    return event("agent.message", content=[NS(type="text", text=text)], session_thread_id=thread)


def started(*events: NS) -> SessionState:
    """A state whose task is in the log, fed `events`."""
    state = SessionState(repo="octo/app", head_sha="0123456789abcdef0123", session_id="sesn_1")
    for ev in (event("user.message"), *events):
        state.ingest(ev)
    return state


def test_a_new_session_sends_the_task_once():
    state = SessionState(session_id="sesn_1")
    assert state.next_action() == SendTask()
    state.mark_task_sent()
    assert state.next_action() == Wait()
    state.ingest(event("session.status_running"))
    assert state.next_action() == Wait()


def test_the_task_in_the_log_is_not_sent_again():
    state = SessionState()
    state.ingest(event("user.message"))
    assert state.next_action() == Wait()


def test_a_duplicate_event_id_is_ignored_and_a_preview_too():
    state = SessionState()
    use = tool_use()
    assert state.ingest(use) is True
    assert state.ingest(use) is False
    assert state.ingest(event("agent.message", id=None, content=[])) is False
    assert state.events == 1


def test_the_dedupe_window_is_bounded():
    window = EventWindow(2)
    assert window.add("a") and window.add("b") and not window.add("a")
    assert window.add("c")  # "a" falls out of the window
    assert window.add("a")


def test_the_watermark_is_the_latest_processed_at():
    state = SessionState()
    for at in ("2026-01-01T00:00:02Z", "2026-01-01T00:00:01Z"):
        state.ingest(event("session.status_running", processed_at=at))
    assert state.watermark == "2026-01-01T00:00:02Z"


def test_a_custom_tool_use_becomes_an_answer_when_the_session_requires_action():
    use = tool_use("publish_review", body="LGTM")
    state = started(use)
    assert state.next_action() == Wait()  # not idle yet
    state.ingest(idle("requires_action", use.id))
    assert state.next_action() == Answer(use.id, ToolUse("publish_review", {"body": "LGTM"}))
    state.mark_answered(use.id)
    assert state.next_action() == Wait()
    assert state.pending == [] and state.tool_uses == {}


def test_pending_uses_are_answered_one_by_one_and_an_unseen_one_is_looked_up():
    first, second = tool_use("report_progress"), tool_use("publish_review")
    state = started(first, idle("requires_action", first.id, second.id, "sevt_unseen"))
    assert state.next_action() == Answer(first.id, ToolUse("report_progress", {}))
    state.mark_answered(first.id)
    assert state.next_action() == Answer(second.id, None)  # its tool use was not ingested
    state.skip(second.id)
    assert state.next_action() == Answer("sevt_unseen", None)


def test_a_result_already_in_the_log_is_not_answered_again():
    use = tool_use()
    state = started(use, event("user.custom_tool_result", custom_tool_use_id=use.id),
                    idle("requires_action", use.id))
    assert state.pending == [] and state.next_action() == Wait()


def test_a_tool_waiting_for_confirmation_is_put_to_the_policy_with_its_identity():
    ask = event("agent.tool_use", name="bash", evaluated_permission="ask")
    mcp = event("agent.mcp_tool_use", name="get_issue", mcp_server_name="linear", evaluated_permission="ask")
    state = started(ask, mcp, idle("requires_action", ask.id, mcp.id))
    assert state.next_action() == Confirm(ask.id, ToolIdentity("bash"))
    state.mark_answered(ask.id)
    state.mark_confirmed(ask.id)
    assert state.next_action() == Confirm(mcp.id, ToolIdentity("get_issue", "linear"))
    state.mark_answered(mcp.id)
    state.mark_confirmed(mcp.id)
    assert state.next_action() == Wait() and not state.confirmations


def test_confirmations_in_the_log_are_counted_by_result_once_each():
    allowed, denied = (event("agent.tool_use", name="web_fetch", evaluated_permission="ask") for _ in range(2))
    answers = [event("user.tool_confirmation", tool_use_id=allowed.id, result="allow"),
               event("user.tool_confirmation", tool_use_id=denied.id, result="deny")]
    state = started(allowed, denied, *answers, answers[1])  # a re-read event counts once
    assert state.confirmed == {"allow": 1, "deny": 1} and not state.confirmations


def test_end_turn_finishes_with_the_final_message_of_the_main_thread():
    state = started(agent_message("the review is up"), agent_message("sub-agent chatter", thread="sthr_1"),
                    idle("end_turn"))
    assert state.next_action() == Finish("end_turn")
    assert state.final_message == "the review is up"


def test_end_turn_before_the_task_is_in_the_log_waits():
    state = SessionState()
    state.mark_task_sent()
    state.ingest(idle("end_turn"))
    assert state.next_action() == Wait()


def test_budget_reached_finishes_flagged():
    state = started(idle("budget_reached"))
    assert state.next_action() == Finish("budget_reached", budget_reached=True)


def test_usage_and_list_cost_are_taken():
    usage = BetaManagedAgentsSessionUsage(input_tokens=10, list_cost={"amount": "42", "currency": "USD"})
    state = started(event("session.usage", usage=usage))
    assert state.list_cost_cents == 42 and state.usage["input_tokens"] == 10
    state.set_usage(None)  # a session without usage keeps what the events said
    assert state.list_cost_cents == 42


def test_a_retrying_error_is_only_counted():
    state = started(error("model_overloaded_error", retry="retrying"), event("session.status_running"))
    assert state.errors == ["model_overloaded_error"] and state.next_action() == Wait()


def test_a_terminal_error_then_termination_fails_for_now():
    state = started(error("model_overloaded_error", retry="terminal"), event("session.status_terminated"))
    action = state.next_action()
    assert isinstance(action, Fail) and not action.interrupt
    assert isinstance(action.error, SessionRetryable) and action.error.reason == "terminated"
    assert "model_overloaded_error: it broke" in str(action.error)


def test_termination_after_end_turn_finishes():
    state = started(idle("end_turn"), event("session.status_terminated"))
    assert state.next_action() == Finish("end_turn")


def test_retries_exhausted_fails_for_now_naming_the_last_error():
    state = started(error("model_overloaded_error"), idle("retries_exhausted"))
    action = state.next_action()
    assert isinstance(action, Fail) and isinstance(action.error, SessionRetryable)
    assert action.error.reason == "retries_exhausted" and "model_overloaded_error" in str(action.error)


def test_a_repository_error_fails_for_good_and_interrupts():
    state = started(error("repository_checkout_error", retry="terminal"))
    action = state.next_action()
    assert isinstance(action, Fail) and action.interrupt
    assert isinstance(action.error, SessionFailed) and action.error.reason == "repository_checkout_error"
    assert action.error.session_id == "sesn_1"
    assert "octo/app" in str(action.error) and "commit 0123456789ab could not be checked out" in str(action.error)
    state.ingest(event("session.status_terminated"))
    assert state.next_action() == Fail(action.error, interrupt=False)  # nothing left to interrupt


def test_a_refusal_fails_for_good_with_its_category():
    state = started(idle("refusal", category="cyber", explanation="no"))
    action = state.next_action()
    assert isinstance(action, Fail) and isinstance(action.error, SessionFailed)
    assert action.error.reason == "refusal" and "category cyber" in str(action.error)
    assert str(action.error).endswith(": no")
