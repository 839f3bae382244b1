"""Database access: open any SQLAlchemy URL, create or migrate the schema, write runs.

Every write commits at once, so a run killed at any point leaves a consistent database:
the run row says how far it got and every example row written is complete. SQLite files
use WAL journaling and a 30 s busy timeout, and writes that still meet a locked database are
retried, so concurrent runs can share one file.

The schema is versioned with Alembic (``db/migrations``): opening a database creates it at the
head revision, upgrades an older one (including a database written before Alembic was
adopted, revision ``0001``), and refuses a revision this version of rbnlp does not know.
"""

from __future__ import annotations

import difflib
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pandas as pd
from sqlalchemy import create_engine, event, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from robustbench_nlp.errors import ConfigError

from .models import Base, Example, Metrics, Run, utcnow

DEFAULT_DB = "sqlite:///rbnlp.db"
#: Alembic scripts (env.py, versions/)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the first revision; a database without ``alembic_version`` but with the pre-Alembic
#: ``rbnlp_schema`` table (version 1) is at this revision
LEGACY_REVISION = "0001"
#: SQL dialect names offered in "did you mean" hints for unknown URL schemes
KNOWN_DIALECTS = ("sqlite", "postgresql", "postgresql+psycopg", "mysql", "mysql+pymysql",
                  "mariadb", "mssql", "oracle")
#: attempts of a write that meets a locked / busy database (after the busy timeout)
WRITE_ATTEMPTS = 5

T = TypeVar("T")


def default_url() -> str:
    """``$RBNLP_DB`` or ``sqlite:///rbnlp.db`` (in the working directory, like ``mlruns/``)."""
    return os.environ.get("RBNLP_DB") or DEFAULT_DB


#: file suffixes that make a bare ``--db`` path a SQLite shorthand (``runs.db`` →
#: ``sqlite:///runs.db``)
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def database_url(url: str | None = None) -> str:
    """``url`` (default :func:`default_url`) as a SQLAlchemy URL: a URL stays as it is, a
    file path ending in :data:`SQLITE_SUFFIXES` becomes ``sqlite:///<path>``.

    Raises:
        ConfigError: anything else (``--db notaurl``), naming the expected forms.
    """
    url = url or default_url()
    if "://" in url:
        return url
    if url.lower().endswith(SQLITE_SUFFIXES):
        return f"sqlite:///{url}"
    raise ConfigError(f"database {url!r} is not a SQLAlchemy URL: expected "
                      "dialect[+driver]://... (e.g. sqlite:///rbnlp.db or "
                      "postgresql+psycopg://user@host/db) or a SQLite file path ending in "
                      f"{', '.join(SQLITE_SUFFIXES)}")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    msg = str(orig if orig is not None else e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__


def _is_lock_error(e: BaseException) -> bool:
    msg = str(getattr(e, "orig", e)).lower()
    return isinstance(e, OperationalError) and ("locked" in msg or "busy" in msg)


def _retry_locked(fn: Callable[[], T]) -> T:
    """``fn()``, called again with back-off (0.2, 0.4, ... s; :data:`WRITE_ATTEMPTS` calls in
    all) while it raises a "database is locked/busy" :class:`OperationalError`.

    Raises:
        OperationalError: the last lock error, or any other database error at once.
    """
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return fn()
        except OperationalError as e:
            if not _is_lock_error(e) or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _migration_config(connection: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The Alembic head revision: the schema version this rbnlp writes."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_migration_config()).get_current_head()


def current_owner() -> tuple[str, int]:
    """``(host name, pid)`` of this process, recorded on the runs it works on."""
    return socket.gethostname(), os.getpid()


def owner_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process ``pid`` on ``host`` may still be working on a run.

    Only processes on this host can be checked; a run owned by another host counts as alive
    (so it is never taken over implicitly). This process itself counts as not alive (its
    earlier attempt has returned).
    """
    if not pid or not host:
        return False
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:  # pragma: no cover - e.g. Windows without that pid
        return False
    return True


class Store:
    """A results database.

    Args:
        url: any SQLAlchemy URL, or a SQLite file path ending in ``.db``, ``.sqlite`` or
            ``.sqlite3`` (:func:`database_url`).

    Raises:
        ConfigError: not a URL (:func:`database_url`), malformed, unsupported or
            unreachable URL, missing driver, or a
            database whose schema revision this rbnlp does not know.
    """

    def __init__(self, url: str | None = None) -> None:
        url = database_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"malformed database URL {url!r} (expected e.g. "
                              "sqlite:///rbnlp.db or postgresql+psycopg://user@host/db)") from None
        self.url = url
        self.safe_url = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            if backend == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except ImportError as e:
            hint = (" (pip install -e \".[postgres]\" and use a postgresql+psycopg:// URL)"
                    if backend == "postgresql" else "")
            raise ConfigError(f"cannot use database URL {self.safe_url!r}: its driver is not "
                              f"installed ({e}){hint}") from None
        except ArgumentError as e:
            close = difflib.get_close_matches(parsed.drivername, KNOWN_DIALECTS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}://...?" if close else ""
            raise ConfigError(f"cannot use database URL {self.safe_url!r}: "
                              f"{_first_line(e)}{hint}") from None
        self.is_sqlite = backend == "sqlite"
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        try:
            # SQLite can answer "database is locked" at once (without the busy timeout) while
            # another process switches a fresh file to WAL or creates the schema
            _retry_locked(self._init_schema)
        except ConfigError:
            raise
        except (OperationalError, DBAPIError, ValueError, OSError) as e:
            raise ConfigError(f"cannot open database {self.safe_url!r}: {_first_line(e)}") from None

    # -- schema -------------------------------------------------------------------------
    def schema_revision(self) -> str | None:
        """The database's Alembic revision (``None`` when it has none)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _schema_state(self, conn: Connection) -> tuple[str, str | None]:
        """``(state, revision)`` with state one of ``current``, ``old``, ``empty``,
        ``legacy`` (pre-Alembic, revision 0001); refuses anything else.

        Raises:
            ConfigError: an unknown revision, an unknown pre-Alembic version, or rbnlp-like
                tables without any version.
        """
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        script = ScriptDirectory.from_config(_migration_config())
        head = script.get_current_head()
        tables = set(inspect(conn).get_table_names())
        rev = MigrationContext.configure(conn).get_current_revision() \
            if "alembic_version" in tables else None
        if rev is not None:
            if rev == head:
                return "current", rev
            try:
                known = script.get_revision(rev) is not None
            except CommandError:
                known = False
            if not known:
                raise ConfigError(
                    f"database {self.safe_url!r} has schema revision {rev!r}, which this rbnlp "
                    f"does not know (it writes revision {head!r}; the database was probably "
                    "written by a newer rbnlp): upgrade robustbench_nlp or use another --db")
            return "old", rev
        if "rbnlp_schema" in tables:
            version = conn.execute(text("SELECT version FROM rbnlp_schema WHERE id = 1")).scalar()
            if version != 1:
                raise ConfigError(
                    f"database {self.safe_url!r} has pre-Alembic schema version {version!r}, "
                    "which no rbnlp release wrote; use another --db")
            return "legacy", LEGACY_REVISION
        ours = {t.name for t in Base.metadata.sorted_tables}
        if tables & ours:
            raise ConfigError(
                f"database {self.safe_url!r} has table(s) {', '.join(sorted(tables & ours))} but "
                "no rbnlp schema version (alembic_version): not an rbnlp database; use another "
                "--db")
        return "empty", None

    def _init_schema(self) -> None:
        with self.engine.connect() as conn:
            state, _ = self._schema_state(conn)
        if state == "current":
            return
        from alembic import command

        with self.engine.connect() as conn:
            # serialise schema changes between processes opening the database at once
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727262)"))
            state, rev = self._schema_state(conn)  # another process may have done it
            cfg = _migration_config(conn)
            if state == "legacy":
                command.stamp(cfg, LEGACY_REVISION)
            if state != "current":
                command.upgrade(cfg, "head")
            conn.commit()

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

    def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in its own committed transaction, retrying (with back-off)
        when the database is still locked after the busy timeout."""
        def once() -> T:
            with self.session() as s:
                return fn(s)

        return _retry_locked(once)

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, **fields) -> str:
        """Insert a run (``status='training'`` unless given, owned by this process unless
        ``host``/``pid`` are given) and return its id."""
        run_id = fields.pop("id", None) or uuid.uuid4().hex[:12]
        fields.setdefault("status", "training")
        host, pid = current_owner()
        fields.setdefault("host", host)
        fields.setdefault("pid", pid)
        self._write(lambda s: s.add(Run(id=run_id, **fields)))
        return run_id

    def update_run(self, run_id: str, **fields) -> None:
        """Set ``fields`` on run ``run_id`` (and ``updated_at``), committed."""
        def fn(s: Session) -> None:
            run = s.get(Run, run_id)
            for k, v in fields.items():
                setattr(run, k, v)
            run.updated_at = utcnow()

        self._write(fn)

    def claim_run(self, run_id: str) -> bool:
        """Make this process the owner of ``run_id`` unless a live process owns it.

        The owner is swapped with a compare-and-set ``UPDATE``, so of two processes claiming
        the same run at once exactly one succeeds.

        Returns:
            ``True`` when this process now owns the run.
        """
        run = self.get_run(run_id)
        if owner_alive(run.host, run.pid) and (run.host, run.pid) != current_owner():
            return False
        host, pid = current_owner()

        def fn(s: Session) -> int:
            q = update(Run).where(Run.id == run_id)
            q = q.where(Run.host.is_(None) if run.host is None else Run.host == run.host)
            q = q.where(Run.pid.is_(None) if run.pid is None else Run.pid == run.pid)
            return s.execute(q.values(host=host, pid=pid, updated_at=utcnow())).rowcount

        return self._write(fn) == 1

    def get_run(self, run_id: str) -> Run:
        """The run ``run_id`` (detached, metrics loaded).

        Raises:
            ConfigError: no such run.
        """
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise ConfigError(f"no run with id {run_id!r} in {self.safe_url}")
            _ = run.metrics
            return run

    def add_example(self, run_id: str, r: dict) -> None:
        """Insert one attacked example (an :class:`~attacks.base.ExampleResult` dict), committed."""
        self._write(lambda s: s.add(Example(
            run_id=run_id, idx=r["index"], original=list(r["original"]),
            adversarial=list(r["adversarial"]), attacked_segment=r["attacked_segment"],
            gold=r["gold"], pred_before=r["pred_before"], pred_after=r["pred_after"],
            result=r["result"], queries=r["queries"], num_words=r["num_words"],
            perturbed_words=r["perturbed_words"], extra=r.get("extra") or {})))

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
        def fn(s: Session) -> None:
            m = s.get(Metrics, run_id)
            if m is None:
                m = Metrics(run_id=run_id)
                s.add(m)
            for k, v in values.items():
                setattr(m, k, v)

        self._write(fn)

    def _runs_where(self, condition, fields: dict) -> list[Run]:
        """Runs matching ``condition`` whose columns equal ``fields``, newest first."""
        with self.session() as s:
            q = select(Run).where(condition)
            for k, v in fields.items():
                q = q.where(getattr(Run, k).is_(None) if v is None else getattr(Run, k) == v)
            return list(s.scalars(q.order_by(Run.created_at.desc())).all())

    def unfinished_runs(self, **fields) -> list[Run]:
        """Runs not ``finished`` whose columns equal ``fields``, newest first (detached)."""
        return self._runs_where(Run.status != "finished", fields)

    def trained_runs(self, **fields) -> list[Run]:
        """Runs past training (``trained``, ``attacking`` or ``finished``) whose columns equal
        ``fields``, newest first (detached)."""
        return self._runs_where(Run.status.in_(("trained", "attacking", "finished"))
                                & Run.train_seconds.is_not(None), fields)

    def runs_frame(self) -> pd.DataFrame:
        """All runs joined with their metrics, one row per run (columns: every ``runs`` and
        ``metrics`` column; metrics columns are ``None`` for a run without metrics).

        One Core ``SELECT`` (no ORM objects): the app reads this on every cold visit."""
        r, m = Run.__table__, Metrics.__table__
        cols = [*r.c, *(c for c in m.c if c.name != "run_id")]
        q = select(*cols).select_from(r.outerjoin(m, m.c.run_id == r.c.id))
        with self.engine.connect() as conn:
            res = conn.execute(q)
            return pd.DataFrame(res.fetchall(), columns=list(res.keys()))


def open_store(url: str | None = None) -> Store:
    """Open (creating or upgrading if needed) the database at ``url`` (default
    :func:`default_url`).

    Raises:
        ConfigError: see :class:`Store`.
    """
    try:
        return Store(url)
    except SQLAlchemyError as e:  # driver-specific failures not caught in Store
        raise ConfigError(f"cannot open database: {_first_line(e)}") from None
