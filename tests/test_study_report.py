"""scripts/study_report.py: docs/results.md is computed from the runs in the database."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from robustbench_nlp.db import Store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "study_report.py"


@pytest.fixture(scope="module")
def report_mod():
    spec = importlib.util.spec_from_file_location("study_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(store, rid, defense, seed, acc, aua, params, attack="textfooler", task="sst2",
         dcfg=None, epoch_eval=None, train_stats=None, num_examples=100, **metrics):
    if not params and not dcfg:  # a default run records its defense's defaults on its task
        import dataclasses

        from robustbench_nlp.runner import RunConfig, make_defense

        dcfg = dataclasses.asdict(make_defense(RunConfig(defense=defense, task=task)).config)
    config = {"run": {"defense_params": params, "epoch_eval_examples": epoch_eval},
              "defense": dcfg or {"carrier": "prompt", "adv_lambda": 0.5}}
    store.create_run(id=rid, task=task, defense=defense, attack=attack, model="minilm",
                     seed=seed, num_examples=num_examples, config=config, trainable_params=8450,
                     train_seconds=100.0 + seed, train_stats=train_stats or {},
                     status="finished", versions={"torch": "2.13.0+cpu"})
    store.save_metrics(rid, acc=acc, aua=aua, avg=(acc + aua) / 2, asr=100.0 - aua,
                       avg_queries=50.0, avg_perturbed_pct=12.0, attacked=num_examples,
                       successful=80, failed=int(aua), skipped=20 - int(aua), **metrics)
    # the attacked examples: indices 0 .. AUA-1 robust (failed), then 80 successful, then
    # skipped, so two runs' robust sets are nested and every discordant example favours the
    # run with the higher AUA (the paired tests below are computed by hand from that)
    for i in range(num_examples):
        result = "failed" if i < int(aua) else "successful" if i < int(aua) + 80 else "skipped"
        store.add_example(rid, {"index": i, "original": ("a film",), "adversarial": ("a film",),
                                "attacked_segment": None, "gold": 1, "pred_before": 1,
                                "pred_after": 1 if result == "failed" else 0, "result": result,
                                "queries": 10, "num_words": 2, "perturbed_words": 0,
                                "extra": {}})


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = Store(url)
    study = {"train_examples": "2000"}
    for seed, (acc, aua) in enumerate([(80.0, 1.0), (82.0, 2.0), (84.0, 6.0)]):
        _run(store, f"pe{seed}", "peaft", seed, acc, aua, study)
        _run(store, f"ag{seed}", "peaft", seed, acc, 40.0 + seed, study, attack="advglue",
             train_stats={"reused_from": f"pe{seed}"})
    _run(store, "ft0", "finetune", 0, 79.0, 0.0, study, dcfg={})
    for seed, aua in enumerate([0.0, 1.0, 2.0]):
        _run(store, f"fl{seed}", "freelb", seed, 81.0, aua, study, dcfg={})
        _run(store, f"ro{seed}", "rose", seed, 80.0, 0.0, study, dcfg={})
    _run(store, "lam0", "peaft", 0, 82.0, 0.0, {**study, "adv_lambda": "0"},
         dcfg={"carrier": "prompt", "adv_lambda": 0.0})
    _run(store, "default", "peaft", 0, 79.9, 0.0, {})                    # the main job
    _run(store, "agdef", "peaft", 0, 79.9, 41.2, {}, attack="advglue",
         train_stats={"reused_from": "default"})
    _run(store, "fldef", "freelb", 0, 81.5, 1.0, {}, dcfg={})
    _run(store, "fldef1", "freelb", 1, 82.5, 3.0, {}, dcfg={})
    _run(store, "rodef", "rose", 0, 80.5, 5.0, {}, dcfg={})
    _run(store, "mrpc", "peaft", 0, 69.9, 66.0, {}, task="mrpc", degenerate=True,
         pred_distribution={"not_equivalent": 1.96, "equivalent": 98.04},
         gold_distribution={"not_equivalent": 31.62, "equivalent": 68.38})
    # RTE: FreeLB's seed-0 AUA comes from a degenerate classifier and is left out;
    # QNLI: PEAFT's only run is degenerate, so QNLI is not compared
    _run(store, "rtepe", "peaft", 0, 55.0, 30.0, {}, task="rte")
    _run(store, "rtefl", "freelb", 0, 56.0, 40.0, {}, task="rte", dcfg={}, degenerate=True)
    _run(store, "rtefl1", "freelb", 1, 57.0, 20.0, {}, task="rte", dcfg={})
    _run(store, "rtero", "rose", 0, 54.0, 10.0, {}, task="rte", dcfg={})
    _run(store, "qnpe", "peaft", 0, 50.8, 52.0, {}, task="qnli", degenerate=True,
         pred_distribution={"entailment": 99.6, "not_entailment": 0.4},
         gold_distribution={"entailment": 50.5, "not_entailment": 49.5})
    _run(store, "qnfl", "freelb", 0, 70.0, 5.0, {}, task="qnli", dcfg={})
    _run(store, "qnro", "rose", 0, 69.0, 4.0, {}, task="qnli", dcfg={})
    _run(store, "lam2", "peaft", 0, 75.0, 3.0, {**study, "adv_lambda": "2"},
         dcfg={"carrier": "prompt", "adv_lambda": 2.0})
    _run(store, "lora", "peaft", 0, 78.0, 1.0, {**study, "carrier": "lora"},
         dcfg={"carrier": "lora", "adv_lambda": 0.5})
    _run(store, "ep", "peaft", 0, 81.0, 2.0, {**study, "epochs": "3"}, epoch_eval=50,
         num_examples=50, train_stats={"epochs": [{"epoch": 1, "acc": 70.0, "aua": 0.0},
                                                  {"epoch": 2, "acc": 75.5, "aua": 2.0}]})
    return url


def test_report_tables_from_the_database(report_mod, db, tmp_path):
    text = report_mod.report(db, paper_dir=None, figures=tmp_path / "figs")
    lines = text.splitlines()

    def row(prefix):
        (hit,) = [ln for ln in lines if ln.replace(" ", "").startswith(prefix)]
        return [c.strip() for c in hit.strip("|").split("|")]

    # seeds: mean ± sample std of 80/82/84 and 1/2/6; finetune has one seed. The pooled
    # interval is Wilson's for 9 robust of 300 attacked examples: (0.0159, 0.0560)
    pe = row("|peaft|3|82.00±2.00|3.00±2.65|[1.59,5.60]|")
    assert pe[-3] == "8,450" and pe[-2] == "101"  # train s: mean of 100, 101, 102
    assert row("|finetune|1|79.00|0.00|[0.00,3.70]|")  # 0/100: Wilson (0, 0.0370)
    # AdvGLUE table: AUA 40/41/42 over the same seeds
    assert row("|peaft|3|82.00±2.00|41.00±1.00|")
    # the main job's run is in the per-task table only, with the paper's RoBERTa-base row
    assert row("|sst2|textfooler|default|")[3] == "79.90"
    assert row("|sst2|textfooler|default|")[-2] == "no"
    assert row("|mrpc|textfooler|mrpc|")[-2] == "yes (98.0 / 68.4)"
    # the default-budget grid: one row per task × defense, mean ± std over finished seeds
    assert row("|sst2|peaft|1|79.90|0.00|[0.00,3.70]|39.95|100.00|")[-2] == "default"
    assert row("|sst2|freelb|2|82.00±0.71|2.00±1.41|[0.78,5.03]|")[-2] == "fldef, fldef1"
    assert row("|mrpc|peaft|1|69.90|66.00|")[11] == "1 of 1"  # degenerate
    assert row("|sst2|peaft|1|79.90|41.20|")[-2] == "agdef"  # AdvGLUE grid
    # the default-budget λ sweep: the default run is its λ = 0.5 row
    assert row("|0.5|default|") == ["0.5", "default", "79.90", "0.00", "39.95", "100.00",
                                    "100"]
    # λ: the study's λ = 0.5 seed-0 cell and the λ = 2 run, in λ order
    assert row("|0.5|pe0|")[2:4] == ["80.00", "1.00"]
    assert row("|2.0|lam2|")[2:4] == ["75.00", "3.00"]
    assert lines.index(next(ln for ln in lines if "pe0 " in ln and "| 0.5 " in ln)) < \
        lines.index(next(ln for ln in lines if "lam2" in ln))
    # carriers: prompt (the study's seed-0 cell) and lora
    assert row("|lora|with(λ=0.5)|lora|")[3] == "78.00"
    assert row("|prompt|with(λ=0.5)|pe0|")[3] == "80.00"
    # epochs
    assert row("|peaft|ep|2|") == ["peaft", "ep", "2", "75.50", "2.00"]  # no ASR recorded
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["epochs.png", "lambda.png"]
    # the reading: verdicts from paired tests on the stored examples. Robust sets are
    # nested (indices 0 .. AUA-1), so PEAFT (AUA 1, 2, 6) vs FreeLB (0, 1, 2) has 1 + 1 + 4
    # = 6 discordant examples, all for PEAFT: exact McNemar p = 2 / 2^6 = 0.03125; vs ROSE
    # (0, 0, 0): 9 vs 0, p = 2 / 2^9 = 0.0039; differences 6 / 300 and 9 / 300
    assert ("- *PEAFT reaches far higher AUA than FreeLB and ROSE at similar ACC* (TextFooler, "
            "SST-2, 3 seeds): supported (PEAFT significantly higher than both). PEAFT 3.00 vs "
            "FreeLB 1.00 (3 seed pairs): +2.00 points [95% CI 0.25, 4.36], McNemar p = 0.031 "
            "(6 vs 0 discordant of 300); PEAFT 3.00 vs ROSE 0.00 (3 seed pairs): +3.00 points "
            "[95% CI 1.10, 5.60], McNemar p = 0.004 (9 vs 0 discordant of 300). ACC PEAFT "
            "minus FreeLB +1.00, minus ROSE +2.00 points.") in lines
    # λ = 2 (AUA 3) vs λ = 0 (AUA 0), one seed: 3 vs 0 discordant, p = 2 / 2^3 = 0.25
    assert ("- *As λ grows, AUA rises and ACC falls* (SST-2, λ = 0, 0.5, 2): not shown (right "
            "direction, but the AUA gain from the smallest to the largest λ is not significant "
            "at the 5% level) here; Spearman ρ(λ, AUA) = 1.00, ρ(λ, ACC) = -1.00; AUA ranges "
            "0.00–3.00, ACC 75.00–82.00; largest vs smallest λ (paired, same seed): +3.00 "
            "points [95% CI -1.19, 8.45], McNemar p = 0.25 (3 vs 0 discordant of 100).") in lines
    assert ("- *PEAFT gains AUA over epochs while FreeLB and ROSE lose it* (SST-2, AUA on 50 "
            "examples after each epoch): not all three defenses are in the database yet here, "
            "in direction only (the per-epoch AUAs store no example rows to test); "
            "peaft 0.00 → 2.00.") in lines
    # the grid: SST-2 PEAFT (0) vs FreeLB seed 0 (1): 0 vs 1, p = 1; vs ROSE (5): 0 vs 5,
    # p = 2 / 2^5 = 0.0625; RTE has no non-degenerate FreeLB run of PEAFT's seed, QNLI no
    # non-degenerate PEAFT run: not testable
    (grid,) = [ln for ln in lines if ln.startswith("- *PEAFT reaches far higher AUA than "
                                                   "FreeLB and ROSE* (TextFooler, default")]
    assert ("supported in 0 of 1 testable task(s); sst2: not shown (no significant difference "
            "at the 5% level); PEAFT 0.00 vs FreeLB 1.00 (1 seed pair): -1.00 points [95% CI "
            "-5.45, 2.79], McNemar p = 1.00 (0 vs 1 discordant of 100); PEAFT 0.00 vs ROSE "
            "5.00 (1 seed pair): -5.00 points [95% CI -11.18, -0.33], McNemar p = 0.062 (0 vs "
            "5 discordant of 100)") in grid
    assert "rte: not testable (degenerate runs left out: PEAFT 0, FreeLB 1, ROSE 0)" in grid
    assert "qnli: not testable (degenerate runs left out: PEAFT 1, FreeLB 0, ROSE 0)" in grid
    assert any(ln.startswith("- Degenerate default PEAFT classifiers") and
               "mrpc (98.0 / 68.4)" in ln for ln in lines)


def test_report_script_writes_file_and_is_reproducible(report_mod, db, tmp_path):
    out = tmp_path / "docs" / "results.md"
    assert report_mod.main(["--db", db, "--out", str(out)]) == 0
    first = out.read_text()
    assert report_mod.main(["--db", db, "--out", str(out)]) == 0
    assert out.read_text() == first and "(no finished" not in first
    assert (out.parent / "lambda.png").stat().st_size > 1000


def test_committed_results_reproduce_from_committed_database(report_mod, tmp_path):
    """docs/results.md is exactly what the script writes from docs/study.db (the study's
    runs, shipped with the repository so that the app can show them)."""
    import shutil

    from robustbench_nlp.leaderboard import find_paper_dir

    if find_paper_dir() is None:
        pytest.skip("the paper's tables (../shared/paper) are not on this machine")
    docs = SCRIPT.parents[1] / "docs"
    db = tmp_path / "study.db"
    shutil.copy(docs / "study.db", db)  # read a copy: opening a SQLite file may touch it
    figures = tmp_path / "figures"
    text = report_mod.report(f"sqlite:///{db}", figures=figures)
    assert text == (docs / "results.md").read_text()
    assert sorted(p.name for p in figures.iterdir()) == ["epochs.png", "lambda.png"]


def test_sweeps_section_counts_finished_cells_and_lists_the_rest(report_mod, tmp_path):
    """The completion section maps runs to a config's cells by the sweep's own identity
    (resolved records), counts training once and lists the cells still to run by seed."""
    import dataclasses

    from robustbench_nlp.runner import RunConfig, config_to_dict, make_attack, make_defense

    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "grid.yaml").write_text(
        "name: grid\ngrid:\n  defense: [peaft]\n  task: [sst2]\n  attack: [textfooler, advglue]\n"
        "  model: [minilm]\n  seed: [0, 1, 2]\nfixed:\n  num_examples: 100\n"
        "attack_params:\n  textfooler: {embedding: counterfitted-glove-50d}\n")
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    store = Store(url)

    def real_run(rid, attack, seed, train_s, attack_s, attack_params=None, reused=None):
        cfg = RunConfig(defense="peaft", task="sst2", attack=attack, seed=seed,
                        num_examples=100, attack_params=attack_params or {})
        config = {"run": config_to_dict(cfg),
                  "defense": dataclasses.asdict(make_defense(cfg).config),
                  "attack": dataclasses.asdict(make_attack(cfg).config)}
        store.create_run(id=rid, task="sst2", defense="peaft", attack=attack, model="minilm",
                         seed=seed, num_examples=100, config=config, train_seconds=train_s,
                         attack_seconds=attack_s, status="finished",
                         train_stats={"reused_from": reused} if reused else {})
        store.save_metrics(rid, acc=80.0, aua=1.0, avg=40.5)

    pinned = {"embedding": "counterfitted-glove-50d"}
    real_run("tf0", "textfooler", 0, 3600.0, 720.0, pinned)
    real_run("ag0", "advglue", 0, 3600.0, 36.0, reused="tf0")  # training counted once
    real_run("tf1", "textfooler", 1, 1800.0, 360.0, pinned)
    real_run("tfk1", "textfooler", 2, 1800.0, 360.0)  # the other word space: not this cell
    text = report_mod.report(url, paper_dir=None, experiments=exp)
    lines = text.splitlines()
    (row,) = [ln for ln in lines if ln.startswith("| experiments/grid.yaml")]
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "experiments/grid.yaml", "6", "3", "1.50", "0.31"]
    assert ("- `experiments/grid.yaml`, not finished yet: peaft/sst2/textfooler/minilm seed 2; "
            "peaft/sst2/advglue/minilm seeds 1, 2") in lines


def test_defaults_section_checks_every_cell_against_its_majority_class(report_mod, tmp_path):
    """experiments/defaults.yaml's cells: a cell passes when its ACC beats the task's
    majority-class ACC and it is not degenerate; unfinished cells are counted, not listed."""
    import dataclasses

    from robustbench_nlp.runner import RunConfig, config_to_dict, make_attack, make_defense

    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "defaults.yaml").write_text(
        "name: defaults\ngrid:\n  defense: [finetune, prompt-tuning]\n  task: [mrpc, rte]\n"
        "  attack: [textfooler]\n  model: [minilm]\n  seed: [0]\nfixed:\n  num_examples: 100\n")
    url = f"sqlite:///{tmp_path / 'defaults.db'}"
    store = Store(url)

    def cell_run(rid, defense, task, acc, pred, gold, degenerate):
        cfg = RunConfig(defense=defense, task=task, num_examples=100)
        config = {"run": config_to_dict(cfg),
                  "defense": dataclasses.asdict(make_defense(cfg).config),
                  "attack": dataclasses.asdict(make_attack(cfg).config)}
        store.create_run(id=rid, task=task, defense=defense, attack="textfooler",
                         model="minilm", seed=0, num_examples=100, config=config,
                         train_seconds=10.0, attack_seconds=1.0, status="finished")
        store.save_metrics(rid, acc=acc, aua=3.0, avg=(acc + 3.0) / 2, degenerate=degenerate,
                           pred_distribution=pred, gold_distribution=gold)

    mrpc_gold = {"not_equivalent": 31.62, "equivalent": 68.38}
    rte_gold = {"entailment": 52.71, "not_entailment": 47.29}
    cell_run("ftm", "finetune", "mrpc", 81.86, {"not_equivalent": 23.8, "equivalent": 76.2},
             mrpc_gold, False)
    cell_run("ptm", "prompt-tuning", "mrpc", 69.36, {"not_equivalent": 15.7,
                                                      "equivalent": 84.3}, mrpc_gold, True)
    # not degenerate, but below RTE's majority class: fails
    cell_run("ftr", "finetune", "rte", 49.10, {"entailment": 54.5, "not_entailment": 45.5},
             rte_gold, False)
    text = report_mod.section_defaults(url, report_mod.load_runs(url), exp)
    lines = text.splitlines()
    assert "3 of 4 cells finished; 1 pass." in lines
    cells = {}
    for ln in lines:
        if ln.startswith("| finetune") or ln.startswith("| prompt-tuning"):
            c = [x.strip() for x in ln.strip("|").split("|")]
            cells[(c[0], c[1])] = c
    assert cells[("finetune", "mrpc")][3:8] == ["all × 3, lr 0.0001", "81.86", "68.38", "no",
                                                "yes"]
    assert cells[("prompt-tuning", "mrpc")][6:8] == ["yes (84.3 / 68.4)", "**no**"]
    assert cells[("finetune", "rte")][3:8] == ["2,000 × 2, lr 0.0001", "49.10", "52.71", "no",
                                               "**no**"]
    assert ("prompt-tuning", "rte") not in cells
