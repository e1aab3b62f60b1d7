"""`prmedic action`: the command `action.yml` runs as a workflow step (README, "GitHub Action")."""

from __future__ import annotations

import argparse
import os
import sys


def cmd_action(args: argparse.Namespace) -> int:
    from app.action.run import main
    from app.logs import configure_logging

    # The step's log is for people: the progress lines on stdout, warnings and worse from the logs.
    configure_logging("text", os.environ.get("PRMEDIC_LOG_LEVEL", "WARNING").upper())
    return main(os.environ, sys.stdout)


def add_action_command(sub: argparse._SubParsersAction) -> None:
    action = sub.add_parser(
        "action", help="run as a GitHub Actions step: the workflow's event becomes one job, run inline",
        description="Reads the workflow run's event (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH), the repository and "
                    "GitHub's addresses (GITHUB_REPOSITORY, GITHUB_API_URL, GITHUB_SERVER_URL) and the action's "
                    "inputs (INPUT_GITHUB_TOKEN, INPUT_MODE, INPUT_BUDGET_USD, INPUT_FAIL_ON, INPUT_CONFIG, "
                    "INPUT_TRIGGER_PHRASE, INPUT_APP_ID, INPUT_APP_PRIVATE_KEY; ANTHROPIC_API_KEY), runs the job "
                    "the event asks for, and writes the step's outputs (GITHUB_OUTPUT) and job summary "
                    "(GITHUB_STEP_SUMMARY). A .env file is not read: the workspace may hold a checkout.")
    # `no_dotenv`: the working directory is the workflow's workspace, perhaps a checkout of the pull
    # request itself; its `.env` must not point prmedic (or the Anthropic SDK) anywhere.
    action.set_defaults(func=cmd_action, no_dotenv=True)
