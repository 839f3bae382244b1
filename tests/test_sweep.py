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


def test_epoch_eval_records_acc_and_aua(tmp_path, data_dir, monkeypatch):
    from robustbench_nlp.runner import RunConfig, execute

    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'e.db'}"
    cfg = RunConfig(defense="prompt-tuning", num_examples=2, epoch_eval_examples=3,
                    progress=False, db=db, defense_params={"train_examples": "32", "epochs": "2"},
                    attack_params={"resources": "offline"})
    m = execute(cfg, store=open_store(db), echo=lambda s: None)
    epochs = open_store(db).get_run(m["run_id"]).train_stats["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0 <= e["acc"] <= 100 and e["aua"] in (0.0, 100 / 3, 200 / 3, 100.0)
               for e in epochs)
    # the last epoch's clean accuracy is the run's ACC (same weights, same dev split)
    assert epochs[-1]["acc"] == pytest.approx(m["acc"])


def test_dry_run_estimate_counts_training_once(tmp_path):
    """Estimates come from finished runs with the same --set options; a cell whose training
    settings an earlier cell (or a stored run) shares costs its attack only."""
    from robustbench_nlp.runner import RunConfig, config_to_dict
    from robustbench_nlp.sweep import estimate_seconds, trained_keys

    db = f"sqlite:///{tmp_path / 'est.db'}"
    store = open_store(db)
    for rid, params, attack, train_s, attack_s in [
            ("a", {"train_examples": "2000"}, "textfooler", 100.0, 60.0),
            ("b", {}, "textfooler", 400.0, 80.0),
            ("c", {}, "advglue", 400.0, 3.0)]:
        cfg = RunConfig(defense="peaft", attack=attack, defense_params=params)
        store.create_run(id=rid, task="sst2", defense="peaft", attack=attack, model="minilm",
                         seed=0, num_examples=100, config={"run": config_to_dict(cfg)},
                         train_seconds=train_s, attack_seconds=attack_s, status="finished")
    p = tmp_path / "s.yaml"
    p.write_text("name: e\ngrid: {defense: [peaft], task: [sst2], attack: [textfooler, advglue],"
                 " seed: [1]}\nparams: {peaft: {train_examples: [2000]}}\n")
    tf, ag = load_sweep(p).cells
    assert estimate_seconds(store, tf) == 100.0 + (60.0 + 80.0) / 2
    assert estimate_seconds(store, ag) == 100.0 + 3.0
    trained = trained_keys(store)
    assert len(trained) == 2  # a, and b/c (same training settings)
    assert estimate_seconds(store, ag, trained) == 103.0  # seed 1 is not trained yet
    lines = []
    run_sweep(p, db=db, dry_run=True, echo=lines.append)
    assert lines[-1] == f"2 cells, 0 finished; estimated {(170.0 + 3.0) / 3600:.2f} h for the rest"
    # a defense/task with no finished run falls back to the default per-cell time
    p.write_text(p.read_text().replace("task: [sst2]", "task: [rte]"))
    lines = []
    run_sweep(p, db=db, dry_run=True, echo=lines.append)
    assert lines[-1].startswith("2 cells, 0 finished; estimated")


def test_cell_identity_uses_resolved_attack_options(tmp_path):
    """A run made under an older TextFooler default embedding (recorded in its resolved
    ``config["attack"]``, with no explicit attack_params) is the finished cell of a sweep that
    pins that embedding, and not of one that relies on today's default."""
    import dataclasses

    from robustbench_nlp.runner import RunConfig, config_to_dict, make_attack
    from robustbench_nlp.sweep import cell_status

    db = f"sqlite:///{tmp_path / 'id.db'}"
    store = open_store(db)
    cfg = RunConfig(defense="peaft")
    old = dataclasses.asdict(make_attack(cfg).config)
    assert old["embedding"] == "counterfitted-glove-50d-k1"  # today's default
    old["embedding"] = "counterfitted-glove-50d"  # what the run was attacked with
    store.create_run(id="old", task="sst2", defense="peaft", attack="textfooler",
                     model="minilm", seed=0, num_examples=100, status="finished",
                     config={"run": config_to_dict(cfg), "attack": old})
    p = tmp_path / "s.yaml"
    base = "name: i\ngrid: {defense: [peaft], task: [sst2], attack: [textfooler]}\n"
    p.write_text(base)
    (default_cell,) = load_sweep(p).cells
    p.write_text(base + "attack_params: {textfooler: {embedding: counterfitted-glove-50d}}\n")
    (pinned_cell,) = load_sweep(p).cells
    status = cell_status(store, [default_cell, pinned_cell])
    assert status == {pinned_cell.key: ("finished", "old")}
    lines = []
    run_sweep(p, db=db, dry_run=True, echo=lines.append)
    assert lines[-1].startswith("1 cells, 1 finished")
    # a hyperparameter written out at its default value is the default cell; another is not
    p.write_text(base + "params: {peaft: {adv_lambda: [0.5, 1]}}\n")
    explicit, other = load_sweep(p).cells
    assert explicit.key == default_cell.key != other.key


@pytest.mark.parametrize("task,same", [("sst2", True), ("rte", False)])
def test_attacked_column_keys_pair_task_cells_only(tmp_path, task, same):
    """A run recorded before ``attacked_column`` defaulted to "all" (``None`` then) is its
    cell on a single-sentence task, where the option changes nothing, and not on a pair
    task, where ``None`` froze the first segment."""
    import dataclasses

    from robustbench_nlp.runner import RunConfig, config_to_dict, make_attack
    from robustbench_nlp.sweep import cell_status

    store = open_store(f"sqlite:///{tmp_path / 'col.db'}")
    cfg = RunConfig(defense="peaft", task=task)
    old = dataclasses.asdict(make_attack(cfg).config)
    assert old["attacked_column"] == "all"  # today's default
    old["attacked_column"] = None
    store.create_run(id="old", task=task, defense="peaft", attack="textfooler",
                     model="minilm", seed=0, num_examples=100, status="finished",
                     config={"run": config_to_dict(cfg), "attack": old})
    p = tmp_path / "s.yaml"
    p.write_text(f"name: c\ngrid: {{defense: [peaft], task: [{task}], attack: [textfooler]}}\n")
    (cell,) = load_sweep(p).cells
    assert cell_status(store, [cell]) == ({cell.key: ("finished", "old")} if same else {})
