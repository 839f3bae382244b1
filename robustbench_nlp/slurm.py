"""The Slurm launcher of ``rbnlp sweep FILE --launcher slurm``, through submitit.

The driver (:func:`submit_sweep`) claims every unfinished cell of the grid in the database
(:mod:`robustbench_nlp.db.claims`), submits the claimed cells as Slurm job arrays with
:class:`submitit.AutoExecutor` (one array per set of resources, Slurm's ``%N`` throttle
keeping at most ``max_in_flight`` cells running), records each cell's job id and log files,
and by default waits until the jobs have left the queue, reporting each cell as it ends.

Each array task runs :func:`run_cell`: it takes over the cell from the driver's claim (a
job whose claim was taken meanwhile exits without running), runs the cell through
:func:`robustbench_nlp.runner.execute` exactly as ``rbnlp run`` does (continuing the
unfinished run an earlier job of the cell left, from its trained weights and last committed
example row), beats a heartbeat into the cell row, and ends the cell ``finished``,
``failed`` or ``interrupted``. SIGTERM (``scancel``, preemption, the time limit) and
SIGUSR2 (submitit's warning before the time limit) stop the run like Ctrl-C: committed rows
kept, the run and the cell resumable; the next submission continues them.

A claim is taken over (the cell resubmitted) when its holder is dead: a Slurm job that
``squeue`` no longer lists as pending or running, a driver process gone, or, where neither
can be checked, a heartbeat older than ``stale_s``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

#: Slurm job states (``squeue -t all``) whose job may still run or write its cell
ALIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                          "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                          "STAGE_OUT", "STOPPED"})


@dataclass(frozen=True)
class Resources:
    """What one cell's job asks Slurm for: GPUs per node, CPUs per task, memory (GB) and the
    time limit (minutes)."""

    gpus: int
    cpus: int
    mem_gb: float
    time_min: int


#: resources of a cell that trains its defense, per defense (a backbone such as roberta-large
#: needs a GPU to train in reasonable time; override with --gpus/--cpus/--mem/--time)
TRAIN_RESOURCES = {"peaft": Resources(1, 4, 16, 0), "prompt-tuning": Resources(1, 4, 16, 0),
                   "finetune": Resources(1, 4, 16, 0), "freelb": Resources(1, 4, 32, 0),
                   "rose": Resources(1, 4, 32, 0)}
#: a defense not listed above
DEFAULT_TRAIN = Resources(1, 4, 16, 0)
#: a cell that attacks a defense another run has trained (e.g. AdvGLUE after TextFooler with
#: the same training settings): no training, so no GPU
REUSE_RESOURCES = Resources(0, 2, 8, 0)
#: the time limit is this many times the cell's estimated time
#: (:func:`robustbench_nlp.sweep.estimate_seconds`), and at least MIN_TIME_MIN minutes
TIME_FACTOR = 3
MIN_TIME_MIN = 60


@dataclass
class SlurmOptions:
    """Options of the Slurm launcher (``rbnlp sweep --launcher slurm``).

    Attributes:
        partition: Slurm partition (``None``: the cluster's default).
        time_min, gpus, cpus, mem_gb: per-cell time limit (minutes), GPUs per node, CPUs per
            task and memory (GB) for every cell; ``None``: the per-defense defaults
            (:data:`TRAIN_RESOURCES`, :data:`REUSE_RESOURCES`).
        max_in_flight: cells running at once (Slurm's array throttle, split between arrays).
        logs_dir: folder of submitit's job files and logs (must be shared with the nodes).
        sbatch: further sbatch options (``{"account": "lab", "qos": "high"}``).
        wait: wait until the submitted jobs have left the queue.
        poll_s: seconds between two looks at the queue while waiting.
        heartbeat_s: seconds between two heartbeats of a running cell.
        stale_s: a holder that cannot be checked otherwise is dead after this many seconds
            without a heartbeat.
    """

    partition: str | None = None
    time_min: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    max_in_flight: int = 16
    logs_dir: str = "slurm-logs"
    sbatch: dict = field(default_factory=dict)
    wait: bool = True
    poll_s: float = 10.0
    heartbeat_s: float = 60.0
    stale_s: float = 900.0

    def check(self) -> None:
        """Raises ConfigError: a negative or zero option, naming it."""
        for name, low in (("time_min", 1), ("gpus", 0), ("cpus", 1), ("mem_gb", 0),
                          ("max_in_flight", 1), ("poll_s", 0), ("heartbeat_s", 0),
                          ("stale_s", 0)):
            v = getattr(self, name)
            if v is not None and v < low:
                flag = {"time_min": "--time", "mem_gb": "--mem"}.get(
                    name, "--" + name.replace("_", "-"))
                raise ConfigError(f"{flag} must be at least {low}, got {v}")


# -- Slurm commands ------------------------------------------------------------------------

def check_sbatch() -> str:
    """The path of ``sbatch``.

    Raises:
        ConfigError: no ``sbatch`` on PATH.
    """
    path = shutil.which("sbatch")
    if path is None:
        raise ConfigError("--launcher slurm needs Slurm's sbatch on PATH (not found); run the "
                          "sweep on a Slurm login node, or use --launcher local")
    return path


def job_states(job_ids) -> dict[str, str] | None:
    """Slurm state of each job id (``"123"`` or an array task ``"123_4"``) that ``squeue -t
    all`` lists (others are absent: gone from the queue); ``None`` when ``squeue`` cannot be
    run here."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    if shutil.which("squeue") is None:
        return None
    out: dict[str, str] = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start:start + 200]
        try:
            r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j",
                                ",".join(chunk)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            if "Invalid job id" in r.stderr:  # every id of the chunk has left the queue
                continue
            return None
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_dead(row: dict, states: dict[str, str] | None, stale_s: float) -> bool:
    """Whether the holder of a ``claimed``/``running`` cell ``row`` is gone: its Slurm job is
    not among the live ``states`` (:func:`job_states`), its driver process on this host has
    exited, or (a holder that cannot be checked: ``states`` is ``None``, another host) its
    last heartbeat is older than ``stale_s`` seconds."""
    from .db.claims import aware
    from .db.models import utcnow

    owner = row.get("owner") or ""
    if owner.startswith("slurm:") and states is not None:
        return states.get(owner[len("slurm:"):]) not in ALIVE_STATES
    if owner.startswith("proc:"):
        host, _, pid = owner[len("proc:"):].rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return not _pid_alive(int(pid))
    last = aware(row.get("heartbeat_at") or row.get("claimed_at"))
    return last is None or (utcnow() - last).total_seconds() > stale_s


def effective_state(row: dict, states: dict[str, str] | None, stale_s: float) -> str:
    """A cell row's state as ``--status`` shows it: a ``claimed``/``running`` cell whose
    holder is dead (:func:`holder_dead`) is ``interrupted``."""
    if row["state"] in ("claimed", "running") and holder_dead(row, states, stale_s):
        return "interrupted"
    return row["state"]


# -- the driver ------------------------------------------------------------------------------

def check_database(store, partition: str | None, echo=print) -> None:
    """A SQLite database serves Slurm jobs on one node only: warn when the partition has one
    node, refuse when it has several.

    Raises:
        ConfigError: a SQLite URL and a partition of more than one node.
    """
    if not store.is_sqlite:
        return
    nodes = None
    if shutil.which("sinfo"):
        cmd = ["sinfo", "-h", "-o", "%D %P"] + (["-p", partition] if partition else [])
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            rows = [line.split() for line in r.stdout.splitlines() if line.strip()]
            if partition is None:  # the default partition is marked with *
                rows = [x for x in rows if x[1].endswith("*")] or rows
            nodes = sum(int(x[0]) for x in rows if x[0].isdigit()) if rows else None
        except (OSError, subprocess.TimeoutExpired):
            nodes = None
    where = f"partition {partition}" if partition else "the default partition"
    if nodes is not None and nodes > 1:
        raise ConfigError(f"--db {store.safe_url} is a SQLite file, which Slurm jobs on "
                          f"several nodes ({where} has {nodes}) cannot share: use a "
                          "PostgreSQL URL (postgresql+psycopg://user@host/db)")
    echo(f"warning: --db {store.safe_url} is a SQLite file; it works for jobs on one node "
         "only (use PostgreSQL for a cluster)")


def cell_resources(store, cell, reuses: bool, opts: SlurmOptions) -> Resources:
    """The resources of ``cell``'s job: the options given, else the defaults of its defense
    (:data:`TRAIN_RESOURCES`) or, when it ``reuses`` a trained defense,
    :data:`REUSE_RESOURCES`; the time limit defaults to :data:`TIME_FACTOR` × its estimated
    time (minutes, at least :data:`MIN_TIME_MIN`)."""
    from .sweep import estimate_seconds

    base = REUSE_RESOURCES if reuses else TRAIN_RESOURCES.get(cell.cfg.defense, DEFAULT_TRAIN)
    est = estimate_seconds(store, cell, {_train_key(cell)} if reuses else None)
    time_min = max(MIN_TIME_MIN, math.ceil(TIME_FACTOR * est / 60))
    return Resources(gpus=base.gpus if opts.gpus is None else opts.gpus,
                     cpus=base.cpus if opts.cpus is None else opts.cpus,
                     mem_gb=base.mem_gb if opts.mem_gb is None else opts.mem_gb,
                     time_min=time_min if opts.time_min is None else opts.time_min)


def _train_key(cell) -> str:
    from .sweep import _cell_train_key

    return _cell_train_key(cell.cfg)


def _throttles(sizes: list[int], total: int) -> list[int]:
    """Array throttles (cells at once) for arrays of ``sizes`` cells, summing to ``total``
    (at least 1 each), in proportion to the sizes."""
    n = sum(sizes)
    out = [max(1, math.floor(total * s / n)) for s in sizes]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if sum(out) >= total:
            break
        out[i] += 1
    return [min(t, s) for t, s in zip(out, sizes)]


@dataclass
class _Planned:
    cell: object
    resources: Resources
    after: bool  # waits for the training cells of this submission (reuses their defense)
    attempt: int = 0
    job_id: str = ""


def _executor(folder: Path, name: str, res: Resources, opts: SlurmOptions, throttle: int,
              dependency: str | None):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    extra = dict(opts.sbatch)
    if dependency:
        extra["dependency"] = dependency
    params = dict(name=name, timeout_min=res.time_min, cpus_per_task=res.cpus,
                  mem_gb=res.mem_gb, nodes=1, tasks_per_node=1,
                  slurm_array_parallelism=throttle, slurm_additional_parameters=extra)
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if opts.partition:
        params["slurm_partition"] = opts.partition
    ex.update_parameters(**params)
    return ex


def submit_sweep(path, db: str | None = None, runs_dir: str = "runs",
                 data_dir: str | None = None, options: SlurmOptions | None = None,
                 dry_run: bool = False, echo=print) -> list[dict]:
    """Submit the unfinished cells of a sweep file as Slurm jobs (submitit job arrays).

    Cells whose run is finished are skipped (and recorded ``finished``), cells held by a live
    job or driver are left to it, every other cell is claimed and submitted. A cell that
    attacks a defense another cell of this submission trains (same training settings,
    :func:`robustbench_nlp.runner.training_key`) waits for the training cells
    (``--dependency=afterany``) and asks for :data:`REUSE_RESOURCES`.

    Args:
        path: the YAML sweep file.
        db: database URL shared by the jobs (overrides the file's ``db``; PostgreSQL for
            jobs on several nodes).
        runs_dir: the runs folder shared by the jobs (made absolute here).
        data_dir: local GLUE mirror the jobs read (default: found automatically here).
        options: :class:`SlurmOptions` (default: all defaults).
        dry_run: print the cells, their state and resources; submit nothing.
        echo: printer for progress messages.

    Returns:
        one dict per cell: ``label``, ``state`` (at the end, as ``--status`` shows it),
        ``run_id``, ``job_id`` (``""`` when this driver submitted none for it).

    Raises:
        ConfigError: no ``sbatch`` on PATH, a SQLite database with several nodes, a bad
            option, an unreadable sweep file, or ``sbatch`` refusing the jobs (its message).
    """
    from .db import claims, open_store
    from .db.store import current_owner, database_url
    from .sweep import cell_status, load_sweep, sweep_status, trained_keys
    from .tasks import find_data_dir

    opts = options or SlurmOptions()
    opts.check()
    sweep = load_sweep(path)
    if not dry_run:
        check_sbatch()
    url = database_url(db or sweep.db)
    store = open_store(url)
    if not dry_run:
        check_database(store, opts.partition, echo)
    if store.is_sqlite:  # a relative file path must mean the same file in every job
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.database not in (None, "", ":memory:"):
            url = parsed.set(database=str(Path(parsed.database).resolve())) \
                .render_as_string(hide_password=False)
    runs_dir = str(Path(runs_dir).resolve())
    found = data_dir or find_data_dir()
    data_dir = str(Path(found).resolve()) if found else None
    logs = Path(opts.logs_dir).resolve() / sweep.name
    done = cell_status(store, sweep.cells)
    rows = claims.get_cells(store, [claims.cell_id(c.key) for c in sweep.cells])
    held_jobs = [r["slurm_job_id"] for r in rows.values() if r["state"] in claims.HELD]
    states = job_states(held_jobs)
    trained = trained_keys(store)
    trainers: set[str] = set()
    plan: list[_Planned] = []
    report: dict[str, dict] = {}
    for c in sweep.cells:
        st, rid = done.get(c.key, ("", ""))
        cid = claims.cell_id(c.key)
        row = rows.get(cid)
        if st == "finished":
            if not dry_run:
                claims.mark_finished(store, c.key, c.label(), sweep.name, rid)
            report[c.key] = {"label": c.label(), "state": "finished", "run_id": rid,
                             "job_id": (row or {}).get("slurm_job_id") or ""}
            continue
        if row is not None and row["state"] in claims.HELD \
                and not holder_dead(row, states, opts.stale_s):
            report[c.key] = {"label": c.label(), "state": row["state"],
                             "run_id": row["run_id"] or "",
                             "job_id": row["slurm_job_id"] or "", "held": row["owner"]}
            continue
        key = _train_key(c)
        reuses = key in trained or key in trainers
        plan.append(_Planned(c, cell_resources(store, c, reuses, opts),
                             after=key in trainers and key not in trained))
        trainers.add(key)
    if dry_run:
        for p in plan:
            r = p.resources
            echo(f"{p.cell.label():70s} submit: {r.gpus} GPU, {r.cpus} CPU, {r.mem_gb:g} GB, "
                 f"{r.time_min} min" + (" (after the training cells)" if p.after else ""))
        for v in report.values():
            echo(f"{v['label']:70s} {v['state']}" + (f" (job {v['job_id']})" if v["job_id"]
                                                      else ""))
        echo(f"{len(sweep.cells)} cells: {len(plan)} to submit, "
             f"{sum(v['state'] == 'finished' for v in report.values())} finished, "
             f"{sum(v['state'] != 'finished' for v in report.values())} held by running jobs")
        return [report.get(c.key) or {"label": c.label(), "state": "pending", "run_id": "",
                                      "job_id": ""} for c in sweep.cells]
    host, pid = current_owner()
    owner = f"proc:{host}:{pid}"
    claimed: list[_Planned] = []
    for p in plan:
        attempt = claims.claim_cell(store, p.cell.key, p.cell.label(), sweep.name, owner,
                                    lambda row: holder_dead(row, job_states(
                                        [row["slurm_job_id"]]), opts.stale_s))
        if attempt is None:  # another driver claimed it first
            row = claims.get_cells(store, [claims.cell_id(p.cell.key)])[
                claims.cell_id(p.cell.key)]
            report[p.cell.key] = {"label": p.cell.label(), "state": row["state"],
                                  "run_id": row["run_id"] or "",
                                  "job_id": row["slurm_job_id"] or "", "held": row["owner"]}
            continue
        p.attempt = attempt
        claimed.append(p)
    # arrays: training cells first (grouped by resources), then the cells that wait for them
    groups: dict[tuple, list[_Planned]] = {}
    for p in claimed:
        groups.setdefault((p.after, p.resources), []).append(p)
    order = sorted(groups, key=lambda k: k[0])
    throttles = dict(zip(order, _throttles([len(groups[k]) for k in order],
                                           opts.max_in_flight)))
    first_ids: list[str] = []
    try:
        for k in order:
            after, res = k
            members = groups[k]
            dependency = ("afterany:" + ":".join(first_ids)) if after and first_ids else None
            ex = _executor(logs, f"rbnlp-{sweep.name}", res, opts, throttles[k], dependency)
            payloads = [_payload(p, url, runs_dir, data_dir, opts) for p in members]
            jobs = ex.map_array(run_cell, payloads)
            for p, job in zip(members, jobs):
                p.job_id = str(job.job_id)
                claims.attach_job(store, claims.cell_id(p.cell.key), p.attempt, p.job_id,
                                  str(job.paths.stdout), str(job.paths.stderr))
            if not after:
                first_ids.extend(sorted({j.job_id.split("_")[0] for j in jobs}))
            echo(f"submitted {len(members)} cell{'s' if len(members) != 1 else ''} as job "
                 f"array {jobs[0].job_id.split('_')[0]} ({res.gpus} GPU, {res.cpus} CPU, "
                 f"{res.mem_gb:g} GB, {res.time_min} min, at most {throttles[k]} at once"
                 + (", after the training cells" if dependency else "") + f"); logs in {logs}")
    except Exception as e:  # sbatch refused: give back the claims not submitted
        for p in claimed:
            if not p.job_id:
                claims.release_cell(store, claims.cell_id(p.cell.key), p.attempt)
        msg = str(e).strip().splitlines()
        raise ConfigError(f"sbatch failed: {msg[-1] if msg else type(e).__name__}") from None
    for c in sweep.cells:
        if c.key in report and report[c.key].get("held"):
            v = report[c.key]
            echo(f"{v['label']}: {v['state']}, held by {v['held']}")
    if claimed and opts.wait:
        _wait(store, claimed, opts, echo)
    final = {r["label"]: r for r in sweep_status(path, db=url, echo=echo if opts.wait else None)}
    mine = {p.cell.key: p.job_id for p in claimed}
    return [{"label": c.label(), "state": final[c.label()]["state"],
             "run_id": final[c.label()]["run_id"], "job_id": mine.get(c.key, "")}
            for c in sweep.cells]


def _payload(p: _Planned, url: str, runs_dir: str, data_dir: str | None,
             opts: SlurmOptions) -> dict:
    from .db.claims import cell_id
    from .runner import config_to_dict

    cfg = replace(p.cell.cfg, db=url, runs_dir=runs_dir, progress=False,
                  data_dir=p.cell.cfg.data_dir or data_dir)
    return {"cell": cell_id(p.cell.key), "attempt": p.attempt, "label": p.cell.label(),
            "run": config_to_dict(cfg), "heartbeat_s": opts.heartbeat_s}


def _wait(store, claimed: list[_Planned], opts: SlurmOptions, echo) -> None:
    """Poll the queue and the cells until every submitted job has left the queue, printing
    each cell's state as it changes."""
    from .db import claims

    last: dict[str, str] = {}
    ids = {claims.cell_id(p.cell.key): p for p in claimed}
    while True:
        states = job_states([p.job_id for p in claimed])
        rows = claims.get_cells(store, ids)
        for cid, p in ids.items():
            row = rows.get(cid)
            if row is None or row["attempt"] != p.attempt:
                continue  # taken over by another driver
            st = row["state"]
            if last.get(cid) != st:
                last[cid] = st
                echo(f"{p.cell.label()}: {st} (job {p.job_id}"
                     + (f", run {row['run_id']}" if row["run_id"] else "") + ")")
        if states is not None and not any(states.get(p.job_id) in ALIVE_STATES
                                          for p in claimed):
            return
        time.sleep(opts.poll_s)


# -- the job ------------------------------------------------------------------------------------

@contextmanager
def _signals_as_interrupt(*signums):
    """The first of ``signums`` raises ``KeyboardInterrupt(<signal name>)`` (later ones are
    ignored, so the cell can be recorded), as ``rbnlp run`` does with SIGTERM."""
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield fired
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Heartbeat(threading.Thread):
    """Beats the cell's heartbeat every ``interval`` seconds and records the run this process
    works on; if the claim is lost, SIGTERMs this process (the run stops resumably)."""

    def __init__(self, store, cid: str, attempt: int, host: str, pid: int, interval: float):
        super().__init__(daemon=True, name="rbnlp-heartbeat")
        self.store, self.cid, self.attempt = store, cid, attempt
        self.host, self.pid, self.interval = host, pid, interval
        self.run_id: str | None = None
        self.lost = False
        self._stop_event = threading.Event()

    def beat(self) -> None:
        from .db import claims

        self.run_id = claims.run_of_process(self.store, self.host, self.pid) or self.run_id
        if not claims.heartbeat(self.store, self.cid, self.attempt, self.run_id):
            self.lost = True

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a database hiccup: try again at the next beat
                continue
            if self.lost:
                print(f"cell {self.cid[:12]}: claim lost to another job; stopping",
                      flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self) -> None:
        self._stop_event.set()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def run_cell(payload: dict) -> dict:
    """Body of one cell's Slurm job (called by submitit in the job).

    Takes the cell over from the driver's claim (``payload["attempt"]``), continues the run
    an earlier job of the cell left unfinished (or the newest unfinished run of the same
    configuration whose process is gone, as ``rbnlp run`` does), else starts one, and runs it
    with :func:`robustbench_nlp.runner.execute`. torch uses the job's CPUs
    (``SLURM_CPUS_PER_TASK``).

    Args:
        payload: ``cell`` (cell id), ``attempt`` (the claim), ``label``, ``run`` (the
            :class:`~robustbench_nlp.runner.RunConfig` as a dict, with the shared ``db`` and
            ``runs_dir``) and ``heartbeat_s``.

    Returns:
        ``{"state", "run_id"}``: ``state`` is ``finished``, ``interrupted`` (SIGTERM or
        SIGUSR2: the run and the cell stay resumable) or ``skipped`` (the claim was lost
        before the job started: nothing was run).

    Raises:
        Exception: whatever the run raised (the cell is then ``failed`` with its message).
    """
    import torch

    from .db import claims, open_store
    from .db.store import current_owner
    from .runner import config_from_dict, execute

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        torch.set_num_threads(int(cpus))
    job_id, log_out, log_err = None, None, None
    try:
        import submitit

        env = submitit.JobEnvironment()
        job_id = env.job_id
        log_out, log_err = str(env.paths.stdout), str(env.paths.stderr)
    except Exception:  # not inside a submitit job (tests call this directly)
        job_id = os.environ.get("SLURM_JOB_ID")
    cfg = config_from_dict(payload["run"])
    store = open_store(cfg.db)
    cid, attempt = payload["cell"], payload["attempt"]
    host, pid = current_owner()
    before = claims.start_cell(store, cid, attempt, job_id, host, pid, log_out, log_err)
    if before is None:
        print(f"cell {payload['label']}: claimed by another job meanwhile; not running it",
              flush=True)
        return {"state": "skipped", "run_id": None}
    print(f"cell {payload['label']} (attempt {attempt}, job {job_id} on {host})", flush=True)
    resume = claims.previous_run(store, before)
    if resume is not None:
        claims.release_run(store, resume)  # its job is gone (this job holds the cell now)
        print(f"continuing run {resume} left by an earlier job of this cell", flush=True)
    beat = _Heartbeat(store, cid, attempt, host, pid, payload.get("heartbeat_s", 60.0))
    beat.start()
    try:
        with _signals_as_interrupt(signal.SIGTERM, signal.SIGUSR2):
            try:
                m = execute(cfg, resume=resume, store=store, continue_matching=True,
                            echo=lambda s: print(s, flush=True))
            except KeyboardInterrupt as e:
                beat.stop()
                run_id = claims.run_of_process(store, host, pid) or beat.run_id or resume
                claims.end_cell(store, cid, attempt, "interrupted", run_id,
                                f"interrupted ({e or 'SIGINT'})")
                print(f"cell {payload['label']}: interrupted ({e}); run {run_id} is kept "
                      "resumable: submit the sweep again to continue it", flush=True)
                return {"state": "interrupted", "run_id": run_id}
            except Exception as e:
                beat.stop()
                run_id = claims.run_of_process(store, host, pid) or beat.run_id or resume
                claims.end_cell(store, cid, attempt, "failed", run_id, _first_line(e))
                raise
            beat.stop()
            claims.end_cell(store, cid, attempt, "finished", m["run_id"])
    finally:
        beat.stop()
    print(f"cell {payload['label']}: finished (run {m['run_id']})", flush=True)
    return {"state": "finished", "run_id": m["run_id"]}
