from app.store.base import Store, StoreUnavailable, open_store
from app.store.models import (
    Delivery,
    Installation,
    InstallationChange,
    Job,
    JobKind,
    JobState,
    NewJob,
    RecordResult,
)

__all__ = [
    "Delivery", "Installation", "InstallationChange", "Job", "JobKind", "JobState", "NewJob",
    "RecordResult", "Store", "StoreUnavailable", "open_store",
]
