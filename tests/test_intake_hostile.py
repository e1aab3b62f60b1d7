"""Webhook intake under hostile input: every signed delivery gets a 4xx or a 2xx, never a 5xx.

The same deliveries are sent in-process and to a real `prmedic serve` process, which must keep
serving afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from dataclasses import dataclass

import pytest
from conftest import delivery_headers, example, installed, sign, webhook_examples
from test_end_to_end import ServeProcess, serve_env

from app.server import WEBHOOK_PATH

DEEP = 10_000
HUGE = 99999999999999999999999
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Hostile:
    name: str
    event: str
    body: bytes
    status: int
    content_type: str = "application/json"
    says: str = ""  # a part of the answer's `error` (or `reason`) that tells the sender what was wrong


def pr_opened(**pull_request) -> dict:
    payload = installed(example("pull_request", "opened"))
    payload["pull_request"].update(pull_request)
    return payload


def pr_command_comment() -> dict:
    payload = example("issue_comment", "created")
    payload["issue"]["pull_request"] = {"url": payload["issue"]["url"].replace("/issues/", "/pulls/")}
    payload["comment"]["body"] = "/review"
    return payload


def failed_check_run() -> dict:
    payload = example("check_run", "completed")
    assert payload["check_run"]["conclusion"] == "failure"
    return payload


def failed_workflow_run() -> dict:
    payload = example("workflow_run", "completed", index=2)
    payload["workflow_run"]["conclusion"] = "failure"
    return payload


def review_thread_command() -> dict:
    payload = example("pull_request_review_comment", "created")
    payload["comment"]["body"] = "/fix"
    return payload


def _json(payload) -> bytes:
    return json.dumps(payload).encode()


def _form(text: str) -> bytes:
    return urllib.parse.urlencode({"payload": text}).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with_huge(path: tuple[str, ...], payload: dict) -> bytes:
    """`payload` with the number at `path` replaced by one past 64 bits (json.dumps writes it exactly)."""
    target = payload
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else target[int(key)]
    target[path[-1] if isinstance(target, dict) else int(path[-1])] = HUGE
    return _json(payload)


def hostile_deliveries() -> list[Hostile]:
    opened = _json(pr_opened())[:-1]  # a routable pull_request.opened, its closing brace left off
    deep = [
        Hostile("deep-json-unread-field", "pull_request", opened + b', "x": ' + _nested(DEEP).encode() + b"}",
                400, says="nests too deeply"),
        Hostile("deep-json-inside-routed-object", "pull_request",
                b'{"action": "opened", "pull_request": {"x": ' + _nested(DEEP).encode() + b"}}", 400,
                says="nests too deeply"),
        Hostile("deep-json-objects", "pull_request", b'{"x": ' * DEEP + b"1" + b"}" * DEEP, 400,
                says="nests too deeply"),
        Hostile("deep-json-in-form", "pull_request", _form('{"x": ' + _nested(DEEP) + "}"), 400, FORM,
                says="nests too deeply"),
    ]
    huge = [
        Hostile(f"huge-{'.'.join(path)}", event, _with_huge(path, make()), 400,
                says="$." + ".".join(path).replace(".0.", "[0]."))
        for event, make, path in [
            ("pull_request", pr_opened, ("installation", "id")),
            ("pull_request", pr_opened, ("repository", "id")),
            ("pull_request", pr_opened, ("pull_request", "number")),
            ("pull_request", pr_opened, ("pull_request", "additions")),
            ("pull_request", pr_opened, ("sender", "id")),
            ("issue_comment", lambda: installed(pr_command_comment()), ("comment", "id")),
            ("issue_comment", lambda: installed(pr_command_comment()), ("issue", "number")),
            ("check_run", lambda: installed(failed_check_run()), ("check_run", "id")),
            ("check_run", lambda: installed(failed_check_run()), ("check_run", "check_suite", "id")),
            ("check_run", lambda: installed(failed_check_run()), ("check_run", "pull_requests", "0", "number")),
            ("workflow_run", lambda: installed(failed_workflow_run()), ("workflow_run", "id")),
            ("workflow_run", lambda: installed(failed_workflow_run()), ("workflow_run", "workflow_id")),
            ("installation", lambda: example("installation", "created"), ("installation", "id")),
        ]
    ]
    huge.append(Hostile("id-just-past-int64", "pull_request",
                        _json(pr_opened(number=2**63)), 400, says="$.pull_request.number"))
    huge.append(Hostile("negative-id-past-int64", "pull_request",
                        _json(pr_opened(number=-(2**63) - 1)), 400, says="$.pull_request.number"))
    no_installation = [
        Hostile(f"no-installation-{name}", event, _json(make()), 200, says="no installation")
        for name, event, make in [
            ("pull_request", "pull_request", lambda: example("pull_request", "opened")),
            ("pull_request-empty", "pull_request", lambda: {**pr_opened(), "installation": {}}),
            ("check_run", "check_run", failed_check_run),
            ("workflow_run", "workflow_run", failed_workflow_run),
            ("issue_comment", "issue_comment", pr_command_comment),
            ("pull_request_review_comment", "pull_request_review_comment", review_thread_command),
        ]
    ]
    content = [
        Hostile("content-type-text-plain", "pull_request", _json(pr_opened()), 415, "text/plain",
                says="application/json or application/x-www-form-urlencoded"),
        Hostile("content-type-multipart", "pull_request", _json(pr_opened()), 415, "multipart/form-data",
                says="application/x-www-form-urlencoded"),
        Hostile("form-without-payload", "pull_request", b"other=1", 400, FORM, says="payload"),
        Hostile("form-not-form", "pull_request", b"%%%&&&", 400, FORM, says="payload"),
        Hostile("form-not-utf8", "pull_request", b"payload=\xff\xfe", 400, FORM, says="payload"),
        Hostile("form-payload-not-json", "pull_request", _form("{not json"), 400, FORM),
        Hostile("form-payload-list", "pull_request", _form("[1, 2]"), 400, FORM),
        Hostile("json-not-utf8", "pull_request", b'{"action": "\xff\xfe"}', 400),
        Hostile("json-lone-surrogate", "pull_request", b'{"action": "\\ud800"}', 400),
        Hostile("json-list", "pull_request", b"[1, 2, 3]", 400),
        Hostile("json-string", "pull_request", b'"opened"', 400),
        Hostile("json-number", "pull_request", b"42", 400),
        Hostile("json-null", "pull_request", b"null", 400),
        Hostile("json-empty", "pull_request", b"", 400),
    ]
    wrong_types = [
        Hostile(f"wrong-type-{name}", event, _json(payload), 400, says=says)
        for name, event, payload, says in [
            ("number-string", "pull_request", pr_opened(number="x"), "$.pull_request.number"),
            ("number-float", "pull_request", pr_opened(number=1.5), "$.pull_request.number"),
            ("number-bool", "pull_request", pr_opened(number=True), "$.pull_request.number"),
            ("installation-int", "pull_request", {**pr_opened(), "installation": 5}, "$.installation"),
            ("installation-id-string", "pull_request", {**pr_opened(), "installation": {"id": "5"}},
             "$.installation.id"),
            ("repository-string", "pull_request", {**pr_opened(), "repository": "octo/repo"}, "$.repository"),
            ("action-int", "pull_request", {**pr_opened(), "action": 5}, "$.action"),
            ("pull-request-list", "pull_request", {**pr_opened(), "pull_request": []}, "$.pull_request"),
            ("labels-string", "pull_request", pr_opened(labels="bug"), "$.pull_request.labels"),
            ("head-sha-int", "pull_request", pr_opened(head={"sha": 5}), "$.pull_request.head.sha"),
            ("check-run-prs-object", "check_run",
             {**installed(failed_check_run()), "check_run": {"conclusion": "failure", "pull_requests": {}}},
             "$.check_run.pull_requests"),
            ("comment-body-list", "issue_comment",
             {**installed(pr_command_comment()), "comment": {"id": 1, "body": ["/review"]}}, "$.comment.body"),
            ("installation-repositories-strings", "installation",
             {**example("installation", "created"), "repositories": ["octo/repo"]}, "$.repositories[0]"),
        ]
    ]
    missing_fields = [
        Hostile("pull-request-without-repository", "pull_request",
                _json({k: v for k, v in pr_opened().items() if k != "repository"}), 400),
        Hostile("installation-without-id", "installation",
                _json({**example("installation", "created"), "installation": {}}), 400),
    ]
    return deep + huge + no_installation + content + wrong_types + missing_fields


HOSTILE = hostile_deliveries()

# Header values that are not UTF-8 (aiohttp hands them on as surrogates), sent as raw bytes.
BAD_HEADERS = {
    "delivery-id-not-utf8": (b"pull_request", b"abc\xff\xfe"),
    "delivery-id-latin1": (b"pull_request", "\u00e9-delivery".encode("latin-1")),
    "event-not-utf8": (b"pull_request\xff", b"a-delivery"),
}


async def raw_post(host: str, port: int, event: bytes, delivery_id: bytes) -> int:
    """A signed, routable delivery with these exact header bytes; the HTTP status it gets."""
    body = _json(pr_opened())
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nX-GitHub-Event: " + event + b"\r\nX-GitHub-Delivery: "
                 + delivery_id + b"\r\nX-Hub-Signature-256: " + sign(body).encode()
                 + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


def _headers(case: Hostile, delivery_id: str | None = None) -> dict:
    headers = delivery_headers(case.event, case.body, delivery_id=delivery_id)
    headers["Content-Type"] = case.content_type
    return headers


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
async def test_hostile_signed_delivery_gets_its_4xx_or_is_ignored_and_creates_nothing(
    webhook_client, store, case
):
    response = await webhook_client.post(WEBHOOK_PATH, data=case.body, headers=_headers(case))
    answer = await response.json()
    assert response.status == case.status, answer
    assert case.says in (answer.get("error") or answer.get("reason") or ""), answer
    if case.status == 200:
        assert answer["status"] == "ignored"
    assert await store.list_jobs() == []
    # the server still takes a good delivery afterwards
    good = _json(pr_opened())
    assert (await webhook_client.post(WEBHOOK_PATH, data=good, headers=delivery_headers("pull_request", good))
            ).status == 202


@pytest.mark.parametrize("name", BAD_HEADERS)
async def test_headers_that_are_not_utf8_get_400_and_break_neither_store_nor_metrics(webhook_client, store, name):
    event, delivery_id = BAD_HEADERS[name]
    assert await raw_post(webhook_client.host, webhook_client.port, event, delivery_id) == 400
    assert await store.list_jobs() == []
    assert (await webhook_client.get("/metrics")).status == 200


async def test_a_huge_id_does_not_fail_the_deliveries_committed_with_it(webhook_client, store):
    import asyncio

    good, bad = _json(pr_opened()), _json(pr_opened(number=HUGE))
    answers = await asyncio.gather(*(
        webhook_client.post(WEBHOOK_PATH, data=body, headers=delivery_headers("pull_request", body))
        for body in (good, bad, good)
    ))
    assert [a.status for a in answers] == [202, 400, 202]
    assert len(await store.list_jobs()) == 2


async def test_missing_installation_is_ignored_with_the_reason_logged(deliver, store, caplog):
    caplog.set_level(logging.DEBUG, logger="prmedic.server")
    response = await deliver("pull_request", example("pull_request", "opened"))
    assert response.status == 200
    assert "no installation" in (await response.json())["reason"]
    [record] = [r for r in caplog.records if r.levelno == logging.DEBUG and r.getMessage().startswith("ignored")]
    assert "no installation" in record.getMessage() and record.event == "pull_request"
    assert record.action == "opened" and "no installation" in record.reason
    assert await store.list_jobs() == []


async def test_accepted_delivery_is_logged_at_info_with_its_jobs(deliver, store, caplog):
    caplog.set_level(logging.INFO, logger="prmedic.server")
    payload = pr_opened()
    response = await deliver("pull_request", payload, delivery_id="logged-delivery")
    assert response.status == 202
    job_ids = (await response.json())["jobs"]
    [record] = [r for r in caplog.records if r.name == "prmedic.server" and r.levelno == logging.INFO]
    repo = payload["repository"]["full_name"]
    assert (record.event, record.action, record.repository, record.job_ids) == ("pull_request", "opened", repo,
                                                                                  job_ids)
    assert repo in record.getMessage() and str(job_ids[0]) in record.getMessage()


async def test_ignored_delivery_logs_nothing_at_info(deliver, caplog):
    caplog.set_level(logging.INFO, logger="prmedic.server")
    assert (await deliver("star", example("star"))).status == 200
    assert [r for r in caplog.records if r.name == "prmedic.server"] == []


async def test_prmedic_serve_answers_no_5xx_to_github_examples_and_hostile_input_and_keeps_serving(
    settings_env, github_server, managed_agents, tmp_path
):
    env = {**serve_env(settings_env, github_server, managed_agents), "PRMEDIC_LOG_LEVEL": "DEBUG"}
    answers: dict[str, int] = {}
    async with ServeProcess(env, tmp_path) as server:
        url = f"{server.url}{WEBHOOK_PATH}"

        async def post(name: str, body: bytes, headers: dict) -> None:
            async with server.http.post(url, data=body, headers=headers) as answer:
                answers[name] = answer.status

        for event, payloads in webhook_examples().items():
            for index, payload in enumerate(payloads):
                body = _json(payload)
                await post(f"{event}-{index}", body, delivery_headers(event, body))
        await post("accepted", _json(pr_opened()), delivery_headers("pull_request", _json(pr_opened()),
                                                                     delivery_id="serve-accepted"))
        for case in HOSTILE:
            await post(case.name, case.body, _headers(case))
        for name, (event, delivery_id) in BAD_HEADERS.items():
            answers[name] = await raw_post("127.0.0.1", server.port, event, delivery_id)
        async with server.http.get(f"{server.url}/metrics") as metrics:
            assert metrics.status == 200
        async with server.http.get(f"{server.url}/healthz") as health:
            assert health.status == 200
    assert {name: status for name, status in answers.items() if status >= 500} == {}
    assert {case.name: answers[case.name] for case in HOSTILE} == {case.name: case.status for case in HOSTILE}
    assert {name: answers[name] for name in BAD_HEADERS} == dict.fromkeys(BAD_HEADERS, 400)
    logged = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    [accepted] = [e for e in logged if e.get("delivery_id") == "serve-accepted" and e["level"] == "info"
                  and e["logger"] == "prmedic.server"]
    assert accepted["event"] == "pull_request" and accepted["action"] == "opened"
    assert accepted["repository"] and len(accepted["job_ids"]) == 1
    assert any(e["level"] == "debug" and "no installation" in e.get("reason", "") for e in logged)
    assert not [e for e in logged if e["logger"].startswith("aiohttp") or
                (e["logger"] == "prmedic.server" and e["level"] == "error")]
