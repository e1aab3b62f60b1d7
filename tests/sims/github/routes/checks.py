"""Check runs and their annotations."""

from __future__ import annotations

import dataclasses
import re

from ..common import HTML_BASE, HTTPError, not_found, parse_iso, validation_failed
from ..records import CheckRun
from ..routing import Ctx, paginate, route


def _check_annotations(annotations: list[dict]) -> None:
    for i, a in enumerate(annotations):
        for k in ("path", "start_line", "end_line", "annotation_level", "message"):
            if a.get(k) is None:
                raise validation_failed("CheckRun", f"output.annotations[{i}].{k}", "missing_field")
        if a["end_line"] < a["start_line"]:
            raise validation_failed("CheckRun", f"output.annotations[{i}].end_line", "invalid")
        if ("start_column" in a or "end_column" in a) and a["start_line"] != a["end_line"]:
            raise HTTPError(422, "Invalid request.\n\nstart_column and end_column are only allowed when "
                                 "start_line and end_line are equal.")


ACTION_LIMITS = {"label": 20, "description": 40, "identifier": 20}  # GitHub's maximum length of each field


def _check_actions(actions: object) -> list[dict]:
    """GitHub's rules for a check run's buttons: at most 3, each with a label (≤ 20 characters), a
    description (≤ 40) and an identifier (≤ 20)."""
    if not isinstance(actions, list):
        raise validation_failed("CheckRun", "actions", "invalid")
    if len(actions) > 3:
        raise HTTPError(422, "Invalid request.\n\nNo more than 3 actions are allowed.")
    for i, action in enumerate(actions):
        for key, limit in ACTION_LIMITS.items():
            value = action.get(key) if isinstance(action, dict) else None
            if not isinstance(value, str) or not value:
                raise validation_failed("CheckRun", f"actions[{i}].{key}", "missing_field")
            if len(value) > limit:
                raise HTTPError(422, f"Invalid request.\n\n{value!r} is too long (maximum is {limit} characters) "
                                     f"for actions[{i}].{key}.")
    return actions


def _check_details_url(url: object) -> None:
    # GitHub refuses a details_url that is not a web address. It does not require one with an
    # `action_required` conclusion (it shows the App's homepage instead), so neither does this.
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise validation_failed("CheckRun", "details_url", "custom", "details_url must use the http or https scheme")


def _apply_check_fields(ctx: Ctx, run: CheckRun, body: dict) -> None:
    now = ctx.state.now()
    if "details_url" in body:
        _check_details_url(body["details_url"])
    for k in ("name", "details_url", "external_id"):
        if k in body:
            setattr(run, k, body[k])
    if "started_at" in body:
        run.started_at = parse_iso(body["started_at"])[0]
    if "status" in body:
        run.status = body["status"]
    if body.get("conclusion"):
        run.conclusion = body["conclusion"]
        run.status = "completed"
    if run.status == "completed" and not run.conclusion:
        raise HTTPError(422, "Invalid request.\n\nconclusion is required when status is completed.")
    if "completed_at" in body:
        run.completed_at = parse_iso(body["completed_at"])[0]
    elif run.status == "completed" and run.completed_at is None:
        run.completed_at = now
    if run.status == "in_progress" and run.started_at is None:
        run.started_at = now
    if "actions" in body:
        run.actions = _check_actions(body["actions"])
    out = body.get("output")
    if out is not None:
        if not out.get("title") or not out.get("summary"):
            raise validation_failed("CheckRun", "output.title" if not out.get("title") else "output.summary",
                                    "missing_field")
        anns = out.get("annotations") or []
        _check_annotations(anns)
        for k in ("title", "summary", "text"):
            if k in out:
                run.output[k] = out[k]
        run.annotations.extend(dict(a, blob_href=f"{HTML_BASE}/{run.repo.full_name}/blob/{run.head_sha}/{a['path']}")
                               for a in anns)


@route("POST", "/repos/{owner}/{repo}/check-runs", perms=[("checks", "write")])
def create_check_run(ctx: Ctx):
    s = ctx.state
    body = ctx.body
    sha = body["head_sha"]
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(422, f"No commit found for SHA: {sha}")
    suite = s.check_suites.setdefault((ctx.repo.key, sha), s.next_id("check_suite", 7000000))
    run = CheckRun(s.next_id("check_run", 6000000), ctx.repo, body["name"], sha, "queued", None, None, None,
                   None, None, {"title": None, "summary": None, "text": None}, [], [], suite, s.app_id)
    _apply_check_fields(ctx, run, body)  # before storing: a refused request leaves nothing behind
    if run.started_at is None:
        run.started_at = s.now()
    s.check_runs[run.id] = run
    return 201, ctx.render.check_run(run)


def _check_run_or_404(ctx: Ctx) -> CheckRun:
    run = ctx.state.check_runs.get(int(ctx.params["check_run_id"]))
    if run is None or run.repo is not ctx.repo:
        raise not_found()
    return run


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "read")])
def get_check_run(ctx: Ctx):
    return 200, ctx.render.check_run(_check_run_or_404(ctx))


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "write")])
def update_check_run(ctx: Ctx):
    run = _check_run_or_404(ctx)
    if run.app_id != ctx.state.app_id:
        raise HTTPError(403, "Invalid app_id `%d` - check run can only be modified by the GitHub App that "
                             "created it." % ctx.state.app_id)
    trial = dataclasses.replace(run, output=dict(run.output), annotations=list(run.annotations))
    _apply_check_fields(ctx, trial, ctx.body or {})
    ctx.state.check_runs[run.id] = trial
    return 200, ctx.render.check_run(trial)


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations", perms=[("checks", "read")])
def list_annotations(ctx: Ctx):
    run = _check_run_or_404(ctx)
    chunk, headers = paginate(ctx, run.annotations)
    return 200, [{"path": a["path"], "start_line": a["start_line"], "end_line": a["end_line"],
                  "start_column": a.get("start_column"), "end_column": a.get("end_column"),
                  "annotation_level": a["annotation_level"], "title": a.get("title"), "message": a["message"],
                  "raw_details": a.get("raw_details"), "blob_href": a["blob_href"]} for a in chunk], headers


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", perms=[("checks", "read")])
def check_runs_for_ref(ctx: Ctx):
    s = ctx.state
    sha = s.resolve(ctx.repo, ctx.params["ref"])
    if sha is None:
        raise HTTPError(422, f"No commit found for SHA: {ctx.params['ref']}")
    runs = sorted(s.check_runs_for(ctx.repo, sha), key=lambda r: r.id, reverse=True)
    q = ctx.query
    if q.get("check_name"):
        runs = [r for r in runs if r.name == q["check_name"]]
    if q.get("status"):
        runs = [r for r in runs if r.status == q["status"]]
    if q.get("app_id"):
        runs = [r for r in runs if str(r.app_id) == q["app_id"]]
    if q.get("filter", "latest") == "latest":
        seen, latest = set(), []
        for r in runs:
            if (r.name, r.app_id) not in seen:
                seen.add((r.name, r.app_id))
                latest.append(r)
        runs = latest
    chunk, headers = paginate(ctx, runs)
    return 200, {"total_count": len(runs), "check_runs": [ctx.render.check_run(r) for r in chunk]}, headers
