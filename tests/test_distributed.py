"""Runs past one process and one machine (:mod:`robustbench_nlp.distributed`).

* ``accelerate launch`` with 2 CPU processes (gloo) trains the same model as one process and
  stores the run once. Tolerance: the tiny backbone has no dropout and full fine-tuning draws
  no random perturbation, so the two runs differ only by float summation order (each process
  computes its half-batch's gradient, then they are averaged); the trained tensors must agree
  within 1e-5 absolute and the stored metrics exactly.
* ``--shard i/n`` against a real PostgreSQL server (Debian's ``postgresql``, started by a
  fixture on 127.0.0.1 in a temporary cluster): two shards fill one run; the merged metrics
  equal a one-process run's.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text

from robustbench_nlp.distributed import (Processes, average_gradients, local_part,
                                         missing_examples, parse_shard, shard_of)
from robustbench_nlp.errors import ConfigError

from test_backbones import make_tiny_backbone

RUN = ["--defense", "finetune", "--set", "train_examples=32", "--set", "batch_size=8",
       "--set", "epochs=1", "--num-examples", "4", "--query-budget", "30",
       "--attack-set", "resources=offline", "--mixed-precision", "no", "--no-progress",
       "--fresh"]
METRICS = ("acc", "aua", "asr", "attacked", "successful", "failed", "skipped",
           "avg_queries", "avg_perturbed_pct", "attacked_clean_acc", "avg")


def rbnlp(*args, env=None, cwd=None, launcher=None):
    cmd = (launcher or [sys.executable, "-m"]) + ["robustbench_nlp.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def one(url, sql):
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(text(sql)).all()
    finally:
        eng.dispose()


def trained_state(runs_dir: Path, run_id: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(runs_dir / run_id / "defense.safetensors"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT without dropout (so multi-process training is comparable)."""
    return make_tiny_backbone("bert", tmp_path_factory.mktemp("tiny") / "bert", dropout=0.0)


# -- units -------------------------------------------------------------------------------------

def test_shard_parsing_and_slices():
    import pandas as pd

    assert parse_shard(None) is None and parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
    df = pd.DataFrame({"index": range(7)})
    parts = [shard_of(df, (i, 3))["index"].tolist() for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert missing_examples(range(7), [{"index": i} for i in (0, 3, 6)]) == [1, 2, 4, 5]


def test_local_part_and_single_process_average_is_identity():
    import numpy as np

    two = [Processes(r, 2) for r in range(2)]
    idx = np.arange(5)
    assert [local_part(idx, p).tolist() for p in two] == [[0, 2, 4], [1, 3]]
    assert [local_part(idx[:1], p).tolist() for p in two] == [[0], [0]]  # too small: whole
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    average_gradients([p], 1, 4, Processes())
    assert p.grad.tolist() == [2.0, 2.0, 2.0]


# -- accelerate launch, 2 CPU processes --------------------------------------------------------

def test_accelerate_two_processes_match_one(tiny_bert, tmp_path, data_dir):
    env = {"RBNLP_DATA_DIR": str(data_dir)}
    args = [*RUN, "--model", str(tiny_bert), "--runs-dir", str(tmp_path / "runs")]
    single = f"sqlite:///{tmp_path}/single.db"
    r = rbnlp("run", *args, "--db", single, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    multi = f"sqlite:///{tmp_path}/multi.db"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m"]
    r = rbnlp("run", *args, "--db", multi, env=env, cwd=tmp_path, launcher=launcher)
    assert r.returncode == 0, r.stderr[-3000:]
    # written once: one run, one row per attacked example, one summary table
    (run_m, status, backbone), = one(multi, "select id, status, backbone from runs")
    (run_s,), = one(single, "select id from runs")
    assert status == "finished" and '"processes": 2' in backbone
    assert one(multi, "select count(*) from examples")[0][0] == 4
    # peak memory recorded next to the trainable-parameter count
    (peak_m, train_m), = one(multi, "select peak_memory_mb, trainable_params from runs")
    (peak_s, train_s), = one(single, "select peak_memory_mb, trainable_params from runs")
    assert train_m == train_s > 900_000 and peak_m > 0 and peak_s > 0
    assert r.stdout.count("ACC (clean, full dev)") == 1
    a, b = trained_state(tmp_path / "runs", run_s), trained_state(tmp_path / "runs", run_m)
    assert a.keys() == b.keys() and len(a) > 30
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"largest difference of a trained tensor, 2 processes vs 1: {worst:.3g}")
    assert worst < 1e-5, worst
    cols = ", ".join(METRICS)
    assert one(single, f"select {cols} from metrics") == one(multi, f"select {cols} from metrics")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- attack shards in a shared PostgreSQL database ----------------------------------------------

def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), its SQLAlchemy URL.

    As root the server runs as the ``postgres`` system user (``runuser``), since PostgreSQL
    refuses to run as root; its folder is then a fresh temporary directory outside pytest's
    (which only root may enter)."""
    pytest.importorskip("psycopg", reason="install the postgres extra: pip install -e .[postgres]")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="rbnlp-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(prefix + [initdb, "-D", str(data), "-U", "rbnlp", "--auth=trust",
                             "-E", "UTF8", "--no-locale"], check=True, capture_output=True)
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                             f"-h 127.0.0.1 -p {port} -k {sock}", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://rbnlp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_shards_in_postgres_equal_one_run(tiny_bert, tmp_path, data_dir, postgres_url):
    env = {"RBNLP_DATA_DIR": str(data_dir)}
    args = [*RUN, "--model", str(tiny_bert), "--runs-dir", str(tmp_path / "runs")]
    single = f"sqlite:///{tmp_path}/single.db"
    r = rbnlp("run", *args, "--db", single, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # shard 0 trains and attacks rows 0 and 2 of the 4
    r = rbnlp("run", *args, "--db", postgres_url, "--shard", "0/2", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_id, status), = one(postgres_url, "select id, status from runs")
    assert status == "attacking"
    assert one(postgres_url, "select count(*) from examples")[0][0] == 2
    r = rbnlp("merge", run_id, "--db", postgres_url, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert f"run '{run_id}': 2 of 4 examples are not stored yet" in r.stderr
    # shard 1 joins the trained run (another machine would share the runs folder or a copy)
    r = rbnlp("run", "--resume", run_id, "--shard", "1/2", "--db", postgres_url,
              "--runs-dir", str(tmp_path / "runs"), "--no-progress", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "AUA" in r.stdout
    assert one(postgres_url, "select status from runs")[0][0] == "finished"
    # the same model was trained (deterministic on CPU), so the metrics must agree
    (ref_id,), = one(single, "select id from runs")
    a, b = trained_state(tmp_path / "runs", ref_id), trained_state(tmp_path / "runs", run_id)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cols = ", ".join(METRICS)
    (ref,), (got,) = one(single, f"select {cols} from metrics"), \
        one(postgres_url, f"select {cols} from metrics")
    assert list(got) == [v if v is None else pytest.approx(v, rel=1e-12) for v in ref]
    rows = "select idx, result, queries, pred_after from examples order by idx"
    assert one(single, rows) == one(postgres_url, rows)
    r = rbnlp("merge", run_id, "--db", postgres_url, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "AUA" in r.stdout
