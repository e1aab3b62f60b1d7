"""Slash-commands: the `command` job's pipeline (README, "Slash-commands")."""

from app.pipelines.commands.pipeline import make_command_pipeline

__all__ = ["make_command_pipeline"]
