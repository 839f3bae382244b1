"""Leaderboard tables: one per protocol, configurations pooled over seeds, degenerate runs
apart, intervals on every rate (robustbench_nlp/leaderboard.py and ``rbnlp leaderboard``)."""

from __future__ import annotations

import math

import pytest

from robustbench_nlp.attacks.protocol import protocol_hash, run_protocol
from robustbench_nlp.cli import main
from robustbench_nlp.db import Store
from robustbench_nlp.leaderboard import (CONFIG_RUN_FIELDS, NO_PROTOCOL, configuration_of,
                                         leaderboard, protocol_tables)

TF = {"resources": "auto", "query_budget": None, "max_candidates": 50, "min_cos_sim": 0.5,
      "use_threshold": 0.840845057, "attacked_column": None, "embedding": "e"}
RES = {"mode": "offline", "embedding": {"name": "e", "fingerprint": "ab" * 32}}
N_DEV = 872


def add(store, rid, defense, seed, acc, failed, attacked=20, budget=None, dcfg=None,
        degenerate=False, protocol=True):
    opts = {**TF, "query_budget": budget}
    config = {"run": {"model": "minilm", "mixed_precision": "auto", "seed": seed},
              "defense": dcfg or {}, "attack": opts, "max_length": 64}
    store.create_run(id=rid, task="sst2", defense=defense, attack="textfooler", model="minilm",
                     seed=seed, num_examples=attacked, config=config, resources=RES,
                     status="finished")
    aua = 100.0 * failed / attacked
    store.save_metrics(rid, acc=acc, eval_examples=N_DEV, aua=aua, avg=(acc + aua) / 2,
                       attacked=attacked, failed=failed, successful=attacked - failed - 2,
                       skipped=2, attacked_clean_acc=100.0 * (attacked - 2) / attacked,
                       asr=100.0 * (attacked - failed - 2) / (attacked - 2),
                       degenerate=degenerate)
    if protocol:
        rec = run_protocol("textfooler", "sst2", opts, RES, range(attacked))
        store.update_run(rid, protocol=rec, protocol_hash=protocol_hash(rec))


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    store = Store(url)
    lam = lambda x: {"adv_lambda": x, "lr": 0.1}  # noqa: E731
    add(store, "pe0", "peaft", 0, 80.0, 2, dcfg=lam(0.5))
    add(store, "pe1", "peaft", 1, 82.0, 4, dcfg=lam(0.5))
    add(store, "pe1r", "peaft", 1, 82.0, 9, dcfg=lam(0.5))   # a re-run of seed 1: a repeat
    add(store, "pl0", "peaft", 0, 78.0, 5, dcfg=lam(1.0))
    add(store, "fl0", "freelb", 0, 85.0, 0, dcfg={"adv_lr": 0.1})
    add(store, "ro0", "rose", 0, 60.0, 10, dcfg={"epochs": 2}, degenerate=True)
    add(store, "pb0", "peaft", 0, 80.0, 8, budget=100, dcfg=lam(0.5))   # another protocol
    add(store, "old", "peaft", 0, 80.0, 1, dcfg=lam(0.5), protocol=False)
    return url, store


def test_one_table_per_protocol_with_pooled_configurations(db):
    url, store = db
    runs = store.runs_frame()
    board = leaderboard(task="sst2", attack="textfooler", runs=runs)
    tables = protocol_tables(board, runs)
    # the 20-example, unlimited-budget protocol has 5 runs; the budget-100 one 1; then the run
    # stored before protocols were recorded, apart
    assert [len(t.runs) for t in tables] == [6, 1, 1]
    assert tables[-1].protocol_hash == NO_PROTOCOL
    main_t = tables[0]
    ranked = main_t.ranked
    assert ranked["rank"].tolist() == [1, 2, 3]
    assert ranked["runs"].tolist() == ["pl0", "pe0, pe1", "fl0"]
    assert ranked["repeats"].tolist() == ["", "pe1r", ""]  # listed, not pooled
    assert ranked["settings"].tolist() == ["adv_lambda=1", "adv_lambda=0.5", ""]
    pe = ranked.iloc[1]
    assert pe["seeds"] == 2
    assert pe["AUA"] == pytest.approx(15.0)                    # (10 + 20) / 2
    assert pe["AUA sd"] == pytest.approx(math.sqrt(50.0))      # sample sd of 10, 20
    assert pe["ACC"] == pytest.approx(81.0)
    # pooled Wilson interval of the 6 robust examples out of 40 (z = 1.959964)
    z = 1.959963984540054
    p, n = 6 / 40, 40
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert pe["AUA low"] == pytest.approx(100 * (centre - half), abs=1e-6)
    assert pe["AUA high"] == pytest.approx(100 * (centre + half), abs=1e-6)
    # 0 of 20: Newcombe (1998) Table I, Wilson 0.0000-0.1611
    fl = ranked.iloc[2]
    assert fl["AUA low"] == pytest.approx(0.0, abs=1e-9)
    assert round(fl["AUA high"], 2) == 16.11
    # the degenerate ROSE run has the highest AUA but never shares the ranking
    deg = main_t.degenerate
    assert deg["runs"].tolist() == ["ro0"] and deg["rank"].isna().all()
    # PDR = 100 * (1 - AUA / clean accuracy on the attacked set): 100 * (1 - 25 / 90)
    assert ranked.iloc[0]["PDR"] == pytest.approx(100 * (1 - 25 / 90))
    assert main_t.runs_of(pe["config"])["run id"].tolist() == ["pe1r", "pe1", "pe0"]  # by AUA
    assert "query_budget=None" in main_t.description
    assert "query_budget=100" in tables[1].description


def test_cli_leaderboard_prints_protocols_intervals_and_degenerate_block(db, capsys):
    url, _ = db
    assert main(["leaderboard", "--db", url]) == 0
    out = capsys.readouterr().out
    heads = [ln for ln in out.splitlines() if ln.startswith("## protocol ")]
    assert len(heads) == 3 and heads[2] == "## protocol not recorded (1 runs)"
    assert heads[0].endswith(" (6 runs)") and heads[1].endswith(" (1 runs)")
    line = next(ln for ln in out.splitlines() if "| fl0 " in ln)
    # every rate with two decimals: AUA 0.00 beside ACC 85.00, and its interval
    assert "| 85.00 " in line and "| 0.00 " in line and "[0.00, 16.11]" in line
    deg = out.index("degenerate (the most-predicted class")
    assert out.index("| ro0 ") > deg > out.index("| pl0 ")
    assert main(["leaderboard", "--db", url, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("protocol,rank,defense,") and len(lines) == 1 + 6


def test_unknown_task_or_attack_is_an_error_not_an_empty_board(db, capsys):
    url, _ = db
    assert main(["leaderboard", "--db", url, "--task", "foo"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: unknown task 'foo' (known: sst2, mrpc, rte, qnli)"
    assert main(["leaderboard", "--db", url, "--attack", "textfoolr"]) == 2
    assert "did you mean 'textfooler'" in capsys.readouterr().err


def test_configuration_fields_are_the_training_key_fields():
    """The leaderboard's configuration is the training key (runner.training_key) minus the
    seed, so two runs pool exactly when they train the same defense up to the seed."""
    from robustbench_nlp.runner import RunConfig, config_to_dict, training_key

    key = training_key({"run": config_to_dict(RunConfig()), "defense": {}, "max_length": 64})
    assert set(key["run"]) - {"seed", "defense", "task"} == set(CONFIG_RUN_FIELDS)
    a = configuration_of({"run": {"seed": 0, "model": "minilm"}, "defense": {"lr": 0.1},
                          "max_length": 64})
    b = configuration_of({"run": {"seed": 7, "model": "minilm"}, "defense": {"lr": 0.1},
                          "max_length": 64})
    assert a == b and a["defense.lr"] == 0.1 and a["run.max_length"] == 64


def test_paper_oom_rows_print_oom(tmp_path, monkeypatch, capsys):
    d = tmp_path / "paper"
    d.mkdir()
    (d / "table1_textfooler.csv").write_text(
        "method,backbone,task,attack,AUA,ACC,AVG\n"
        "PEAFT,roberta-base,sst2,textfooler,48.00,93.80,70.90\n"
        "FreeLB,llama,sst2,textfooler,OOM,OOM,OOM\n")
    monkeypatch.setenv("RBNLP_PAPER_DIR", str(d))
    assert main(["leaderboard", "--paper"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if "llama" in ln)
    assert "nan" not in row and row.count("OOM") == 3
    assert "| 93.80 " in out


def test_model_card_text_of_evaluated_models():
    from robustbench_nlp.leaderboard import model_card_text

    folder = {"model_card": {"name": "sst2-minilm", "parameters": 22713986,
                             "source": {"type": "folder", "fingerprint": "3da7c393c5c36a74" * 4},
                             "reported_acc": 91.5, "reported_aua": None,
                             "paper_url": "https://x.org/p", "adapter": None}}
    assert model_card_text(folder) == ("sst2-minilm · folder sha256 3da7c393c5c3 · "
                                       "22,713,986 params · reported ACC 91.50 · "
                                       "https://x.org/p")
    hub = {"model_card": {"name": "bert-sst2", "parameters": 109483778,
                          "source": {"type": "hub", "id": "textattack/bert-base-uncased-SST-2",
                                     "revision": None, "commit": "8f3c1e2d9a7b6c5d"}}}
    assert model_card_text(hub) == ("bert-sst2 · textattack/bert-base-uncased-SST-2@8f3c1e2d9a7b"
                                    " · 109,483,778 params")
    assert model_card_text({"pooling": "mean"}) == "" and model_card_text(None) == ""


def _add_attack(store, rid, defense, attack, seed, failed, attacked=20, degenerate=False):
    """A finished run of ``attack`` with its recorded protocol (AUA = failed/attacked)."""
    config = {"run": {"model": "minilm", "mixed_precision": "auto", "seed": seed},
              "defense": {"lr": 0.1}, "attack": {}, "max_length": 64}
    store.create_run(id=rid, task="sst2", defense=defense, attack=attack, model="minilm",
                     seed=seed, num_examples=attacked, config=config, resources=RES,
                     status="finished")
    store.save_metrics(rid, acc=80.0, eval_examples=N_DEV, aua=100.0 * failed / attacked,
                       attacked=attacked, failed=failed, successful=attacked - failed,
                       skipped=0, degenerate=degenerate)
    rec = run_protocol(attack, "sst2", {}, RES, range(attacked))
    store.update_run(rid, protocol=rec, protocol_hash=protocol_hash(rec))


def test_attack_matrix_puts_the_ensemble_beside_the_single_recipes(tmp_path, capsys):
    from robustbench_nlp.leaderboard import WORST_SINGLE, attack_matrix

    url = f"sqlite:///{tmp_path / 'm.db'}"
    store = Store(url)
    # peaft: textfooler 10% and 30% over two seeds (mean 20), pwws 15%, ensemble 5%
    _add_attack(store, "p-tf0", "peaft", "textfooler", 0, 2)
    _add_attack(store, "p-tf1", "peaft", "textfooler", 1, 6)
    _add_attack(store, "p-pw0", "peaft", "pwws", 0, 3)
    _add_attack(store, "p-en0", "peaft", "ensemble", 0, 1)
    # freelb: textfooler 40%, pwws 50%, no ensemble run; rose degenerate: left out
    _add_attack(store, "f-tf0", "freelb", "textfooler", 0, 8)
    _add_attack(store, "f-pw0", "freelb", "pwws", 0, 10)
    _add_attack(store, "r-tf0", "rose", "textfooler", 0, 19, degenerate=True)
    matrix, protocols = attack_matrix(store.runs_frame(), "sst2")
    assert list(protocols) == ["ensemble", "pwws", "textfooler"]
    assert matrix["defense"].tolist() == ["peaft", "freelb"]  # by ensemble AUA, NaN last
    peaft, freelb = matrix.iloc[0], matrix.iloc[1]
    assert (peaft["textfooler"], peaft["pwws"], peaft["ensemble"]) == (20.0, 15.0, 5.0)
    assert peaft[WORST_SINGLE] == 15.0
    assert (freelb["textfooler"], freelb["pwws"], freelb[WORST_SINGLE]) == (40.0, 50.0, 40.0)
    assert math.isnan(freelb["ensemble"])
    assert main(["leaderboard", "--task", "sst2", "--matrix", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "| peaft" in out and "| 5.00 " in out and "| –" in out and "rose" not in out
