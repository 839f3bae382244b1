"""``rbnlp sweep --launcher slurm`` against a real single-node Slurm (Debian's ``slurm-wlm``
and ``munge``, started on localhost by :mod:`slurm_cluster`) and a real PostgreSQL server
(the ``postgres_url`` fixture of ``test_distributed``).

Every cell is a tiny run: full fine-tuning of a 2-layer random BERT on 32 SST-2 examples,
TextFooler on the first dev examples with offline resources, one torch thread per job. The
drivers run as ``python -m robustbench_nlp.cli sweep`` subprocesses; submitit runs each cell
with the same interpreter.

* a 4-cell grid: every cell finished exactly once (one run per cell, each with one row per
  attacked example and no index twice), its job and logs recorded, ``--status`` and
  ``rbnlp show`` say so;
* ``scancel`` mid-attack: the cell is interrupted with its rows kept; resubmitting continues
  the same run to exactly the expected rows;
* two drivers at once on one grid and database: each cell claimed, submitted and run once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from slurm_cluster import start_cluster, why_not
from test_distributed import one, postgres_url, tiny_bert  # noqa: F401 (fixtures)

SWEEP = """\
name: {name}
grid:
  defense: [finetune]
  task: [sst2]
  attack: [textfooler]
  model: [{model}]
  seed: {seeds}
params:
  finetune: {{train_examples: 32, batch_size: 8, epochs: 1}}
fixed: {{num_examples: {n}, mixed_precision: "no", progress: false}}
attack_params:
  textfooler: {{resources: offline, query_budget: {budget}}}
"""


@pytest.fixture(scope="module")
def slurm():
    """A running single-node Slurm cluster (skips with the reason where it cannot start)."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="rbnlp-slurm-"))
    try:
        cluster = start_cluster(root)
    except RuntimeError as e:
        pytest.skip(f"single-node Slurm did not start: {str(e)[:300]}")
    yield cluster
    cluster.stop()


def database(postgres_url: str, name: str) -> str:  # noqa: F811
    """A fresh database ``name`` on the test server; its URL."""
    eng = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            c.execute(text(f"CREATE DATABASE {name}"))
    finally:
        eng.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def write_sweep(tmp_path: Path, model: Path, name: str, seeds: list[int], n: int,
                budget: int = 30) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(SWEEP.format(name=name, model=model, seeds=seeds, n=n, budget=budget))
    return p


def driver_args(sweep: Path, db: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["sweep", str(sweep), "--launcher", "slurm", "--db", db, "--runs-dir", str(tmp_path / "runs"), "--logs-dir",
            str(tmp_path / "logs"), "--gpus", "0", "--cpus", "1", "--mem", "1", "--time", "15",
            "--poll", "0.5", *extra]


JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def env(slurm, data_dir, monkeypatch, tmp_path):
    """This process (an in-process driver, and the jobs it submits, which inherit its
    environment) talks to the test cluster and reads the test data; the environment for
    driver subprocesses."""
    values = {"SLURM_CONF": slurm.env["SLURM_CONF"], "RBNLP_DATA_DIR": str(data_dir), **JOB_ENV}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return {**os.environ, **values}


def cli(capsys, *args: str) -> tuple[int, str]:
    """``rbnlp ARGS`` in this process: (exit status, stdout + stderr)."""
    from robustbench_nlp.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


def check_each_cell_ran_once(db: str, seeds: list[int], n: int) -> dict[int, str]:
    """One finished run per cell (seed), ``n`` example rows each with no index twice, the
    index set the attack chooses, and one claim (attempt 1, one job) per cell. Returns
    seed → run id."""
    runs = one(db, "select seed, id, status from runs order by seed")
    assert [(s, st) for s, _, st in runs] == [(s, "finished") for s in seeds]
    for seed, rid, _ in runs:
        expected = expected_indices(n, seed)
        idx = [i for (i,) in one(db, f"select idx from examples where run_id = '{rid}'")]
        assert len(idx) == n and sorted(idx) == expected
        assert one(db, f"select attacked from metrics where run_id = '{rid}'") == [(n,)]
    assert one(db, "select count(*) from examples")[0][0] == n * len(seeds)
    cells = one(db, "select run_id, state, attempt from sweep_cells")
    assert sorted(cells) == sorted((rid, "finished", 1) for _, rid, _ in runs)
    return {s: rid for s, rid, _ in runs}


def expected_indices(n: int, seed: int = 0) -> list[int]:
    """The dev indices TextFooler attacks in a run of ``n`` examples (seed ``seed``)."""
    from robustbench_nlp.runner import RunConfig, make_attack
    from robustbench_nlp.tasks import get_task, load_split

    task = get_task("sst2")
    dev, _ = load_split(task, "validation")
    return sorted(int(i) for i in make_attack(RunConfig(num_examples=n)).examples(
        task, dev, n, seed)["index"])


def status_rows(out: str) -> list[list[str]]:
    """``--status`` lines of cells split into label, state, run, rows, job, log out, log err."""
    rows = []
    for line in out.splitlines():
        if line.startswith("finetune/"):
            label, _, rest = line.partition("]")
            rows.append([label + "]", *rest.split()])
    return rows


def jobs_of(db: str) -> list[str]:
    import json

    out = []
    for (jobs,) in one(db, "select jobs from sweep_cells"):
        out += [j["job_id"] for j in (json.loads(jobs) if isinstance(jobs, str) else jobs)]
    return out


def test_four_cell_grid_each_cell_once(slurm, env, postgres_url, tiny_bert,  # noqa: F811
                                       tmp_path, capsys):
    db = database(postgres_url, "grid4")
    seeds = [0, 1, 2, 3]
    sweep = write_sweep(tmp_path, tiny_bert, "grid4", seeds, n=4)
    t0 = time.monotonic()
    rc, out = cli(capsys, *driver_args(sweep, db, tmp_path))
    assert rc == 0, out[-4000:] + slurm.log("slurmctld")
    took = time.monotonic() - t0
    assert "submitted 4 cells as job array" in out
    run_ids = check_each_cell_ran_once(db, seeds, 4)
    jobs = jobs_of(db)
    assert len(jobs) == 4 and len(set(jobs)) == 4
    rc, status = cli(capsys, "sweep", str(sweep), "--status", "--db", db)
    assert rc == 0
    with capsys.disabled():
        print(f"\n4-cell sweep through Slurm: {took:.1f} s; rbnlp sweep FILE --status:\n{status}")
    rows = status_rows(status)
    assert len(rows) == 4
    for seed, cols in zip(seeds, rows):
        assert f"/seed{seed} [" in cols[0]
        assert cols[1:4] == ["finished", run_ids[seed], "4/4"]
        assert re.fullmatch(r"\d+_\d", cols[4]) and cols[4] in jobs
        assert cols[5].endswith("_log.out") and cols[6].endswith("_log.err")
        assert Path(cols[5]).is_file() and Path(cols[6]).is_file()
    assert status.splitlines()[-1] == "4 cells: 4 finished"
    # rbnlp show names the cell's job and its logs
    rc, shown = cli(capsys, "show", run_ids[0], "--db", db)
    (log_out, log_err), = one(db, f"select log_out, log_err from sweep_cells "
                                  f"where run_id = '{run_ids[0]}'")
    assert f"logs {log_out}, {log_err}" in shown
    assert f"finished (run {run_ids[0]})" in Path(log_out).read_text()
    # submitting again runs nothing
    rc, again = cli(capsys, *driver_args(sweep, db, tmp_path))
    assert rc == 0 and "submitted" not in again
    assert len(jobs_of(db)) == 4 and one(db, "select count(*) from runs") == [(4,)]


def test_scancel_mid_attack_then_resubmit_continues(slurm, env, postgres_url,  # noqa: F811
                                                    tiny_bert, tmp_path, capsys):
    db = database(postgres_url, "cancel")
    n = 12
    sweep = write_sweep(tmp_path, tiny_bert, "cancel", [0], n=n, budget=200)
    rc, out = cli(capsys, *driver_args(sweep, db, tmp_path, "--no-wait"))
    assert rc == 0, out[-4000:]
    (job,), = one(db, "select slurm_job_id from sweep_cells")
    deadline = time.monotonic() + 180
    while one(db, "select count(*) from examples")[0][0] < 2:
        assert time.monotonic() < deadline, "the job stored no rows in 180 s"
        time.sleep(0.2)
    slurm.run("scancel", job)
    while slurm.run("squeue", "-h", "-j", job, check=False).stdout.strip():
        assert time.monotonic() < deadline, "the cancelled job did not leave the queue"
        time.sleep(0.3)
    (rid, status, error), = one(db, "select id, status, error from runs")
    stored = one(db, "select count(*) from examples")[0][0]
    assert 2 <= stored < n, "the attack finished before the job was cancelled"
    assert status == "attacking" and error == "interrupted (SIGTERM)"
    assert one(db, "select state, run_id, attempt from sweep_cells") == \
        [("interrupted", rid, 1)]
    rc, out = cli(capsys, "sweep", str(sweep), "--status", "--db", db)
    (cols,) = status_rows(out)
    assert cols[1:5] == ["interrupted", rid, f"{stored}/{n}", job]

    rc, out = cli(capsys, *driver_args(sweep, db, tmp_path))
    assert rc == 0, out[-4000:]
    assert one(db, "select id, status, error from runs") == [(rid, "finished", None)]
    idx = [i for (i,) in one(db, "select idx from examples")]
    assert len(idx) == n and sorted(idx) == expected_indices(n)  # none lost, none twice
    (state, attempt, log_out), = one(db, "select state, attempt, log_out from sweep_cells")
    assert (state, attempt) == ("finished", 2)
    jobs = jobs_of(db)
    assert len(jobs) == 2 and jobs[0] == job
    log = Path(log_out).read_text()
    assert f"continuing run {rid} left by an earlier job of this cell" in log
    assert f"resuming attack: {stored} of {n} examples already stored" in log


def test_two_drivers_at_once_run_each_cell_once(slurm, env, postgres_url,  # noqa: F811
                                                tiny_bert, tmp_path):
    db = database(postgres_url, "twodrivers")
    seeds = [4, 5]
    sweep = write_sweep(tmp_path, tiny_bert, "twodrivers", seeds, n=4)
    from robustbench_nlp.db import open_store

    open_store(db)  # schema first, so that both drivers race on the claims only
    cmd = [sys.executable, "-m", "robustbench_nlp.cli", *driver_args(sweep, db, tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    submitted = sum(int(m) for out in outs
                    for m in re.findall(r"submitted (\d+) cells? as job array", out))
    assert submitted == len(seeds)
    check_each_cell_ran_once(db, seeds, 4)
    assert len(jobs_of(db)) == len(seeds)


# -- claims and bad input, without Slurm (SQLite; fast) ----------------------------------------

def test_claims_are_atomic_and_dead_holders_reclaimable(tmp_path):
    """Of two claimants exactly one wins (INSERT on a new cell, compare-and-set on an old
    one); a live holder keeps its cell, a dead one loses it, and the old holder's writes
    then change nothing."""
    from robustbench_nlp.db import claims, open_store

    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    alive, dead = (lambda row: False), (lambda row: True)
    assert claims.claim_cell(store, "k", "cell", "s", "proc:a:1", alive) == 1
    assert claims.claim_cell(store, "k", "cell", "s", "proc:b:2", alive) is None
    cid = claims.cell_id("k")
    assert claims.attach_job(store, cid, 1, "7_0", "/l/7_0.out", "/l/7_0.err")
    assert claims.start_cell(store, cid, 1, "7_0", "node1", 11)["state"] == "claimed"
    assert claims.heartbeat(store, cid, 1, "run1")
    # the job is found dead: the next claimant takes the cell, the old job is locked out
    assert claims.claim_cell(store, "k", "cell", "s", "proc:b:2", dead) == 2
    assert claims.claim_cell(store, "k", "cell", "s", "proc:c:3", dead) == 3  # and so on
    assert not claims.heartbeat(store, cid, 2)
    assert not claims.end_cell(store, cid, 1, "finished", "run1")
    assert claims.start_cell(store, cid, 2, "8_0", "node2", 12) is None
    before = claims.start_cell(store, cid, 3, "9_0", "node2", 13)
    assert before["run_id"] == "run1" and [j["job_id"] for j in before["jobs"]] == ["7_0"]
    assert claims.end_cell(store, cid, 3, "interrupted", "run1", "interrupted (SIGTERM)")
    row = claims.get_cells(store, [cid])[cid]
    assert (row["state"], row["attempt"], row["run_id"]) == ("interrupted", 3, "run1")
    assert [(j["job_id"], j["state"]) for j in row["jobs"]] == [("7_0", "running"),
                                                               ("9_0", "interrupted")]
    # the same job requeued by Slurm (same id, same claim) continues; another job does not
    assert claims.start_cell(store, cid, 3, "9_1", "node2", 14) is None
    assert claims.start_cell(store, cid, 3, "9_0", "node3", 15)["state"] == "interrupted"
    assert claims.end_cell(store, cid, 3, "interrupted", "run1", "interrupted (SIGTERM)")
    # an interrupted cell is claimable without asking about its holder; a finished one never
    assert claims.claim_cell(store, "k", "cell", "s", "proc:d:4", alive) == 4
    assert claims.end_cell(store, cid, 4, "finished", "run1")
    assert claims.claim_cell(store, "k", "cell", "s", "proc:e:5", dead) is None


def test_holder_liveness():
    import os
    import socket
    from datetime import timedelta

    from robustbench_nlp.db.models import utcnow
    from robustbench_nlp.slurm import holder_dead

    now = utcnow()
    job = {"owner": "slurm:5_1", "heartbeat_at": now}
    assert not holder_dead(job, {"5_1": "RUNNING"}, 900)
    assert holder_dead(job, {"5_1": "CANCELLED"}, 900) and holder_dead(job, {}, 900)
    # no squeue here: the heartbeat decides
    assert not holder_dead(job, None, 900)
    assert holder_dead({**job, "heartbeat_at": now - timedelta(seconds=901)}, None, 900)
    me = f"proc:{socket.gethostname()}:{os.getpid()}"
    assert not holder_dead({"owner": me, "heartbeat_at": None}, None, 900)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert holder_dead({"owner": f"proc:{socket.gethostname()}:{p.pid}",
                        "heartbeat_at": now}, None, 900)


def test_bad_slurm_input_is_one_line(tmp_path, monkeypatch, capsys):
    from robustbench_nlp.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\ngrid: {defense: [finetune], seed: [0]}\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main(["sweep", str(sweep), "--launcher", "slurm", "--db",
                 f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert capsys.readouterr().err == (
        "error: --launcher slurm needs Slurm's sbatch on PATH (not found); run the sweep on "
        "a Slurm login node, or use --launcher local\n")
    assert main(["sweep", str(sweep), "--launcher", "slurm", "--max-in-flight", "0",
                 "--dry-run"]) == 2
    assert capsys.readouterr().err == "error: --max-in-flight must be at least 1, got 0\n"
    # a SQLite file and a partition of several nodes
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\necho '3 gpu*'\n")
    fake.chmod(0o755)
    (tmp_path / "sbatch").symlink_to("/bin/true")
    assert main(["sweep", str(sweep), "--launcher", "slurm", "--db",
                 f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert capsys.readouterr().err == (
        f"error: --db sqlite:///{tmp_path / 'x.db'} is a SQLite file, which Slurm jobs on "
        "several nodes (the default partition has 3) cannot share: use a PostgreSQL URL "
        "(postgresql+psycopg://user@host/db)\n")


def test_slurm_dry_run_shows_resources_per_defense(tmp_path, capsys):
    """A cell that trains asks for a GPU; one that attacks the defense another cell of the
    grid trains (AdvGLUE after TextFooler, same training settings) waits for it and asks for
    none."""
    from robustbench_nlp.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\ngrid: {defense: [freelb], attack: [textfooler, advglue]}\n")
    assert main(["sweep", str(sweep), "--launcher", "slurm", "--dry-run", "--db",
                 f"sqlite:///{tmp_path / 'x.db'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("submit: 1 GPU, 4 CPU, 32 GB, 60 min")
    assert out[1].endswith("submit: 0 GPU, 2 CPU, 8 GB, 60 min (after the training cells)")
    assert out[2] == "2 cells: 2 to submit, 0 finished, 0 held by running jobs"
    assert main(["sweep", str(sweep), "--status", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in status[1:3]] == ["pending", "pending"]
    assert status[-1] == "2 cells: 2 pending"
