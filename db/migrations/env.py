"""Alembic environment of the results database.

:class:`robustbench_nlp.db.Store` runs the migrations itself when it opens a database (it
passes its open connection in ``config.attributes["connection"]``), so users never call
Alembic. Developers changing :mod:`robustbench_nlp.db.models` add a revision with::

    alembic -c db/migrations/alembic.ini revision --autogenerate -m "what changed"

against a database at the current head (``sqlalchemy.url`` in ``alembic.ini`` or
``$RBNLP_DB``), review the generated file, and keep ``tests/test_reliability.py``'s
"models match migrations" check green.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from robustbench_nlp.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return os.environ.get("RBNLP_DB") or config.get_main_option("sqlalchemy.url") \
        or "sqlite:///rbnlp.db"


def _configure_and_run(**kwargs) -> None:
    # batch mode lets ALTER-style operations work on SQLite (copy-and-move tables)
    context.configure(target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True, **kwargs)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # ``alembic upgrade --sql``: print the SQL
    _configure_and_run(url=_url(), literal_binds=True)
else:
    connection = config.attributes.get("connection")
    if connection is not None:  # opened by Store
        _configure_and_run(connection=connection)
    else:
        with create_engine(_url()).connect() as conn:
            _configure_and_run(connection=conn)
            conn.commit()
