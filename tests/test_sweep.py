"""`rbnlp sweep`: grid expansion, skipping finished cells, dry run."""

from __future__ import annotations

import pytest

from robustbench_nlp.db import open_store
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.sweep import load_sweep, run_sweep

SPEC = """
name: tiny
grid:
  defense: [prompt-tuning, peaft]
  task: [sst2]
  attack: [textfooler]
  seed: [0]
params:
  peaft: {adv_lambda: [0.5, 1], train_examples: 32}
  prompt-tuning: {train_examples: 32}
fixed: {num_examples: 2, progress: false}
attack_params:
  textfooler: {resources: offline}
"""


def test_grid_expansion(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(SPEC)
    sw = load_sweep(p)
    assert [c.label() for c in sw.cells] == [
        "prompt-tuning/sst2/textfooler/minilm/seed0 [train_examples=32]",
        "peaft/sst2/textfooler/minilm/seed0 [adv_lambda=0.5,train_examples=32]",
        "peaft/sst2/textfooler/minilm/seed0 [adv_lambda=1,train_examples=32]",
    ]
    assert len({c.key for c in sw.cells}) == 3
    p.write_text("grid: {defenses: [peaft]}\n")
    with pytest.raises(ConfigError, match="unknown grid key"):
        load_sweep(p)


def test_sweep_runs_then_skips(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "s.yaml"
    p.write_text(SPEC.replace("adv_lambda: [0.5, 1]", "adv_lambda: [0.5]"))
    db = f"sqlite:///{tmp_path / 'sweep.db'}"
    first = run_sweep(p, db=db)
    assert [r["status"] for r in first] == ["finished", "finished"]
    again = run_sweep(p, db=db)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in first]
    df = open_store(db).runs_frame()
    assert len(df) == 2 and set(df["status"]) == {"finished"}
    lines = []
    run_sweep(p, db=db, dry_run=True, echo=lines.append)
    assert lines[-1].startswith("2 cells, 2 finished")
