"""Per-task defense defaults (robustbench_nlp.defenses.base.TaskBudget, issue #19): a budget replaces the
Config defaults on its task only, ``--set`` still wins, the resolved values are what a run
records (so the sweep's cell identity and the reuse key see them), and a bad budget is a
one-line error."""

from __future__ import annotations

import dataclasses

import pytest

from robustbench_nlp.defenses.base import TaskBudget
from robustbench_nlp.defenses.finetune import Finetune
from robustbench_nlp.cli import main
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.registry import DEFENSES
from robustbench_nlp.runner import RunConfig, make_defense, training_record
from robustbench_nlp.sweep import run_key
from robustbench_nlp.tasks import TASKS


@pytest.fixture
def rte_budget(monkeypatch):
    monkeypatch.setattr(Finetune, "task_budgets",
                        {"rte": TaskBudget({"epochs": 5, "lr": 1e-4}, "probe of the test")})


def _defense(task: str, **params):
    return make_defense(RunConfig(defense="finetune", task=task,
                                  defense_params={k: str(v) for k, v in params.items()}))


def test_budget_replaces_the_defaults_on_its_task_only(rte_budget):
    rte = _defense("rte").config
    assert (rte.epochs, rte.lr, rte.train_examples, rte.head_lr) == (5, 1e-4, 2000, 1e-3)
    sst2 = _defense("sst2").config
    assert (sst2.epochs, sst2.lr, sst2.train_examples) == (2, 3e-5, 2000)


def test_set_options_win_over_the_budget(rte_budget):
    cfg = _defense("rte", epochs=3).config
    assert (cfg.epochs, cfg.lr) == (3, 1e-4)


def test_resolved_budget_is_recorded_and_keys_the_cell(rte_budget):
    record = training_record(RunConfig(defense="finetune", task="rte"))
    assert (record["defense"]["epochs"], record["defense"]["lr"]) == (5, 1e-4)
    # a sweep cell writing the budget out is the default cell of that task ...
    default = RunConfig(defense="finetune", task="rte")
    written = RunConfig(defense="finetune", task="rte",
                        defense_params={"epochs": "5", "lr": "0.0001"})
    assert run_key(default) == run_key(written)
    # ... and not the cell of the Config defaults
    old = RunConfig(defense="finetune", task="rte", defense_params={"epochs": "2", "lr": "3e-5"})
    assert run_key(default) != run_key(old)


def test_bad_budget_is_one_line(monkeypatch):
    monkeypatch.setattr(Finetune, "task_budgets", {"rte": TaskBudget({"epoch": 5})})
    with pytest.raises(ConfigError, match=r"^unknown parameter 'epoch' for defense 'finetune'; "
                                          r"did you mean 'epochs'\?$"):
        _defense("rte")


def test_list_defenses_prints_the_budgets(rte_budget, capsys):
    assert main(["list", "defenses"]) == 0
    out = capsys.readouterr().out
    block = out.split("finetune:", 1)[1].split("\n", 1)[1]
    assert "    on rte: epochs=5, lr=0.0001  (probe of the test)\n" in block
    # a budget with no values records that none was found: the defaults stay
    prompt = out.split("\nprompt-tuning:", 1)[1].split("\n", 1)[1]
    assert "    on mrpc: the defaults above  (none found: logistic regression" in prompt


@pytest.mark.parametrize("name", sorted(DEFENSES.names()))
def test_every_shipped_budget_is_valid(name):
    cls = DEFENSES.get(name)
    for task, budget in cls.task_budgets.items():
        assert task in TASKS, f"{name}: budget for unknown task {task!r}"
        assert budget.evidence, f"{name} on {task}: a budget names its evidence"
        cfg = make_defense(RunConfig(defense=name, task=task)).config
        got = {k: getattr(cfg, k) for k in budget.values}
        assert got == budget.values
        # a budget changes the defaults, or records that none was found (empty values)
        assert (dataclasses.asdict(cfg) != dataclasses.asdict(cls.Config())) == bool(budget.values)
        assert bool(budget.values) or budget.evidence.startswith("none found")


def test_shipped_budgets():
    """The budgets chosen from the probes of docs/defenses.md "Per-task budgets": the whole
    split × 3 epochs at lr 1e-4 for the full fine-tuning defenses on MRPC, lr 1e-4 for them
    on RTE and for FreeLB on QNLI, FreeLB's α = 0.03 on RTE; ε = 0.02 for PEAFT on QNLI;
    SST-2 keeps the Config defaults everywhere; the prompt defenses record that none was
    found on MRPC and RTE (empty values)."""
    def lr(defense, task):
        return make_defense(RunConfig(defense=defense, task=task)).config.lr

    for d in ("finetune", "freelb", "rose"):
        assert lr(d, "mrpc") == 1e-4 and lr(d, "sst2") == 3e-5
        mrpc = make_defense(RunConfig(defense=d, task="mrpc")).config
        assert (mrpc.train_examples, mrpc.epochs) == (None, 3)
        rte = make_defense(RunConfig(defense=d, task="rte")).config
        assert (rte.train_examples, rte.epochs, rte.lr) == (2000, 2, 1e-4)
    assert lr("freelb", "qnli") == 1e-4
    freelb_rte = make_defense(RunConfig(defense="freelb", task="rte"))
    # α from the MRPC row on RTE; the RTE row's init_mag, max_norm and K stay
    assert freelb_rte.resolve("rte") == {"adv_lr": 0.03, "adv_init_mag": 0.0,
                                         "adv_max_norm": 0.0, "adv_steps": 3}
    assert lr("finetune", "qnli") == lr("rose", "qnli") == 3e-5
    peaft_qnli = make_defense(RunConfig(defense="peaft", task="qnli")).config
    assert (peaft_qnli.epsilon, peaft_qnli.adv_lr, peaft_qnli.adv_lambda) == (0.02, 0.01, 0.5)
    assert make_defense(RunConfig(defense="prompt-tuning", task="qnli")).config == \
        DEFENSES.get("prompt-tuning").Config()
    for d in ("prompt-tuning", "peaft"):  # MRPC and RTE: none found, the defaults stay
        budgets = DEFENSES.get(d).task_budgets
        assert {t: budgets[t].values for t in ("mrpc", "rte")} == {"mrpc": {}, "rte": {}}
        for task in ("mrpc", "rte", "sst2"):
            assert make_defense(RunConfig(defense=d, task=task)).config == \
                DEFENSES.get(d).Config()
