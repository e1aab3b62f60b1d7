"""What routing produces for one delivery, and the facts it needs to decide."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.store.models import InstallationChange, NewJob


@dataclass(slots=True)
class Intake:
    """Handed to every handler: the handlers append what the delivery should create."""

    app_id: int
    bot_login: str | None = None
    jobs: list[NewJob] = field(default_factory=list)
    installations: list[InstallationChange] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def ignore(self, reason: str) -> None:
        self.ignored.append(reason)

    def add_job(self, job: NewJob) -> None:
        """Queue `job`, unless the payload names no installation for the job to act through."""
        if job.installation_id is None:
            self.ignore(f"no installation in the payload: a {job.kind.value} job could not act on {job.repo}")
            return
        self.jobs.append(job)

    @property
    def records_anything(self) -> bool:
        return bool(self.jobs or self.installations)
