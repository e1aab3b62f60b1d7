"""Pipelines turn a job into GitHub writes; each job kind has at most one, and the table of them
is wired where the process is (`app.runtime.PIPELINES`).

One folder per feature (`review/`, `fix/`); what they share stays here: the job context
(`context`), the check run's lifecycle (`checks`), the agent session (`session`), diffs (`diff`)
and Markdown helpers (`markdown`).
"""

from app.pipelines.context import JobContext, Pipeline, PipelineRun

__all__ = ["JobContext", "Pipeline", "PipelineRun"]
