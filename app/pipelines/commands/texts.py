"""What the commands answer, in words (pure)."""

from __future__ import annotations

import yaml

from app.pipelines.commands.permissions import AUTHOR_MAY, needed_permission
from app.pipelines.context import config_problems_markdown
from app.repo_config import CONFIG_PATH, LoadedConfig, RepoConfig

WHAT = {
    "review": ("`/review` · `/review full` · `/review deep` / `light`",
               ("reviews the PR head now (config skips do not apply); a commit already reviewed is reviewed again "
                "only with `full`, or at another depth with `deep` / `light` / `standard`")),
    "fix": ("`/fix [instructions]`", ("repairs the failing checks on the PR head, or with instructions makes the "
                                      "change they ask for; proposed as the repository's `fix.delivery` says "
                                      "(a fork gets suggestions)")),
    "ask": ("`/ask QUESTION`", "answers a question about the PR, grounded in the code"),
    "test": ("`/test [what]`", ("writes tests for the PR's changes (or for `what`), runs them and proposes them "
                                "like a fix, with the run's result")),
    "describe": ("`/describe`", "writes the PR description from the change"),
    "apply": ("`/apply` · `/apply pr`", ("applies the fix waiting for approval (`fix.approval`): pushes it onto the "
                                       "PR's branch, or with `pr` opens it as a pull request; the same as the "
                                       "buttons on the `prmedic fix` check run")),
    "discard": ("`/discard`", "discards the fix waiting for approval: nothing is applied"),
    "stop": ("`/stop`", "stops prmedic's running and queued jobs on this PR"),
    "pause": ("`/pause`", "turns automatic reviews off for this PR (commands still work)"),
    "resume": ("`/resume`", "turns automatic reviews back on for this PR"),
    "config": ("`/config`", f"shows the effective `{CONFIG_PATH}` and its problems"),
    "help": ("`/help`", "this list"),
}
# Recognised commands whose work needs an agent session: not in this version yet.
NOT_YET: tuple[str, ...] = ()


def not_available(name: str) -> str:
    return f"`/{name}` is recognised but not available in this version yet."


def refusal(user: str | None, name: str, needed: str, have: str) -> str:
    return (f"@{user} `/{name}` needs **{needed}** permission on this repository (you have {have}); "
            "prmedic did not run it.")


def disabled() -> str:
    return (f"Commands are turned off in this repository (`commands.enabled: false` in `{CONFIG_PATH}`); "
            "prmedic did not run this one.")


def help_text(config: RepoConfig, slug: str | None, *, unknown: str | None = None) -> str:
    parts = []
    if unknown is not None:
        parts.append(f"Unknown command `/{unknown}`." if unknown else "That mention names no command.")
    commands = config.commands
    if not commands.enabled:
        parts.append(f"**Commands are turned off in this repository** (`commands.enabled: false` in "
                     f"`{CONFIG_PATH}`).")
    rows = ["| command | what it does | who may run it here |", "|---|---|---|"]
    for name, (usage, what) in WHAT.items():
        needed = needed_permission(commands, name)
        who = f"**{needed}** permission" + (" or the PR's author" if name in AUTHOR_MAY else "")
        if name in NOT_YET:
            what += " — *not available in this version yet*"
        rows.append(f"| {usage} | {what} | {who} |")
    parts.append("\n".join(rows))
    where = "Write a command at the start of a line of a PR comment or review comment"
    parts.append(where + (f", or mention `@{slug} <command>` anywhere." if slug else "."))
    return "\n\n".join(parts)


def config_text(loaded: LoadedConfig) -> str:
    source = (f"from `{CONFIG_PATH}` on the default branch" if loaded.found
              else f"the defaults: this repository has no `{CONFIG_PATH}` on its default branch")
    dump = yaml.safe_dump(loaded.config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    parts = [f"The effective configuration ({source}):", f"```yaml\n{dump}```"]
    parts.append(config_problems_markdown(loaded.errors).strip() if loaded.errors else "No problems found.")
    return "\n\n".join(parts)
