"""What a pipeline gets (`JobContext`: its job and the process's services, typed) and what one
attempt of it carries from step to step (`PipelineRun`: the installation client and the
repository's config)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gidgethub.abc import GitHubAPI

from app.agents.mcp import repository_servers
from app.errors import PermanentError
from app.repo_config import LoadedConfig, RepoConfig, fetch_repo_config
from app.store import Job, Store

if TYPE_CHECKING:
    import anthropic

    from app.pipelines.progress import ThrottledProgress

    from app.github import GitHubApp
    from app.metrics import Metrics
    from app.sessions import SessionRuntime
    from app.settings import Settings

Pipeline = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]


class CommandChannel(Protocol):
    """Where a command job shows its progress and answer (the command's answer comment)."""

    @property
    def progress(self) -> ThrottledProgress: ...

    async def reply(self, body: str) -> str: ...


@dataclass
class JobContext:
    """What a pipeline gets: its job and the services it may use (absent ones are None)."""

    job: Job
    store: Store
    github: GitHubApp | None = None
    settings: Settings | None = None
    sessions: SessionRuntime | None = None
    anthropic: anthropic.AsyncAnthropic | None = None
    metrics: Metrics | None = None
    bot_login: str | None = None  # "<app slug>[bot]", when known
    # A command's own channel (`commands.feedback.CommandAnswer`): the agents' progress shows there
    # too, and `reply` writes the command's answer there instead of the PR's reply comment.
    command_answer: CommandChannel | None = None
    # The repository config this attempt already read (`prepare`): a command that runs the review
    # or fix pipeline hands its context on, and the config is not fetched twice.
    repo_config: LoadedConfig | None = None
    # `prmedic run --dry-run`: GitHub's answers to writes are made up here, so a commit prmedic "made"
    # does not exist, and no verifier session can check it out.
    simulated_writes: bool = False
    # False for `prmedic run` and the Action: they keep no store after the run, so a fix waiting for a
    # person's approval (`fix.approval`) could never be applied; their fixes go out as pull requests.
    can_wait_for_approval: bool = True
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prmedic.pipeline"))


@dataclass
class PipelineRun:
    """One attempt of one job, with what every step needs."""

    ctx: JobContext
    gh: GitHubAPI
    loaded: LoadedConfig
    check_run_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    check_opened: float | None = None

    @property
    def job(self) -> Job:
        return self.ctx.job

    @property
    def repo(self) -> str:
        return self.ctx.job.repo

    @property
    def config(self) -> RepoConfig:
        return self.loaded.config

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"

    async def github(self) -> GitHubAPI:
        """A fresh installation client (its token is cached, and refreshed when near expiry)."""
        assert self.ctx.github is not None and self.job.installation_id is not None  # `prepare` checked
        return await self.ctx.github.installation_client(self.job.installation_id)


def default_branch(ctx: JobContext) -> str:
    return (ctx.job.payload.get("repository") or {}).get("default_branch") or "main"


async def prepare(ctx: JobContext) -> PipelineRun:
    """The installation client and the repository config from the default branch (read once per
    attempt: kept on the context for a pipeline it hands on); the pipeline
    opens its check run (`checks.open_check_run`) once it knows it will do the work."""
    if ctx.github is None or ctx.job.installation_id is None:
        raise PermanentError(f"job {ctx.job.id} has no GitHub installation to act through")
    gh = await ctx.github.installation_client(ctx.job.installation_id)
    if ctx.repo_config is None:
        ctx.repo_config = await fetch_repo_config(gh, ctx.job.repo, default_branch(ctx))
        # `mcp:` names the operator did not configure are config problems like any other.
        ctx.repo_config.errors += repository_servers(ctx.repo_config.config.mcp,
                                                     getattr(ctx.settings, "mcp_servers", ()))[1]
    return PipelineRun(ctx=ctx, gh=gh, loaded=ctx.repo_config)


def config_problems_markdown(errors: list[str]) -> str:
    if not errors:
        return ""
    lines = "\n".join(f"- {error}" for error in errors)
    return (f"**`.github/prmedic.yml` has problems; the defaults are used until it is fixed:**\n\n{lines}\n")
