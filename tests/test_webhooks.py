"""Webhook intake: GitHub's real example payloads and every kind of bad delivery."""

from __future__ import annotations

import json

import pytest
from conftest import APP_ID, example, installed, webhook_examples

from app.store import JobKind, JobState

REVIEW_ACTIONS = {"opened", "reopened", "synchronize", "ready_for_review"}


def expected_job(event: str, payload: dict) -> JobKind | None:
    """The job a GitHub App's delivery of `payload` creates, whether or not it names an installation."""
    action = payload.get("action")
    if event == "pull_request" and action in REVIEW_ACTIONS:
        pr = payload["pull_request"]
        return None if pr.get("state") == "closed" else JobKind.review
    if event == "check_run" and action == "completed":
        return JobKind.fix if payload["check_run"]["conclusion"] in ("failure", "timed_out") else None
    if event == "workflow_run" and action == "completed":
        return JobKind.fix if payload["workflow_run"]["conclusion"] == "failure" else None
    return None


ALL_EXAMPLES = [
    pytest.param(event, index, id=f"{event}-{index}-{payload.get('action', '')}")
    for event, payloads in webhook_examples().items()
    for index, payload in enumerate(payloads)
]


@pytest.mark.parametrize(("event", "index"), ALL_EXAMPLES)
async def test_every_github_example_is_routed_or_ignored_never_5xx(deliver, store, event, index):
    payload = webhook_examples()[event][index]
    response = await deliver(event, payload)
    body = await response.json()
    jobs = await store.list_jobs()
    kind = expected_job(event, payload)
    if kind is None:
        assert response.status == 200, body
        assert jobs == []
    elif not payload.get("installation"):  # a repository webhook's delivery: no App installation to act through
        assert (response.status, body["status"]) == (200, "ignored"), body
        assert "no installation" in body["reason"]
        assert jobs == []
    else:
        assert response.status == 202, body
        assert [(j.kind, j.state) for j in jobs] == [(kind, JobState.queued)]
        assert body["jobs"] == [jobs[0].id]
        assert jobs[0].repo == payload["repository"]["full_name"]
        assert jobs[0].installation_id == payload["installation"]["id"]


async def test_pull_request_opened_keeps_what_a_review_needs(deliver, store):
    payload = installed(example("pull_request", "opened"))
    response = await deliver("pull_request", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    pr = payload["pull_request"]
    assert (job.pr_number, job.head_sha) == (pr["number"], pr["head"]["sha"])
    assert job.supersede_key == f"review:{payload['repository']['full_name']}#{pr['number']}"
    kept = job.payload["pull_request"]
    assert kept["title"] == pr["title"]
    assert kept["base_sha"] == pr["base"]["sha"]
    assert kept["head_ref"] == pr["head"]["ref"]
    assert job.payload["trigger"] == "opened"


async def test_draft_pull_request_is_queued_for_the_repository_config_to_decide(deliver, store):
    payload = installed(example("pull_request", "opened"))
    payload["pull_request"]["draft"] = True
    response = await deliver("pull_request", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    assert job.payload["pull_request"]["draft"] is True


async def test_failed_check_run_creates_a_fix_job_for_its_pull_request(deliver, store):
    payload = installed(example("check_run", "completed"))
    assert payload["check_run"]["conclusion"] == "failure"
    response = await deliver("check_run", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    assert job.kind is JobKind.fix
    assert job.pr_number == payload["check_run"]["pull_requests"][0]["number"]
    assert job.head_sha == payload["check_run"]["head_sha"]
    assert job.payload["failure"]["source"] == "check_run"


async def test_failed_workflow_run_creates_a_fix_job(deliver, store):
    payload = installed(example("workflow_run", "completed", index=2))
    payload["workflow_run"]["conclusion"] = "failure"
    response = await deliver("workflow_run", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    assert job.kind is JobKind.fix
    assert job.payload["failure"]["source"] == "workflow_run"


def pr_comment(body: str) -> dict:
    payload = installed(example("issue_comment", "created"))
    payload["issue"]["pull_request"] = {"url": payload["issue"]["url"].replace("/issues/", "/pulls/")}
    payload["comment"]["body"] = body
    return payload


async def test_slash_command_on_a_pull_request_creates_a_command_job(deliver, store):
    payload = pr_comment("Thanks!\n/ask why is the cache\nkeyed by user?")
    response = await deliver("issue_comment", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    assert job.kind is JobKind.command
    assert job.pr_number == payload["issue"]["number"]
    assert job.payload["command"] == "ask"
    assert job.payload["args"] == "why is the cache\nkeyed by user?"
    assert job.payload["comment"]["id"] == payload["comment"]["id"]


async def test_slash_command_in_a_review_thread_keeps_its_place(deliver, store):
    payload = installed(example("pull_request_review_comment", "created"))
    payload["comment"]["body"] = "/fix"
    response = await deliver("pull_request_review_comment", payload)
    assert response.status == 202
    [job] = await store.list_jobs()
    assert job.payload["command"] == "fix"
    assert job.payload["comment"]["path"] == payload["comment"]["path"]


@pytest.mark.parametrize("body", ["just a comment", "> /fix\nquoted", "```\n/fix\n```", "see /fix",
                                  "/usr/bin/env python3 fails", "https://example.com/fix", "`/fix`"])
async def test_comments_without_a_command_are_ignored(deliver, store, body):
    response = await deliver("issue_comment", pr_comment(body))
    assert response.status == 200
    assert await store.list_jobs() == []


async def test_comment_on_an_issue_is_ignored(deliver, store):
    payload = example("issue_comment", "created")
    payload["comment"]["body"] = "/review"
    assert (await deliver("issue_comment", payload)).status == 200
    assert await store.list_jobs() == []


async def test_the_apps_own_events_never_create_jobs(deliver, store):
    own_pr = installed(example("pull_request", "opened"))
    own_pr["sender"] = {"login": "prmedic[bot]", "type": "Bot", "id": 1}
    own_comment = pr_comment("/review")
    own_comment["comment"]["performed_via_github_app"] = {"id": APP_ID, "slug": "prmedic"}
    own_check = example("check_run", "completed")
    own_check["check_run"]["app"]["id"] = APP_ID
    for event, payload in (("pull_request", own_pr), ("issue_comment", own_comment), ("check_run", own_check)):
        response = await deliver(event, payload)
        assert response.status == 200
        assert (await response.json())["reason"] == "event caused by this App"
    assert await store.list_jobs() == []


async def test_an_unknown_command_becomes_a_help_job_flagged_unknown(deliver, store):
    assert (await deliver("issue_comment", pr_comment("/unknown-cmd"))).status == 202
    [job] = await store.list_jobs()
    assert job.payload["command"] == "help" and job.payload["unknown"] == "unknown-cmd"


async def test_edited_comments_never_run_a_command(deliver, store):
    payload = pr_comment("/review")
    payload["action"] = "edited"
    assert (await deliver("issue_comment", payload)).status == 200
    assert await store.list_jobs() == []


async def test_commands_from_other_bots_are_ignored(deliver, store):
    payload = pr_comment("/fix")
    payload["sender"]["type"] = "Bot"
    assert (await deliver("issue_comment", payload)).status == 200
    assert await store.list_jobs() == []


async def test_installation_events_are_kept(deliver, store):
    created = example("installation", "created")
    assert (await deliver("installation", created)).status == 200
    installation_id = created["installation"]["id"]
    stored = await store.get_installation(installation_id)
    assert stored.active and stored.account == created["installation"]["account"]["login"]
    assert stored.repositories == sorted(r["full_name"] for r in created["repositories"])

    removed = example("installation_repositories", "removed")
    removed["installation"]["id"] = installation_id
    removed["repositories_removed"] = created["repositories"][:1]
    await deliver("installation_repositories", removed)
    stored = await store.get_installation(installation_id)
    assert created["repositories"][0]["full_name"] not in stored.repositories

    deleted = example("installation", "deleted")
    deleted["installation"]["id"] = installation_id
    await deliver("installation", deleted)
    assert not (await store.get_installation(installation_id)).active


async def test_ping_is_answered(deliver, store):
    response = await deliver("ping", example("ping"))
    assert response.status == 200
    assert (await response.json())["status"] == "pong"


async def test_duplicate_delivery_creates_no_second_job(deliver, store):
    payload = installed(example("pull_request", "opened"))
    first = await deliver("pull_request", payload, delivery_id="same-id")
    second = await deliver("pull_request", payload, delivery_id="same-id")
    assert (first.status, second.status) == (202, 200)
    assert (await second.json())["status"] == "duplicate"
    assert len(await store.list_jobs()) == 1


async def test_concurrent_duplicates_create_one_job(deliver, store):
    import asyncio

    payload = installed(example("pull_request", "opened"))
    answers = await asyncio.gather(*(deliver("pull_request", payload, delivery_id="dup") for _ in range(10)))
    assert sorted(r.status for r in answers) == [200] * 9 + [202]
    assert len(await store.list_jobs()) == 1


# -- bad deliveries: each gets its answer and creates nothing -------------------------------

def _body() -> bytes:
    return json.dumps(installed(example("pull_request", "opened"))).encode()


async def _post(client, body: bytes, headers: dict):
    return await client.post("/api/github/webhooks", data=body, headers=headers)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, id="bad-signature"),
        pytest.param({"X-Hub-Signature-256": None}, 401, id="no-signature"),
        pytest.param({"X-Hub-Signature-256": "sha1=abc"}, 401, id="sha1-only-wrong"),
        pytest.param({"X-Hub-Signature-256": "md5=abc"}, 401, id="unknown-digest"),
        pytest.param({"Content-Type": "text/plain"}, 415, id="wrong-content-type"),
        pytest.param({"Content-Type": None}, 415, id="no-content-type"),
        pytest.param({"X-GitHub-Event": None}, 400, id="no-event-header"),
        pytest.param({"X-GitHub-Delivery": None}, 400, id="no-delivery-header"),
    ],
)
async def test_bad_headers_are_refused_and_create_nothing(webhook_client, store, change, status):
    from conftest import delivery_headers

    body = _body()
    headers = delivery_headers("pull_request", body)
    for name, value in change.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    response = await _post(webhook_client, body, headers)
    assert response.status == status
    assert "error" in await response.json()
    assert await store.list_jobs() == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2, 3]", b'"a string"', "{\"action\": \"opened\"}".encode(), b"\xff\xfe"],
    ids=["truncated", "empty", "array", "string", "missing-fields", "not-utf8"],
)
async def test_malformed_signed_bodies_get_400(webhook_client, store, body):
    from conftest import delivery_headers

    response = await _post(webhook_client, body, delivery_headers("pull_request", body))
    assert response.status == 400
    assert await store.list_jobs() == []


async def test_oversized_body_gets_413(webhook_client, store):
    from conftest import delivery_headers

    body = b'{"padding": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    response = await _post(webhook_client, body, delivery_headers("pull_request", body))
    assert response.status == 413
    assert await store.list_jobs() == []


async def test_form_encoded_delivery_is_accepted(webhook_client, store):
    import urllib.parse

    from conftest import delivery_headers

    body = urllib.parse.urlencode({"payload": _body().decode()}).encode()
    headers = delivery_headers("pull_request", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert (await _post(webhook_client, body, headers)).status == 202
    assert len(await store.list_jobs()) == 1


async def test_store_failure_is_not_acknowledged(deliver, store):
    await store.close()
    response = await deliver("pull_request", installed(example("pull_request", "opened")))
    assert response.status == 503


async def test_healthz_reports_store_and_queue_depth(webhook_client, deliver):
    await deliver("pull_request", installed(example("pull_request", "opened")))
    response = await webhook_client.get("/healthz")
    assert response.status == 200
    health = await response.json()
    assert {k: v for k, v in health.items() if k != "database"} == {"status": "ok", "store": "ok", "queue_depth": 1,
                                                                     "running": 0}
    assert health["database"]["backend"] == "sqlite" and health["database"]["reachable"] is True


async def test_metrics_count_webhooks_and_jobs(webhook_client, deliver):
    await deliver("pull_request", installed(example("pull_request", "opened")))
    await deliver("star", example("star"))
    await webhook_client.post("/api/github/webhooks", data=b"{}", headers={"Content-Type": "application/json"})
    text = await (await webhook_client.get("/metrics")).text()
    assert 'prmedic_webhooks_total{event="pull_request",status="202"} 1.0' in text
    assert 'prmedic_webhooks_total{event="star",status="200"} 1.0' in text
    assert 'prmedic_webhooks_total{event="unverified",status="401"} 1.0' in text
    assert 'prmedic_jobs{kind="review",state="queued"} 1.0' in text
