from app.store.base import Store, StoreUnavailable, open_store
from app.store.models import (
    Delivery,
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
    "Delivery", "Installation", "InstallationChange", "Job", "JobKind", "JobState", "NewJob", "PullReviewState",
    "RecordResult", "SessionRecord", "Store", "ToolCallRecord", "StoreUnavailable", "open_store",
]
