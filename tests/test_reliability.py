"""Reliability and safety: resumable runs (SIGKILL, SIGTERM, re-running a command), concurrent
writers on one SQLite file, bad input (one test per row of the README's troubleshooting
table), loading without unpickling, and the Alembic-versioned schema.

The end-to-end tests run real tiny jobs through ``rbnlp run`` (PEAFT on 32 SST-2 training
examples, TextFooler on the first 6 dev examples, 24-token truncation) in subprocesses with
one torch thread each.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from robustbench_nlp.cli import main
from robustbench_nlp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
N = 6  # attacked examples in the end-to-end runs
MAX_LENGTH = 24
TINY = ["--set", "train_examples=32", "--num-examples", str(N), "--max-length", str(MAX_LENGTH),
        "--no-progress"]
EXAMPLE_COLUMNS = "idx, result, original, adversarial, gold, pred_before, pred_after, " \
                  "queries, num_words, perturbed_words"


# ----------------------------------------------------------------------------- helpers
def q(db: Path, sql: str, *params) -> list[tuple]:
    """Rows of ``sql`` on SQLite file ``db`` (a separate reader connection)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def run_args(db: Path, runs: Path, seed: int = 0) -> list[str]:
    return ["run", *TINY, "--seed", str(seed), "--db", f"sqlite:///{db}", "--runs-dir", str(runs)]


def child_env(data_dir: Path) -> dict:
    return {**os.environ, "RBNLP_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1"}


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "robustbench_nlp.cli", *args], stdout=out,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=log.parent)


def finish(p: subprocess.Popen, log: Path, timeout: float = 1500) -> tuple[int, str]:
    rc = p.wait(timeout=timeout)
    return rc, log.read_text()


def wait_for_examples(db: Path, proc: subprocess.Popen, at_least: int,
                      timeout: float = 1200) -> int:
    """Poll the database until ``at_least`` example rows exist; returns the count seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                n = q(db, "select count(*) from examples")[0][0]
            except sqlite3.OperationalError:  # tables not created yet
                n = 0
            if n >= at_least:
                return n
        if proc.poll() is not None:
            pytest.fail(f"run exited with {proc.returncode} before {at_least} examples")
        time.sleep(0.1)
    pytest.fail(f"no {at_least} example rows after {timeout} s")


def metrics_of(db: Path, run_id: str) -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        row = dict(con.execute("select * from metrics where run_id = ?", (run_id,)).fetchone())
    finally:
        con.close()
    row.pop("run_id")
    return row


def examples_of(db: Path, run_id: str) -> list[tuple]:
    return q(db, f"select {EXAMPLE_COLUMNS} from examples where run_id = ? order by idx", run_id)


def only_run(db: Path) -> tuple[str, str]:
    (run_id, status), = q(db, "select id, status from runs")
    return run_id, status


# --------------------------------------------------------------- end-to-end, real runs
@pytest.fixture(scope="module")
def concurrent(tmp_path_factory, data_dir):
    """Two real runs (seeds 0 and 1) writing to one SQLite file at the same time."""
    d = tmp_path_factory.mktemp("concurrent")
    db = d / "shared.db"
    env = child_env(data_dir)
    procs = [(start(run_args(db, d / "runs", seed), env, d / f"seed{seed}.log"),
              d / f"seed{seed}.log") for seed in (0, 1)]
    results = [finish(p, log) for p, log in procs]
    return {"db": db, "results": results, "dir": d}


@pytest.mark.slow
def test_two_runs_share_one_sqlite_file(concurrent):
    db = concurrent["db"]
    for rc, log in concurrent["results"]:
        assert rc == 0, log[-3000:]
    runs = q(db, "select id, seed, status from runs order by seed")
    assert [(seed, status) for _, seed, status in runs] == [(0, "finished"), (1, "finished")]
    for run_id, _, _ in runs:
        idx = [r[0] for r in q(db, "select idx from examples where run_id = ?", run_id)]
        assert sorted(idx) == list(range(N))
        assert q(db, "select attacked from metrics where run_id = ?", run_id) == [(N,)]
    assert q(db, "pragma journal_mode") == [("wal",)]
    assert q(db, "pragma integrity_check") == [("ok",)]


@pytest.mark.slow
def test_long_sentences_truncated_and_recorded(concurrent, data_dir):
    """Sentences longer than --max-length are truncated, reported, and counted in the run
    record (counts recomputed here with the tokenizer directly)."""
    import json

    from transformers import AutoTokenizer

    from robustbench_nlp.backbones import resolve_model
    from robustbench_nlp.tasks import load_split
    from robustbench_nlp.training import subsample

    db = concurrent["db"]
    rc, log = concurrent["results"][0]
    assert rc == 0, log[-3000:]
    (data,), = q(db, "select data from runs where seed = 0")
    recorded = json.loads(data)["truncated"]
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm")[0])

    def count(sentences):
        return sum(len(ids) > MAX_LENGTH for ids in tok(list(sentences))["input_ids"])

    train, _ = load_split("sst2", "train", data_dir)
    dev, _ = load_split("sst2", "validation", data_dir)
    expected = {"max_length": MAX_LENGTH,
                "train": count(subsample(train, 32, 0)["sentence"]),
                "eval": count(dev["sentence"]), "attacked": count(dev["sentence"][:N])}
    assert expected["eval"] > 0
    assert recorded == expected
    assert (f"note: examples longer than {MAX_LENGTH} tokens were truncated (train "
            f"{expected['train']}, eval {expected['eval']}, attacked {expected['attacked']})"
            ) in log


@pytest.mark.slow
def test_sigkill_mid_attack_then_rerun_continues(concurrent, data_dir, tmp_path):
    """SIGKILL during the attack, then the very same command: the run continues from the
    trained checkpoint and the last committed example, and ends equal to an uninterrupted run
    with the same seed (the seed-0 run of ``concurrent``)."""
    db, runs = tmp_path / "kill.db", tmp_path / "runs"
    env = child_env(data_dir)
    p = start(run_args(db, runs), env, tmp_path / "first.log")
    wait_for_examples(db, p, 2)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=60) == -signal.SIGKILL
    run_id, status = only_run(db)
    stored = q(db, "select count(*) from examples")[0][0]
    assert status == "attacking"
    assert 2 <= stored < N, "the run finished before it could be killed mid-attack"
    assert q(db, "pragma integrity_check") == [("ok",)]
    assert (runs / run_id / "defense.safetensors").is_file()

    rc, log = finish(start(run_args(db, runs), env, tmp_path / "again.log"), tmp_path / "again.log")
    assert rc == 0, log[-3000:]
    assert f"continuing unfinished run {run_id} (attacking, {stored} examples stored)" in log
    assert f"resuming attack: {stored} of {N} examples already stored" in log
    assert "resumed trained defense from" in log
    assert only_run(db) == (run_id, "finished")
    idx = [r[0] for r in q(db, "select idx from examples")]
    assert len(idx) == N and sorted(idx) == list(range(N))

    ref_db = concurrent["db"]
    assert concurrent["results"][0][0] == 0
    (ref_id,), = q(ref_db, "select id from runs where seed = 0")
    assert metrics_of(db, run_id) == metrics_of(ref_db, ref_id)
    assert examples_of(db, run_id) == examples_of(ref_db, ref_id)


@pytest.mark.slow
def test_sigterm_leaves_run_resumable(concurrent, data_dir, tmp_path):
    """SIGTERM stops a run like Ctrl-C: exit status 143, run kept unfinished with its
    committed rows; ``--resume RUN_ID`` completes it to the uninterrupted result."""
    db, runs = tmp_path / "term.db", tmp_path / "runs"
    env = child_env(data_dir)
    log = tmp_path / "first.log"
    p = start(run_args(db, runs), env, log)
    wait_for_examples(db, p, 1)
    p.send_signal(signal.SIGTERM)
    rc, out = finish(p, log, timeout=300)
    run_id, status = only_run(db)
    assert rc == 143, out[-3000:]
    assert f"interrupted: run {run_id} kept unfinished" in out
    assert status == "attacking"
    assert q(db, "select error from runs") == [("interrupted (SIGTERM)",)]
    stored = q(db, "select count(*) from examples")[0][0]
    assert 1 <= stored < N
    assert q(db, "pragma integrity_check") == [("ok",)]

    resume = ["run", "--resume", run_id, "--db", f"sqlite:///{db}", "--no-progress"]
    rc, out = finish(start(resume, env, tmp_path / "resume.log"), tmp_path / "resume.log")
    assert rc == 0, out[-3000:]
    assert only_run(db) == (run_id, "finished")
    assert q(db, "select error from runs") == [(None,)]
    assert sorted(r[0] for r in q(db, "select idx from examples")) == list(range(N))
    (ref_id,), = q(concurrent["db"], "select id from runs where seed = 0")
    assert metrics_of(db, run_id) == metrics_of(concurrent["db"], ref_id)


# ------------------------------------------------------------ concurrent store writers
WRITER = textwrap.dedent("""
    import sys
    from robustbench_nlp.db import open_store
    store = open_store(sys.argv[1])
    rid = store.create_run(task="sst2", defense=sys.argv[2], attack="textfooler",
                           model="minilm", seed=0, config={"run": {}})
    for i in range(int(sys.argv[3])):
        store.add_example(rid, {"index": i, "original": ["a"], "adversarial": ["b"],
                                "attacked_segment": None, "gold": 1, "pred_before": 1,
                                "pred_after": 0, "result": "successful", "queries": 3,
                                "num_words": 1, "perturbed_words": 1})
        store.update_run(rid, attack_seconds=float(i))
    store.update_run(rid, status="finished")
""")


def test_concurrent_store_writers_keep_every_row(tmp_path):
    """Two processes creating the database and writing 150 committed examples each (plus a
    run update per example) into one fresh SQLite file at the same time."""
    db = tmp_path / "w.db"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"sqlite:///{db}", name, "150"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert sorted(q(db, "select defense, status, attack_seconds from runs")) == [
        ("a", "finished", 149.0), ("b", "finished", 149.0)]
    assert q(db, "select r.defense, count(*), count(distinct e.idx) from examples e join runs r "
                 "on r.id = e.run_id group by r.defense order by r.defense") == [
        ("a", 150, 150), ("b", 150, 150)]


# ------------------------------------------------------- resuming: ownership and matching
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stored_run(store, pid: int, **config):
    from robustbench_nlp.runner import RunConfig, config_to_dict

    record = {"run": config_to_dict(RunConfig(**config)), "defense": {"lr": 0.1}}
    rid = store.create_run(task="sst2", defense="peaft", attack="textfooler", model="minilm",
                           seed=0, num_examples=100, config=record, status="attacking",
                           host=socket.gethostname(), pid=pid)
    return rid, record


def test_run_of_a_live_process_is_never_taken_over(tmp_path):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.runner import RunConfig, _claim_matching_run, execute

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rid, record = _stored_run(store, sleeper.pid)
        with pytest.raises(ConfigError, match=f"run '{rid}' is still being worked on by "
                                              f"process {sleeper.pid} on "):
            execute(RunConfig(), resume=rid, store=store)
        assert _claim_matching_run(store, RunConfig(), record) is None
        assert store.get_run(rid).pid == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_rerun_matches_same_config_of_a_dead_process(tmp_path):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.runner import RunConfig, _claim_matching_run, same_config

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    rid, record = _stored_run(store, _dead_pid(), progress=False, db="sqlite:///x.db")
    # progress bars and the spelling of the database URL do not change results ...
    assert same_config(record, {**record, "run": {**record["run"], "progress": True, "db": None}})
    # ... a hyperparameter does
    assert not same_config(record, {**record, "defense": {"lr": 0.2}})
    assert _claim_matching_run(store, RunConfig(), {**record, "defense": {"lr": 0.2}}) is None
    claimed = _claim_matching_run(store, RunConfig(), record)
    assert claimed is not None and claimed.id == rid
    assert (claimed.host, claimed.pid) == (socket.gethostname(), os.getpid())
    store.update_run(rid, status="finished")
    assert _claim_matching_run(store, RunConfig(), record) is None  # finished: never continued


@pytest.mark.slow
def test_continued_untrained_run_reuses_a_trained_defense(data_dir, tmp_path, monkeypatch):
    """A run stopped before its defense was trained and continued by re-running its command
    attacks the trained defense of an earlier run with the same training settings, as a new
    run would, instead of training again."""
    import robustbench_nlp.runner as runner
    from robustbench_nlp.db import open_store

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")

    def cfg(**kw):
        return runner.RunConfig(defense="peaft", task="sst2", attack="advglue",
                                defense_params={"train_examples": "32"}, max_length=MAX_LENGTH,
                                progress=False, runs_dir=str(tmp_path / "runs"),
                                data_dir=str(data_dir), **kw)

    first = runner.execute(cfg(), store=store, echo=lambda s: None)["run_id"]

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", stop)  # same training settings, another run config
    with pytest.raises(KeyboardInterrupt):
        runner.execute(cfg(num_examples=5, reuse_trained=False), store=store,
                       echo=lambda s: None)
    (stale,) = store.unfinished_runs()
    assert stale.status == "training" and stale.train_seconds is None

    def trained_again(*args, **kwargs):
        raise AssertionError("the defense was trained again")

    monkeypatch.setattr(runner, "train", trained_again)
    log: list[str] = []
    m = runner.execute(cfg(num_examples=5), store=store, echo=log.append,
                       continue_matching=True)
    assert m["run_id"] == stale.id
    assert log[0].startswith(f"continuing unfinished run {stale.id} (training, 0 examples")
    assert (f"reusing the trained defense of run {first} (same training settings; --retrain "
            "to train again)") in log
    run, source = store.get_run(stale.id), store.get_run(first)
    assert run.status == "finished" and run.train_stats["reused_from"] == first
    assert run.train_seconds == source.train_seconds
    assert m["acc"] == source.metrics.acc  # the same weights on the same dev split
    # AdvGLUE attacks its whole dev set (148 SST-2 examples) whatever num_examples is
    assert [r["pred_after"] for r in store.examples(stale.id)] == \
        [r["pred_after"] for r in store.examples(first)] and len(store.examples(first)) == 148


# ------------------------------------------- bad input: one test per troubleshooting row
def cli(capsys, *args) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err.strip()


def no_partial_run(db: Path, runs: Path) -> bool:
    empty_db = not db.exists() or q(db, "select count(*) from runs") == [(0,)]
    return empty_db and (not runs.exists() or not any(runs.iterdir()))


def fake_mirror(root: Path, train: bytes, dev: bytes = b"sentence\tlabel\nfine\t1\n") -> Path:
    d = root / "mirror" / "glue" / "sst2"
    d.mkdir(parents=True)
    (d / "train.tsv").write_bytes(train)
    (d / "dev.tsv").write_bytes(dev)
    return root / "mirror"


def run_cli(capsys, tmp_path, *args) -> tuple[int, str, bool]:
    db, runs = tmp_path / "r.db", tmp_path / "runs"
    rc, err = cli(capsys, "run", "--db", f"sqlite:///{db}", "--runs-dir", str(runs),
                  "--no-progress", *args)
    return rc, err, no_partial_run(db, runs)


def test_row_missing_data_directory(capsys, tmp_path):
    rc, err, clean = run_cli(capsys, tmp_path, "--data-dir", str(tmp_path / "nope"))
    assert (rc, clean) == (2, True)
    assert err == (f"error: data directory '{tmp_path / 'nope'}' is not a GLUE mirror "
                   "(missing glue/sst2/dev.tsv)")


@pytest.mark.parametrize("content, message", [
    (b"sentence\tlabels\nfine film\t1\n",
     "missing column(s) 'label' (found 'sentence', 'labels')"),
    (b"sentence\tlabel\nfine film\t1\ndull\tpositive\n",
     "unknown label 'positive' in data row 2 (expected one of [0, 1])"),
    (b"sentence\tlabel\nfine film\t1\n \xe3\x80\x80 \t0\n", "empty 'sentence' in data row 2"),
    (b"sentence\tlabel\nfine film\t1\ncaf\xe9 au lait\t0\n",
     "not valid UTF-8 (invalid continuation byte at byte 30)"),  # 0-based offset of \xe9
    (b"sentence\tlabel\nfine\tfilm\t1\n",
     "line 2 has more tab-separated fields than the header (a tab inside a sentence?)"),
], ids=["missing-column", "unknown-label", "whitespace-sentence", "non-utf8", "extra-field"])
def test_row_malformed_tsv(capsys, tmp_path, content, message):
    if b"\xe9" in content:
        assert content.index(b"\xe9") == 30
    mirror = fake_mirror(tmp_path, content)
    rc, err, clean = run_cli(capsys, tmp_path, "--data-dir", str(mirror))
    assert (rc, clean) == (2, True)
    assert err == f"error: {mirror / 'glue/sst2/train.tsv'}: {message}"


@pytest.mark.parametrize("args, message", [
    (["--defense", "peaf"], "error: unknown defense 'peaf'; did you mean 'peaft'?"),
    (["--attack", "textfool"], "error: unknown attack 'textfool'; did you mean 'textfooler'?"),
    (["--task", "sst3"], "error: unknown task 'sst3'; did you mean 'sst2'?"),
    (["--model", "minlm"], "error: unknown model 'minlm'; did you mean 'minilm'? (an alias "
                           "from `rbnlp list models`, a local directory or a Hub id)"),
    (["--model", "./no/such/model"], "error: model directory './no/such/model' not found"),
], ids=["defense", "attack", "task", "model", "model-dir"])
def test_row_unknown_name(capsys, tmp_path, data_dir, args, message):
    rc, err, clean = run_cli(capsys, tmp_path, "--data-dir", str(data_dir), *args)
    assert (rc, clean) == (2, True)
    assert err.startswith(message), err


@pytest.mark.parametrize("args, message", [
    (["--set", "epsilon=-1"], "error: epsilon: -1.0 is out of range (must be ≥ 0)"),
    (["--set", "adv_stepz=2"], "error: unknown parameter 'adv_stepz' for defense 'peaft'; "
                               "did you mean 'adv_steps'?"),
    (["--set", "lr=fast"], "error: lr: expected float, got 'fast'"),
    (["--num-examples", "-3"], "error: num_examples: -3 is out of range (must be ≥ 1)"),
    (["--attack-set", "query_budget=0"], "error: query_budget: 0 is out of range (must be ≥ 1)"),
], ids=["range", "unknown-key", "type", "run-option", "attack-option"])
def test_row_invalid_hyperparameter(capsys, tmp_path, args, message):
    rc, err, clean = run_cli(capsys, tmp_path, *args)
    assert (rc, clean) == (2, True)
    assert err == message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_row_unreachable_database(capsys, tmp_path):
    runs = tmp_path / "runs"
    bad = f"sqlite:///{tmp_path}/no/such/dir/r.db"
    rc, err = cli(capsys, "run", "--db", bad, "--runs-dir", str(runs))
    assert (rc, err) == (2, f"error: cannot open database '{bad}': unable to open database file")
    rc, err = cli(capsys, "run", "--db", "postgres://me@localhost/rbnlp", "--runs-dir", str(runs))
    assert (rc, err) == (2, "error: cannot use database URL 'postgres://me@localhost/rbnlp': "
                            "Can't load plugin: sqlalchemy.dialects:postgres; did you mean "
                            "postgresql://...?")
    assert not runs.exists()


def test_row_unreachable_postgres_server(capsys, tmp_path):
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    port = _closed_port()
    url = f"postgresql+psycopg://rbnlp:secret@127.0.0.1:{port}/rbnlp"
    rc, err = cli(capsys, "run", "--db", url, "--runs-dir", str(tmp_path / "runs"))
    assert rc == 2
    assert err.startswith(f"error: cannot open database 'postgresql+psycopg://rbnlp:***@"
                          f"127.0.0.1:{port}/rbnlp': connection failed: ")
    assert "Connection refused" in err and "secret" not in err


# ------------------------------------------------------------------- schema versions
def _old_database(path: Path, legacy: bool) -> str:
    """A database as revision 0001 wrote it, with one finished run; ``legacy`` removes the
    Alembic marker (a database written before Alembic was adopted)."""
    from alembic import command

    from robustbench_nlp.db.store import _migration_config

    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_migration_config(conn), "0001")
        conn.execute(text(
            "insert into runs (id, created_at, updated_at, status, task, defense, attack, model,"
            " seed, config, backbone, versions, resources, data, train_stats) values ('old1', "
            "'2026-01-01', '2026-01-01', 'finished', 'sst2', 'peaft', 'textfooler', 'minilm', 0,"
            " '{}', '{}', '{}', '{}', '{}', '{}')"))
        if legacy:
            conn.execute(text("drop table alembic_version"))
    engine.dispose()
    return url


@pytest.mark.parametrize("legacy", [False, True], ids=["revision-0001", "pre-alembic"])
def test_row_older_schema_is_migrated(capsys, tmp_path, legacy):
    from robustbench_nlp.db.store import head_revision

    db = tmp_path / "old.db"
    url = _old_database(db, legacy)
    assert cli(capsys, "show", "old1", "--db", url) == (0, "")
    assert q(db, "select version_num from alembic_version") == [(head_revision(),)]
    assert q(db, "select id, status, host, pid from runs") == [("old1", "finished", None, None)]
    tables = {r[0] for r in q(db, "select name from sqlite_master where type = 'table'")}
    assert "rbnlp_schema" not in tables


def test_row_unknown_schema_is_refused(capsys, tmp_path):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.db.store import head_revision

    db = tmp_path / "new.db"
    open_store(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = 'f00dcafe'")
    con.commit()
    con.close()
    rc, err = cli(capsys, "run", "--db", f"sqlite:///{db}", "--runs-dir", str(tmp_path / "runs"))
    assert rc == 2
    assert err == (f"error: database 'sqlite:///{db}' has schema revision 'f00dcafe', which "
                   f"this rbnlp does not know (it writes revision '{head_revision()}'; the "
                   "database was probably written by a newer rbnlp): upgrade robustbench_nlp "
                   "or use another --db")
    assert q(db, "select count(*) from runs") == [(0,)]


def test_models_match_migrations(tmp_path):
    """db/models.py and the head migration describe the same schema (a model change without
    a revision fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from robustbench_nlp.db import open_store
    from robustbench_nlp.db.models import Base

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []


# ------------------------------------------------------------------------ safe loading
UNSAFE = [(re.compile(r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without "
           "weights_only=True"),
          (re.compile(r"\b(c?[pP]ickle|dill|joblib|cloudpickle)\.loads?\("), "unpickling"),
          (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)")]


def test_no_unpickling_anywhere():
    """No project source loads pickles (models: safetensors / transformers, arrays: numpy
    without allow_pickle)."""
    offences = []
    for folder in ("robustbench_nlp", "defenses", "attacks", "db", "app", "examples",
                   "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for pattern, what in UNSAFE:
                    if pattern.search(line):
                        offences.append(f"{path.relative_to(ROOT)}:{n}: {what}")
    assert offences == []


def test_defense_checkpoint_is_safetensors_only(tmp_path):
    import torch

    from robustbench_nlp.runner import load_defense

    model = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="trained defense not found"):
        load_defense(tmp_path, model)
    # a pickle under the safetensors name is rejected, never unpickled
    torch.save(model.state_dict(), tmp_path / "defense.safetensors")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_defense(tmp_path, model)


def test_training_key_ignores_attack_settings_only():
    """Runs that differ only in the attack share a trained defense; any training setting
    (a defense hyperparameter, the seed, the truncation length) keeps them apart."""
    from robustbench_nlp.runner import RunConfig, config_to_dict, training_key

    def record(defense=None, max_length=128, **run):
        return {"run": config_to_dict(RunConfig(**run)), "defense": defense or {"lr": 0.1},
                "attack": {"query_budget": 100}, "max_length": max_length}

    base = training_key(record())
    assert training_key({**record(attack="advglue", num_examples=5, workers=4,
                                  attack_params={"query_budget": "7"}),
                         "attack": {"limit": 5}}) == base
    for other in (record(defense={"lr": 0.2}), record(seed=1), record(max_length=64),
                  record(epoch_eval_examples=10), record(pooling="cls")):
        assert training_key(other) != base


def test_training_key_uses_the_resolved_defense_config():
    """``--set adv_lambda=0.5`` and the default λ = 0.5 train the same defense (the resolved
    config decides); another λ does not. Records without a resolved defense config (older
    runs) still compare their raw ``defense_params``."""
    from robustbench_nlp.runner import RunConfig, training_key, training_record

    default = training_record(RunConfig(defense="peaft"))
    explicit = training_record(RunConfig(defense="peaft",
                                         defense_params={"adv_lambda": "0.5"}))
    other = training_record(RunConfig(defense="peaft", defense_params={"adv_lambda": "1"}))
    assert default["defense"]["adv_lambda"] == 0.5 and default["max_length"] == 64
    assert training_key(explicit) == training_key(default) != training_key(other)
    legacy = [{"run": r["run"]} for r in (default, explicit)]
    assert training_key(legacy[0]) != training_key(legacy[1])
