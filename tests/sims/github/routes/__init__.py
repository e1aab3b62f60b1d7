"""The route handlers, one module per area of the API.

Importing this package registers every handler in :data:`..routing.ROUTES`, in this order (the first
matching route wins).
"""

from . import apps, repos, pulls, reviews, checks, commits, actions, comments, gitdata  # noqa: F401
from . import manifests  # noqa: F401
