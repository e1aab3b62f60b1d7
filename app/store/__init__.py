from app.store.base import Store, StoreUnavailable, open_store
from app.store.models import (
    Delivery,
    FixProposal,
    Installation,
    InstallationChange,
    Job,
    JobKind,
    JobState,
    NewJob,
    PullReviewState,
    RecordResult,
    SessionRecord,
    ToolCallRecord,
)

__all__ = [
    "Delivery", "FixProposal", "Installation", "InstallationChange", "Job", "JobKind", "JobState", "NewJob",
    "PullReviewState",
    "RecordResult", "SessionRecord", "Store", "ToolCallRecord", "StoreUnavailable", "open_store",
]
