"""End-to-end runs through the ``rbnlp`` command line, and its one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]


def rbnlp(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "robustbench_nlp.cli", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def rows(db, sql):
    with create_engine(f"sqlite:///{db}").connect() as c:
        return c.execute(text(sql)).all()


@pytest.mark.parametrize("args, message", [
    (["--defense", "peaf"], "error: unknown defense 'peaf'; did you mean 'peaft'?"),
    (["--attack", "textfool"], "error: unknown attack 'textfool'; did you mean 'textfooler'?"),
    (["--task", "sst3"], "error: unknown task 'sst3'; did you mean 'sst2'?"),
    (["--set", "epsilon=-1"], "error: epsilon: -1.0 is out of range (must be ≥ 0)"),
    (["--set", "adv_stepz=2"], "error: unknown parameter 'adv_stepz' for defense 'peaft'; "
                               "did you mean 'adv_steps'?"),
    (["--set", "adv_steps=two"], "error: adv_steps: expected int, got 'two'"),
    (["--attack-set", "resources=cloud"], "error: resources: 'cloud' is not one of auto, "
                                          "textattack, offline"),
])
def test_bad_options_fail_fast(tmp_path, args, message):
    db = tmp_path / "r.db"
    r = rbnlp("run", *args, "--db", f"sqlite:///{db}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(message)
    if db.exists():  # nothing half-written
        assert rows(db, "select count(*) from runs")[0][0] == 0


def test_unreachable_database(tmp_path):
    r = rbnlp("run", "--db", f"sqlite:///{tmp_path}/no/such/dir/r.db")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: cannot open database")


def test_external_defense_via_entry_point(tmp_path, data_dir):
    """A defense from another package, registered only through the entry-point group,
    runs end to end through ``rbnlp run`` and lands in the database."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(ROOT / "examples/external_defense/rbnlp_linear_probe.py", site)
    dist = site / "rbnlp_linear_probe-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rbnlp-linear-probe\n"
                                   "Version: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[robustbench_nlp.defenses]\n"
                                           "linear-probe = rbnlp_linear_probe:LinearProbe\n")
    env = {**os.environ, "PYTHONPATH": str(site), "RBNLP_DATA_DIR": str(data_dir)}
    listed = rbnlp("list", "defenses", env=env)
    assert "linear-probe: linear probe: frozen backbone" in listed.stdout
    db = tmp_path / "r.db"
    r = rbnlp("run", "--defense", "linear-probe", "--set", "train_examples=64",
              "--num-examples", "4", "--db", f"sqlite:///{db}", "--no-progress",
              "--runs-dir", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "AUA" in r.stdout
    (run_id, status, defense, trainable), = rows(
        db, "select id, status, defense, trainable_params from runs")
    assert (status, defense, trainable) == ("finished", "linear-probe", 384 * 2 + 2)
    assert rows(db, "select count(*) from examples")[0][0] == 4
    assert (tmp_path / "runs" / run_id / "defense.safetensors").is_file()
