"""Database access: open any SQLAlchemy URL, create/check the schema, write runs.

Every write commits at once, so a run killed at any point leaves a consistent database:
the run row says how far it got and every example row written is complete. SQLite files
use WAL journaling and a busy timeout so concurrent runs can share one file.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import pandas as pd
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from robustbench_nlp.errors import ConfigError

from .models import SCHEMA_VERSION, Base, Example, Metrics, Run, SchemaInfo, utcnow

DEFAULT_DB = "sqlite:///rbnlp.db"


def default_url() -> str:
    """``$RBNLP_DB`` or ``sqlite:///rbnlp.db`` (in the working directory, like ``mlruns/``)."""
    return os.environ.get("RBNLP_DB") or DEFAULT_DB


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    """A results database.

    Args:
        url: any SQLAlchemy URL; a bare file path is taken as SQLite.

    Raises:
        ConfigError: malformed or unreachable URL, or a database of another schema version.
    """

    def __init__(self, url: str | None = None) -> None:
        url = url or default_url()
        if "://" not in url:
            url = f"sqlite:///{url}"
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"malformed database URL {url!r}") from None
        self.url = url
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (ArgumentError, ImportError) as e:
            raise ConfigError(f"cannot use database URL {parsed.render_as_string()!r}: {e}") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._init_schema()

    def _init_schema(self) -> None:
        safe = make_url(self.url).render_as_string()
        try:
            with self.engine.begin() as conn:
                Base.metadata.create_all(conn)
        except OperationalError as e:
            msg = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise ConfigError(f"cannot open database {safe!r}: {msg}") from None
        with self.session() as s:
            info = s.get(SchemaInfo, 1)
            if info is None:
                s.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
            elif info.version != SCHEMA_VERSION:
                raise ConfigError(f"database {safe!r} has schema version {info.version}, this "
                                  f"rbnlp needs {SCHEMA_VERSION}; use a new --db file")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error. SQLite writers wait
        for each other through the busy timeout (30 s) instead of failing."""
        s = self._session()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, **fields) -> str:
        """Insert a run (``status='training'`` unless given) and return its id."""
        run_id = fields.pop("id", None) or uuid.uuid4().hex[:12]
        fields.setdefault("status", "training")
        with self.session() as s:
            s.add(Run(id=run_id, **fields))
        return run_id

    def update_run(self, run_id: str, **fields) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            for k, v in fields.items():
                setattr(run, k, v)
            run.updated_at = utcnow()

    def get_run(self, run_id: str) -> Run:
        """The run ``run_id`` (detached, metrics loaded).

        Raises:
            ConfigError: no such run.
        """
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise ConfigError(f"no run with id {run_id!r} in {make_url(self.url).render_as_string()}")
            _ = run.metrics
            return run

    def add_example(self, run_id: str, r: dict) -> None:
        """Insert one attacked example (an :class:`~attacks.base.ExampleResult` dict), committed."""
        with self.session() as s:
            s.add(Example(run_id=run_id, idx=r["index"], original=list(r["original"]),
                          adversarial=list(r["adversarial"]),
                          attacked_segment=r["attacked_segment"], gold=r["gold"],
                          pred_before=r["pred_before"], pred_after=r["pred_after"],
                          result=r["result"], queries=r["queries"], num_words=r["num_words"],
                          perturbed_words=r["perturbed_words"], extra=r.get("extra") or {}))

    def examples(self, run_id: str) -> list[dict]:
        """All example rows of a run, in attack order, as dicts with ExampleResult keys."""
        with self.session() as s:
            rows = s.scalars(select(Example).where(Example.run_id == run_id)
                             .order_by(Example.id)).all()
            return [{"index": e.idx, "original": tuple(e.original),
                     "adversarial": tuple(e.adversarial), "attacked_segment": e.attacked_segment,
                     "gold": e.gold, "pred_before": e.pred_before, "pred_after": e.pred_after,
                     "result": e.result, "queries": e.queries, "num_words": e.num_words,
                     "perturbed_words": e.perturbed_words, "extra": e.extra} for e in rows]

    def save_metrics(self, run_id: str, **values) -> None:
        """Insert or replace the metrics row of ``run_id``."""
        with self.session() as s:
            m = s.get(Metrics, run_id)
            if m is None:
                m = Metrics(run_id=run_id)
                s.add(m)
            for k, v in values.items():
                setattr(m, k, v)

    def find_run(self, **fields) -> Run | None:
        """The most recent unfinished run matching ``fields`` (for re-running a command)."""
        with self.session() as s:
            q = select(Run).where(Run.status != "finished")
            for k, v in fields.items():
                q = q.where(getattr(Run, k) == v)
            return s.scalars(q.order_by(Run.created_at.desc())).first()

    def runs_frame(self) -> pd.DataFrame:
        """All runs joined with their metrics, one row per run."""
        with self.session() as s:
            rows = s.execute(select(Run, Metrics).outerjoin(Metrics, Metrics.run_id == Run.id)).all()
        recs = []
        for run, m in rows:
            rec = {c.name: getattr(run, c.name) for c in Run.__table__.columns}
            if m is not None:
                rec.update({c.name: getattr(m, c.name) for c in Metrics.__table__.columns
                            if c.name != "run_id"})
            recs.append(rec)
        return pd.DataFrame(recs)


def open_store(url: str | None = None) -> Store:
    """Open (creating if needed) the database at ``url`` (default :func:`default_url`)."""
    try:
        return Store(url)
    except SQLAlchemyError as e:  # pragma: no cover - driver-specific failures
        raise ConfigError(f"cannot open database {url!r}: {str(e).splitlines()[0]}") from None
