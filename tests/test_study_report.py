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
    """A finished run whose recorded defense config is what ``params`` resolve to on
    ``task`` (as ``rbnlp run --set`` records it), unless ``dcfg`` is given."""
    if dcfg is None:
        import dataclasses

        from robustbench_nlp.runner import RunConfig, make_defense

        dcfg = dataclasses.asdict(make_defense(RunConfig(
            defense=defense, task=task, defense_params=dict(params))).config)
    config = {"run": {"defense_params": params, "epoch_eval_examples": epoch_eval},
              "defense": dcfg}
    store.create_run(id=rid, task=task, defense=defense, attack=attack, model="minilm",
                     seed=seed, num_examples=num_examples, config=config, trainable_params=8450,
                     train_seconds=100.0 + seed, train_stats=train_stats or {},
                     status="finished", versions={"torch": "2.13.0+cpu"})
    metrics.setdefault("aua_at_10", aua + 10.0)
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
    """The default grid (TextFooler, AdvGLUE, ensemble), the λ sweep, an epoch run and two
    carrier runs, each at its defense's defaults on its task unless its options say
    otherwise."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = Store(url)
    for seed, (acc, aua) in enumerate([(80.0, 1.0), (82.0, 2.0), (84.0, 6.0)]):
        _run(store, f"pe{seed}", "peaft", seed, acc, aua, {})
        _run(store, f"ag{seed}", "peaft", seed, acc, 40.0 + seed, {}, attack="advglue",
             train_stats={"reused_from": f"pe{seed}"})
    _run(store, "ft0", "finetune", 0, 79.0, 0.0, {})
    for seed, aua in enumerate([0.0, 1.0, 2.0]):
        _run(store, f"fl{seed}", "freelb", seed, 81.0, aua, {})
        _run(store, f"ro{seed}", "rose", seed, 80.0, 0.0, {})
    # the worst case: PEAFT 0 robust, FreeLB 1, ROSE 0 (seed 0)
    _run(store, "enpe", "peaft", 0, 80.0, 0.0, {}, attack="ensemble")
    _run(store, "enfl", "freelb", 0, 81.0, 1.0, {}, attack="ensemble")
    _run(store, "enro", "rose", 0, 80.0, 0.0, {}, attack="ensemble")
    _run(store, "mrpc", "peaft", 0, 69.9, 66.0, {}, task="mrpc", degenerate=True,
         pred_distribution={"not_equivalent": 1.96, "equivalent": 98.04},
         gold_distribution={"not_equivalent": 31.62, "equivalent": 68.38})
    # RTE: FreeLB's seed-0 AUA comes from a degenerate classifier and is left out;
    # QNLI: PEAFT's only run is degenerate, so QNLI is not compared
    _run(store, "rtepe", "peaft", 0, 55.0, 30.0, {}, task="rte")
    _run(store, "rtefl", "freelb", 0, 56.0, 40.0, {}, task="rte", degenerate=True)
    _run(store, "rtefl1", "freelb", 1, 57.0, 20.0, {}, task="rte")
    _run(store, "rtero", "rose", 0, 54.0, 10.0, {}, task="rte")
    _run(store, "qnpe", "peaft", 0, 50.8, 52.0, {}, task="qnli", degenerate=True,
         pred_distribution={"entailment": 99.6, "not_entailment": 0.4},
         gold_distribution={"entailment": 50.5, "not_entailment": 49.5})
    _run(store, "qnfl", "freelb", 0, 70.0, 5.0, {}, task="qnli")
    _run(store, "qnro", "rose", 0, 69.0, 4.0, {}, task="qnli")
    # λ sweep at the defaults: λ = 0 and 2 beside the default run pe0 (λ = 0.5); a run at
    # another budget is not in it
    _run(store, "lam0", "peaft", 0, 82.0, 0.0, {"adv_lambda": "0"})
    _run(store, "lam2", "peaft", 0, 75.0, 3.0, {"adv_lambda": "2"})
    _run(store, "lam2small", "peaft", 0, 70.0, 9.0, {"adv_lambda": "2",
                                                     "train_examples": "2000"})
    _run(store, "lora", "peaft", 0, 78.0, 1.0, {"carrier": "lora", "train_examples": "2000"})
    _run(store, "ptun", "peaft", 0, 53.9, 8.0, {"carrier": "ptuning", "train_examples": "2000"},
         degenerate=True, pred_distribution={"negative": 5.0, "positive": 95.0},
         gold_distribution={"negative": 49.08, "positive": 50.92})
    _run(store, "ep", "peaft", 0, 81.0, 2.0, {"epochs": "3"}, epoch_eval=50,
         num_examples=50, train_stats={"epochs": [{"epoch": 1, "acc": 70.0, "aua": 0.0},
                                                  {"epoch": 2, "acc": 75.5, "aua": 2.0}]})
    return url


def test_report_tables_from_the_database(report_mod, db, tmp_path):
    text = report_mod.report(db, paper_dir=None, figures=tmp_path / "figs")
    lines = text.splitlines()

    def row(prefix):
        (hit,) = [ln for ln in lines if ln.replace(" ", "").startswith(prefix)]
        return [c.strip() for c in hit.strip("|").split("|")]

    # the TextFooler grid: mean ± sample std of 80/82/84 and 1/2/6; the pooled interval is
    # Wilson's for 9 robust of 300 attacked examples: (0.0159, 0.0560); finetune: one seed,
    # 0/100: Wilson (0, 0.0370)
    pe = row("|sst2|peaft|3|82.00±2.00|3.00±2.65|[1.59,5.60]|")
    assert pe[-3:-1] == ["101", "pe0, pe1, pe2"]  # train s: mean of 100, 101, 102
    assert row("|sst2|finetune|1|79.00|0.00|[0.00,3.70]|")
    assert row("|sst2|freelb|3|81.00±0.00|1.00±1.00|")[-2] == "fl0, fl1, fl2"
    assert row("|mrpc|peaft|1|69.90|66.00|")[11] == "1 of 1"  # degenerate
    # each degenerate run of the TextFooler grid, named with its class share, in table order
    assert ("Degenerate runs in this table (the AdvGLUE and attack-suite tables reuse their "
            "defenses): peaft on mrpc, seed 0 (mrpc): ACC 69.90, 'equivalent' 98.0% of "
            "predictions (gold 68.4%); freelb on rte, seed 0 (rtefl): ACC 56.00, class shares "
            "not recorded; peaft on qnli, seed 0 (qnpe): ACC 50.80, 'entailment' 99.6% of "
            "predictions (gold 50.5%).") in lines
    assert sum(ln.startswith("Degenerate runs in this table") for ln in lines) == 1
    # AdvGLUE grid: AUA 40/41/42 over the same seeds
    assert row("|sst2|peaft|3|82.00±2.00|41.00±1.00|")[-2] == "ag0, ag1, ag2"
    # the worst case beside TextFooler's AUA of the same seeds (seed 0: PEAFT 1, FreeLB 0)
    assert row("|sst2|peaft|1|80.00|0.00|[0.00,3.70]|1.00|")[-1] == "enpe"
    assert row("|sst2|freelb|1|81.00|1.00|[0.18,5.45]|0.00|")[-1] == "enfl"
    # the λ sweep at the defaults, in λ order; the 2,000-sentence run is not in it
    assert row("|0|lam0|")[2:4] == ["82.00", "0.00"]
    assert row("|0.5|pe0|")[2:5] == ["80.00", "1.00", "11.00"]  # ACC, AUA, AUA@10
    assert row("|2|lam2|")[2:4] == ["75.00", "3.00"]
    assert not [ln for ln in lines if "lam2small" in ln]
    order = [lines.index(next(ln for ln in lines
                              if ln.replace(" ", "").startswith(f"|{lam}|{rid}|")))
             for lam, rid in (("0", "lam0"), ("0.5", "pe0"), ("2", "lam2"))]
    assert order == sorted(order)
    # carriers: lora with the adversarial term
    assert row("|lora|with(λ=0.5)|lora|")[3] == "78.00"
    assert row("|lora|with(λ=0.5)|lora|")[8] == "no"  # degenerate
    # a carrier run that predicts one class, flagged with its predicted / gold share
    assert row("|ptuning|with(λ=0.5)|ptun|")[3:5] == ["53.90", "8.00"]
    assert row("|ptuning|with(λ=0.5)|ptun|")[8] == "yes (95.0 / 50.9)"
    # epochs
    assert row("|peaft|ep|2|") == ["peaft", "ep", "2", "75.50", "2.00"]  # no ASR recorded
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["epochs.png", "lambda.png"]
    # the reading: verdicts from paired tests on the stored examples. Robust sets are
    # nested (indices 0 .. AUA-1), so PEAFT (AUA 1, 2, 6) vs FreeLB (0, 1, 2) has 1 + 1 + 4
    # = 6 discordant examples, all for PEAFT: exact McNemar p = 2 / 2^6 = 0.03125; vs ROSE
    # (0, 0, 0): 9 vs 0, p = 2 / 2^9 = 0.0039; differences 6 / 300 and 9 / 300
    tf = lines.index("- *PEAFT reaches far higher AUA than FreeLB and ROSE at similar ACC* "
                     "(TextFooler, default budgets, seed pairs pooled per task): supported in "
                     "1 of 1 testable task(s).")
    assert lines[tf + 1] == (
        "  - sst2: supported (PEAFT significantly higher than both). PEAFT 3.00 vs FreeLB 1.00 "
        "(3 seed pairs): +2.00 points [95% CI 0.25, 4.36], McNemar p = 0.031 (6 vs 0 "
        "discordant of 300); PEAFT 3.00 vs ROSE 0.00 (3 seed pairs): +3.00 points [95% CI "
        "1.10, 5.60], McNemar p = 0.004 (9 vs 0 discordant of 300). Mean ACC PEAFT 82.00, "
        "FreeLB 81.00, ROSE 80.00 (degenerate runs, left out of the test: PEAFT 0 of 3, "
        "FreeLB 0 of 3, ROSE 0 of 3).")
    # MRPC has only PEAFT; RTE has no non-degenerate FreeLB run of PEAFT's seed, QNLI no
    # non-degenerate PEAFT run: not testable
    assert lines[tf + 2] == "  - mrpc: no finished run of FreeLB and ROSE yet"
    assert lines[tf + 3] == ("  - rte: not testable (degenerate runs: PEAFT 0 of 1, FreeLB 1 "
                             "of 2, ROSE 0 of 1); mean ACC PEAFT 55.00, FreeLB 56.50, ROSE "
                             "54.00")
    assert lines[tf + 4].startswith("  - qnli: not testable (degenerate runs: PEAFT 1 of 1,")
    # the worst case, seed 0: PEAFT 0 vs FreeLB 1 (0 vs 1 discordant, p = 1), vs ROSE 0
    # (no discordant example: p = 1)
    (en,) = [i for i, ln in enumerate(lines) if ln.startswith(
        "- *PEAFT reaches far higher AUA than FreeLB and ROSE at similar ACC* (worst case")]
    assert lines[en].endswith("supported in 0 of 1 testable task(s).")
    assert lines[en + 1].startswith(
        "  - sst2: not shown (no significant difference at the 5% level). PEAFT 0.00 vs FreeLB "
        "1.00 (1 seed pair): -1.00 points [95% CI -5.45, 2.79], McNemar p = 1.00 (0 vs 1 "
        "discordant of 100)")
    # λ = 2 (AUA 3) vs λ = 0 (AUA 0), one seed: 3 vs 0 discordant, p = 2 / 2^3 = 0.25;
    # AUA@10 = AUA + 10 in this fixture
    assert ("- *As λ grows, AUA rises and ACC falls* (SST-2, default budget, λ = 0, 0.5, 2): "
            "not shown (right direction, but the AUA gain from the smallest to the largest λ "
            "is not significant at the 5% level) here; Spearman ρ(λ, AUA) = 1.00, ρ(λ, ACC) = "
            "-1.00, ρ(λ, AUA@10) = 1.00; AUA ranges 0.00–3.00, AUA@10 10.00–13.00, ACC "
            "75.00–82.00; largest vs smallest λ (paired, same examples): +3.00 points [95% CI "
            "-1.19, 8.45], McNemar p = 0.25 (3 vs 0 discordant of 100).") in lines
    assert ("- *PEAFT gains AUA over epochs while FreeLB and ROSE lose it* (SST-2, AUA on 50 "
            "examples after each epoch): not all three defenses are in the database yet here, "
            "in direction only (the per-epoch AUAs store no example rows to test); "
            "peaft 0.00 → 2.00.") in lines


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
    linked = sorted(name for name in ("epochs.png", "lambda.png") if f"]({name})" in text)
    assert sorted(p.name for p in figures.iterdir()) == linked
    for name in linked:  # the committed figures are the ones the report links
        assert (docs / name).is_file()


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
        "name: defaults\ngrid:\n  defense: [finetune, prompt-tuning, freelb]\n"
        "  task: [mrpc, rte]\n  attack: [textfooler]\n  model: [minilm]\n  seed: [0]\n"
        "fixed:\n  num_examples: 100\n")
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
    # FreeLB's RTE budget sets α beside the lr: the budget column names it
    cell_run("flr", "freelb", "rte", 57.04, {"entailment": 61.0, "not_entailment": 39.0},
             rte_gold, False)
    text = report_mod.section_defaults(url, report_mod.load_runs(url), exp)
    lines = text.splitlines()
    assert "4 of 6 cells finished; 2 pass." in lines
    cells = {}
    for ln in lines:
        if ln.startswith(("| finetune", "| prompt-tuning", "| freelb")):
            c = [x.strip() for x in ln.strip("|").split("|")]
            cells[(c[0], c[1])] = c
    assert cells[("finetune", "mrpc")][3:8] == ["all × 3, lr 0.0001", "81.86", "68.38", "no",
                                                "yes"]
    assert cells[("prompt-tuning", "mrpc")][6:8] == ["yes (84.3 / 68.4)", "**no**"]
    assert cells[("finetune", "rte")][3:8] == ["2,000 × 2, lr 0.0001", "49.10", "52.71", "no",
                                               "**no**"]
    assert cells[("freelb", "rte")][3:8] == ["2,000 × 2, lr 0.0001; adv_lr 0.03", "57.04",
                                             "52.71", "no", "yes"]
    assert ("prompt-tuning", "rte") not in cells and ("freelb", "mrpc") not in cells
