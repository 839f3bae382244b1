"""Claims on sweep cells (``sweep_cells``, revision 0004): which launcher job holds a cell, so
that two sweep drivers, or a driver restarted after a crash, never run one cell twice.

A cell's row is keyed by a hash of its configuration key (:func:`cell_id`). Every claim
increments the row's ``attempt``: a new cell is claimed by an ``INSERT`` (a duplicate key
fails), a released, failed, interrupted or abandoned one by ``UPDATE ... WHERE attempt =
<the attempt read>``; exactly one of several claimants sees one row changed, on SQLite and
PostgreSQL alike. The holder's later writes (:func:`attach_job`, :func:`start_cell`,
:func:`heartbeat`, :func:`end_cell`) match on that attempt too, so a holder that lost its
claim (it was taken for dead) changes nothing and learns so from the return value.

Whether a ``claimed`` or ``running`` cell's holder is dead is the launcher's call (a Slurm
job no longer in the queue, a driver process gone, a heartbeat older than a limit), passed
to :func:`claim_cell` as ``is_dead``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .models import CELL_STATES, Run, SweepCell, utcnow

#: states whose holder may still be working on the cell
HELD = ("claimed", "running")


def cell_id(key: str) -> str:
    """The ``sweep_cells`` primary key of a cell configuration ``key`` (sha256, 64 hex digits)."""
    return hashlib.sha256(key.encode()).hexdigest()


def aware(t: datetime | None) -> datetime | None:
    """``t`` as an aware UTC datetime (SQLite returns stored datetimes naive)."""
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=timezone.utc)


def _row(c: SweepCell) -> dict:
    d = {col.name: getattr(c, col.name) for col in SweepCell.__table__.columns}
    for k in ("claimed_at", "heartbeat_at", "updated_at"):
        d[k] = aware(d[k])
    d["jobs"] = list(d["jobs"] or [])
    return d


def get_cells(store, ids) -> dict[str, dict]:
    """Rows of the cells ``ids`` (cell ids, :func:`cell_id`) that exist, as dicts keyed by id."""
    ids = list(ids)
    out: dict[str, dict] = {}
    with store.session() as s:
        for start in range(0, len(ids), 500):
            for c in s.scalars(select(SweepCell).where(SweepCell.id.in_(ids[start:start + 500]))):
                out[c.id] = _row(c)
    return out


def cells_of_run(store, run_id: str) -> list[dict]:
    """Rows of the cells whose run is ``run_id`` (normally one; none for a run made outside
    a launcher)."""
    with store.session() as s:
        return [_row(c) for c in s.scalars(select(SweepCell).where(SweepCell.run_id == run_id))]


def _cas(store, cid: str, attempt: int, values: dict, states=None) -> bool:
    """``UPDATE sweep_cells SET values WHERE id = cid AND attempt = attempt [AND state IN
    states]``; True when it changed the row."""
    def fn(s) -> int:
        q = update(SweepCell).where(SweepCell.id == cid, SweepCell.attempt == attempt)
        if states is not None:
            q = q.where(SweepCell.state.in_(states))
        return s.execute(q.values(**values, updated_at=utcnow())).rowcount

    return store._write(fn) == 1


def claim_cell(store, key: str, label: str, sweep: str, owner: str,
               is_dead: Callable[[dict], bool]) -> int | None:
    """Claim the cell of configuration ``key`` for ``owner`` (state ``claimed``).

    Args:
        key: the cell's configuration key (:func:`robustbench_nlp.sweep.run_key`).
        label, sweep: what ``--status`` shows (the cell's label, the sweep's name).
        owner: the claimant, ``proc:<host>:<pid>`` for a driver.
        is_dead: whether the holder of a ``claimed``/``running`` row is gone (called with the
            row as a dict).

    Returns:
        the claim's ``attempt`` (pass it to the holder's later writes), or ``None`` when the
        cell is finished or held by a live holder, or another claimant won the race.
    """
    cid = cell_id(key)
    now = utcnow()
    try:
        store._write(lambda s: s.add(SweepCell(
            id=cid, sweep=sweep, label=label, state="claimed", attempt=1, owner=owner,
            claimed_at=now, heartbeat_at=now, jobs=[])))
        return 1
    except IntegrityError:
        pass
    row = get_cells(store, [cid]).get(cid)
    if row is None or row["state"] == "finished":
        return None
    if row["state"] in HELD and not is_dead(row):
        return None
    ok = _cas(store, cid, row["attempt"], dict(
        sweep=sweep, label=label, state="claimed", attempt=row["attempt"] + 1, owner=owner,
        slurm_job_id=None, claimed_at=now, heartbeat_at=now, error=None))
    return row["attempt"] + 1 if ok else None


def release_cell(store, cid: str, attempt: int, state: str = "pending",
                 error: str | None = None) -> bool:
    """Give a claim back (a submission that failed): the cell becomes ``state`` again."""
    return _cas(store, cid, attempt, {"state": state, "owner": None, "error": error})


def _with_job(jobs: list, entry: dict) -> list:
    """``jobs`` with ``entry`` merged into the entry of the same ``job_id`` (else appended)."""
    out = [dict(j) for j in jobs]
    for j in out:
        if j.get("job_id") == entry.get("job_id"):
            j.update({k: v for k, v in entry.items() if v is not None})
            return out
    return out + [{k: v for k, v in entry.items() if v is not None}]


def attach_job(store, cid: str, attempt: int, job_id: str, log_out: str | None,
               log_err: str | None) -> bool:
    """Record the Slurm job submitted for a claimed cell (owner ``slurm:<job id>``); a no-op
    (False) when the job has already started (it records itself) or the claim is lost."""
    row = get_cells(store, [cid])[cid]
    jobs = _with_job(row["jobs"], {"job_id": job_id, "state": "claimed", "log_out": log_out,
                                   "log_err": log_err})
    return _cas(store, cid, attempt, dict(owner=f"slurm:{job_id}", slurm_job_id=job_id,
                                          log_out=log_out, log_err=log_err, jobs=jobs),
                states=("claimed",))


def start_cell(store, cid: str, attempt: int, job_id: str | None, host: str, pid: int,
               log_out: str | None = None, log_err: str | None = None) -> dict | None:
    """The job holding claim ``attempt`` starts the cell (state ``running``, this process as
    its host and pid); a job Slurm requeued after preemption (same job id, same claim)
    starts its ``interrupted`` cell again.

    Returns:
        the cell's row as it was before (its ``run_id`` and ``jobs`` tell what an earlier job
        left to continue), or ``None`` when the claim was lost (the job must not run).
    """
    row = get_cells(store, [cid]).get(cid)
    # a job Slurm requeued (preemption) keeps its job id and claim: it continues its cell
    requeued = ("interrupted",) if job_id and row is not None \
        and row["slurm_job_id"] == job_id else ()
    if row is None or row["attempt"] != attempt or row["state"] not in HELD + requeued:
        return None
    jobs = _with_job(row["jobs"], {"job_id": job_id, "state": "running", "host": host,
                                   "pid": pid, "log_out": log_out, "log_err": log_err})
    owner = f"slurm:{job_id}" if job_id else f"proc:{host}:{pid}"
    values = dict(state="running", owner=owner, host=host, pid=pid, heartbeat_at=utcnow(),
                  jobs=jobs, error=None)
    if job_id:
        values["slurm_job_id"] = job_id
    if log_out:
        values.update(log_out=log_out, log_err=log_err)
    return row if _cas(store, cid, attempt, values, states=HELD + requeued) else None


def heartbeat(store, cid: str, attempt: int, run_id: str | None = None) -> bool:
    """The running holder is alive (and, once known, works on run ``run_id``). False: the
    claim was lost (another claimant took the cell for dead); the holder should stop."""
    values = {"heartbeat_at": utcnow()}
    if run_id:
        values["run_id"] = run_id
    return _cas(store, cid, attempt, values, states=("running",))


def end_cell(store, cid: str, attempt: int, state: str, run_id: str | None = None,
             error: str | None = None) -> bool:
    """The holder stops: the cell is ``finished``, ``failed`` or ``interrupted``.

    Raises:
        ValueError: ``state`` is not one of those three.
    """
    if state not in ("finished", "failed", "interrupted"):
        raise ValueError(f"a cell ends finished, failed or interrupted, not {state!r}")
    row = get_cells(store, [cid]).get(cid)
    if row is None or row["attempt"] != attempt:
        return False
    values: dict = {"state": state, "error": error, "heartbeat_at": utcnow()}
    if run_id:
        values["run_id"] = run_id
    if row["slurm_job_id"]:
        values["jobs"] = _with_job(row["jobs"], {"job_id": row["slurm_job_id"], "state": state})
    return _cas(store, cid, attempt, values)


def mark_finished(store, key: str, label: str, sweep: str, run_id: str) -> None:
    """Record a cell whose run is finished (e.g. by the local launcher, or a job killed after
    finishing its run and before ending its claim) as ``finished``."""
    cid = cell_id(key)
    try:
        store._write(lambda s: s.add(SweepCell(id=cid, sweep=sweep, label=label,
                                               state="finished", attempt=0, run_id=run_id,
                                               jobs=[])))
        return
    except IntegrityError:
        pass
    row = get_cells(store, [cid])[cid]
    if row["state"] != "finished" or row["run_id"] != run_id:
        _cas(store, cid, row["attempt"], {"state": "finished", "run_id": run_id})


def previous_run(store, row: dict) -> str | None:
    """The unfinished run an earlier holder of cell ``row`` left: its recorded ``run_id``, else
    the newest unfinished run owned by the process of one of its jobs (a job killed before it
    recorded its run). ``None`` when there is none."""
    with store.session() as s:
        if row.get("run_id"):
            run = s.get(Run, row["run_id"])
            if run is not None and run.status != "finished":
                return run.id
        for job in reversed(row.get("jobs") or []):
            if job.get("host") and job.get("pid"):
                run = s.scalars(select(Run).where(Run.host == job["host"],
                                                  Run.pid == int(job["pid"]),
                                                  Run.status != "finished")
                                .order_by(Run.created_at.desc())).first()
                if run is not None:
                    return run.id
    return None


def release_run(store, run_id: str) -> bool:
    """Clear the owner (host, pid) of run ``run_id`` so this process can continue it, with a
    compare-and-set on the owner read. Only the holder of the run's cell calls this, after
    its earlier holder was found dead: a run owned by a process on another node otherwise
    counts as alive (:func:`robustbench_nlp.db.store.owner_alive`)."""
    run = store.get_run(run_id)

    def fn(s) -> int:
        q = update(Run).where(Run.id == run_id)
        q = q.where(Run.host.is_(None) if run.host is None else Run.host == run.host)
        q = q.where(Run.pid.is_(None) if run.pid is None else Run.pid == run.pid)
        return s.execute(q.values(host=None, pid=None)).rowcount

    return store._write(fn) == 1


def run_of_process(store, host: str, pid: int, since: datetime | None = None) -> str | None:
    """The newest run owned by process ``pid`` on ``host`` (updated at or after ``since``)."""
    with store.session() as s:
        q = select(Run.id).where(Run.host == host, Run.pid == pid)
        if since is not None:
            q = q.where(Run.updated_at >= since)
        return s.scalars(q.order_by(Run.created_at.desc())).first()


assert set(HELD) <= set(CELL_STATES)
