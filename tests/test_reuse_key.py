"""The reuse key of trained defenses (runner.training_key): settings plus the build (package
version, commit of a checkout, resolved precision, device type); issue #19."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch

from robustbench_nlp.db import open_store
from robustbench_nlp.runner import (RunConfig, build_record, code_identity, config_to_dict,
                                    find_trained_run, plan, resolved_precision, run_record,
                                    source_commit, training_key, training_record)

BUILD = {"version": "0.1.0", "commit": "a" * 40, "precision": "fp32", "device_type": "cpu"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A git repository laid out like the project: robustbench_nlp/ and docs/, one commit."""
    root = tmp_path / "repo"
    (root / "robustbench_nlp").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "robustbench_nlp" / "runner.py").write_text("x = 1\n")
    (root / "docs" / "a.md").write_text("doc\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    return root


def test_training_key_exact():
    record = {"run": {"defense": "peaft", "task": "rte", "seed": 2, "num_examples": 5,
                      "device": "cuda:1", "workers": 3, "attack": "advglue"},
              "defense": {"lr": 0.1}, "attack": {"query_budget": 9}, "max_length": 128,
              "build": BUILD}
    assert training_key(record) == {
        "run": {"defense": "peaft", "task": "rte", "model": "minilm", "pooling": None,
                "seed": 2, "max_length": None, "mixed_precision": "auto",
                "epoch_eval_examples": None},
        "defense": {"lr": 0.1}, "max_length": 128,
        "build": {"version": "0.1.0", "commit": "a" * 40, "precision": "fp32",
                  "device_type": "cpu"}}


@pytest.mark.parametrize("field,value", [("version", "0.2.0"), ("commit", "b" * 40),
                                         ("commit", "a" * 40 + "+dirty.0123456789ab"),
                                         ("precision", "bf16"), ("device_type", "cuda")])
def test_each_build_field_separates_keys(field, value):
    base = {"run": {"defense": "peaft"}, "defense": {"lr": 0.1}, "max_length": 64,
            "build": BUILD}
    other = {**base, "build": {**BUILD, field: value}}
    assert training_key(other) != training_key(base)
    assert training_key({**base, "build": dict(BUILD)}) == training_key(base)


def test_records_without_build_are_read_but_never_match():
    """Runs stored before the build was recorded: the key still computes (build None) and
    differs from every record made now, so they are not silently reused."""
    legacy = {"run": config_to_dict(RunConfig(defense="peaft")), "defense": {"lr": 0.1},
              "max_length": 64}
    key = training_key(legacy)
    assert key["build"] is None and key["defense"] == {"lr": 0.1}
    now = training_record(RunConfig(defense="peaft", device="cpu"))
    assert training_key({**legacy, "build": now["build"]})["build"] == now["build"]
    assert training_key(legacy) != training_key({**legacy, "build": now["build"]})


def test_resolved_precision(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [resolved_precision(m, cpu) for m in ("auto", "no", "bf16")] == \
        ["fp32", "fp32", "bf16"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert [resolved_precision(m, gpu) for m in ("auto", "no", "bf16")] == \
        ["bf16", "fp32", "bf16"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolved_precision("auto", gpu) == "fp32"
    # auto on a bf16 GPU and auto on a CPU: one setting, two keys
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert build_record("auto", gpu)["precision"] == "bf16"
    assert build_record("auto", cpu)["precision"] == "fp32"
    assert (build_record("auto", gpu)["device_type"], build_record("auto", cpu)["device_type"]) \
        == ("cuda", "cpu")


def test_source_commit_clean_dirty_and_not_a_checkout(checkout, tmp_path):
    head = git(checkout, "rev-parse", "HEAD")
    assert len(head) == 40 and source_commit(checkout) == head
    (checkout / "docs" / "a.md").write_text("changed doc\n")  # outside the package: clean
    (checkout / "notes.txt").write_text("untracked, outside\n")
    assert source_commit(checkout) == head
    runner = checkout / "robustbench_nlp" / "runner.py"
    runner.write_text("x = 2\n")
    dirty = source_commit(checkout)
    diff = subprocess.run(["git", "-C", str(checkout), "diff", "HEAD", "--binary", "--no-color",
                           "--", "robustbench_nlp"], check=True, capture_output=True).stdout
    assert dirty == f"{head}+dirty.{hashlib.sha256(diff).hexdigest()[:12]}"
    assert source_commit(checkout) == dirty  # same state, same mark: reusable
    runner.write_text("x = 3\n")
    assert source_commit(checkout) not in (dirty, head)  # another edit, another mark
    runner.write_text("x = 1\n")
    assert source_commit(checkout) == head  # reverted: clean again
    plugin = checkout / "robustbench_nlp" / "new_plugin.py"  # untracked code is code
    plugin.write_text("y = 1\n")
    with_plugin = source_commit(checkout)
    assert with_plugin.startswith(head + "+dirty.")
    plugin.write_text("y = 2\n")
    assert source_commit(checkout) not in (with_plugin, head)
    plugin.unlink()
    (checkout / "robustbench_nlp" / "__pycache__").mkdir()  # ignored: not dirty
    (checkout / "robustbench_nlp" / "__pycache__" / "runner.pyc").write_bytes(b"\0")
    assert source_commit(checkout) == head
    # a folder inside a repository that is not its top level (site-packages in a venv
    # inside a checkout), and a folder outside any repository, have no commit
    assert source_commit(checkout / "robustbench_nlp") is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert source_commit(plain) is None


def test_code_identity_of_this_install():
    ident = code_identity()
    assert ident["version"] == metadata.version("robustbench_nlp")
    root = Path(__import__("robustbench_nlp").__file__).resolve().parent.parent
    assert ident["commit"] == source_commit(root)  # until the tree changes in this process
    assert code_identity() is ident  # computed once per process


def test_training_record_build_and_sweep_detection(tmp_path):
    """A run stored by this code (its record from run_record, as execute stores it) has the
    training key of the cell's training_record: the sweep's trained-cell detection and
    find_trained_run see it. The same run stored without a build (an old run) is neither."""
    from robustbench_nlp.sweep import _cell_train_key, trained_keys

    cpu = torch.device("cpu")
    cfg = RunConfig(defense="peaft", task="sst2", device="cpu", seed=4,
                    defense_params={"train_examples": "32"})
    rec = training_record(cfg, cpu)
    assert rec["build"] == {"version": metadata.version("robustbench_nlp"),
                            "commit": code_identity()["commit"], "precision": "fp32",
                            "device_type": "cpu"}
    assert training_record(RunConfig(mixed_precision="bf16"), cpu)["build"]["precision"] == "bf16"
    stored = run_record(plan(cfg), cpu)
    assert training_key(stored) == training_key(rec)
    # an attack-only difference still shares the trained defense
    other_attack = RunConfig(**{**config_to_dict(cfg), "attack": "advglue", "num_examples": 7})
    assert training_key(run_record(plan(other_attack), cpu)) == training_key(rec)

    store = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    for rid, config in (("new", stored),
                        ("old", {k: v for k, v in stored.items() if k != "build"})):
        run_dir = tmp_path / rid
        run_dir.mkdir()
        (run_dir / "defense.safetensors").write_bytes(b"")
        store.create_run(id=rid, task="sst2", defense="peaft", attack="textfooler",
                         model="minilm", seed=4, num_examples=100, config=config,
                         status="finished", train_seconds=1.0, artifact_dir=str(run_dir))
    keys = trained_keys(store)
    assert len(keys) == 2 and _cell_train_key(cfg) in keys
    found = find_trained_run(store, cfg, stored)
    assert found is not None and found[0].id == "new"
    store.update_run("new", status="failed")  # only the old run is left: not reused
    assert store.trained_runs(task="sst2", defense="peaft", model="minilm", seed=4)[0].id \
        == "old"
    assert find_trained_run(store, cfg, stored) is None
