"""Results database (SQLAlchemy 2): ORM models and the :class:`Store` that writes runs."""

from .models import Example, Metrics, Run  # noqa: F401
from .store import Store, default_url, open_store  # noqa: F401
