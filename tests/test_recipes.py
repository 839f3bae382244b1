"""Fidelity of every textattack recipe in the suite to textattack's own ``Recipe.build``.

For each recipe, textattack's ``<Recipe>.build`` (the recipe's own code) is run with its
downloaded resources replaced by the same offline ones ours uses (counter-fitted GloVe-50d,
the numpy USE, spaCy's tagger, all-MiniLM-L6-v2 as A2T's sentence encoder, a tiny random
masked LM for BAE and BERT-Attack: patched into the recipe's namespace while it builds,
:func:`stock.stock_attack`), on a minimal
one-text-at-a-time ``ModelWrapper`` without padding or cache (:func:`stock_wrapper`). Our
side is the recipe class with the batched, padded, sorted, cached ``ClassifierWrapper``. Both
attack the same examples of the same victim; per-example result type, adversarial text and
query count must be identical. Random transformations (DeepWordBug, TextBugger) draw from
``random`` / ``numpy.random``: the stock side seeds them per example as ours does
(:func:`robustbench_nlp.attacks.recipe.seed_example`).

The victim is a tiny BERT (one layer, hidden 64) with MiniLM's tokenizer, trained end to end
for seconds (:func:`victims.tiny_victim`): the recipes' search is what is compared, and a
tiny model keeps the two sides' thousands of queries cheap. The sentence-pair test attacks
RTE pairs (both segments modifiable, as stock textattack on GLUE's column names).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from stock import stock_attack, stock_wrapper

pytestmark = pytest.mark.slow  # attacks a (tiny) model with every recipe on both sides

N_SST2 = 20
N_PAIR = 4
RECIPES = ("pwws", "deepwordbug", "textbugger", "bae", "bert-attack", "a2t")




@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def glue():
    from robustbench_nlp.tasks import find_data_dir, get_task, load_split

    if find_data_dir() is None:
        pytest.skip("local data mirror not found")
    out = {}
    for name in ("sst2", "rte"):
        task = get_task(name)
        out[name] = (task, load_split(task, "train")[0], load_split(task, "validation")[0])
    return out


@pytest.fixture(scope="module")
def victims(glue):
    """Tiny victims for SST-2 (about 74% dev accuracy) and RTE (pairs)."""
    from victims import tiny_victim

    _, sst2_train, _ = glue["sst2"]
    rte_task, rte_train, _ = glue["rte"]
    return {"sst2": tiny_victim(sst2_train),
            "rte": tiny_victim(rte_train, n=1000, epochs=1, max_length=128,
                               text_columns=rte_task.text_columns)}


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory):
    from victims import tiny_masked_lm

    return tiny_masked_lm(tmp_path_factory.mktemp("tiny-mlm"))


def _kind(result) -> str:
    from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                           SuccessfulAttackResult)

    for cls, name in ((SuccessfulAttackResult, "successful"), (FailedAttackResult, "failed"),
                      (SkippedAttackResult, "skipped")):
        if isinstance(result, cls):
            return name
    raise AssertionError(type(result).__name__)


def _compare(name, task, rows, victim, masked_lm):
    """Run ours and the stock recipe on ``rows``; assert identical outcomes; return kinds."""
    from textattack.shared import AttackedText

    from robustbench_nlp.attacks.recipe import seed_example
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.registry import ATTACKS

    tok, model = victim
    cls = ATTACKS.get(name)
    opts = {"resources": "offline"}
    if "masked_lm" in cls.Config.__dataclass_fields__:
        opts["masked_lm"] = masked_lm
    ours = list(cls(cls.Config(**opts)).run(ClassifierWrapper(model, tok, max_length=128),
                                            task, rows))
    wrapper = stock_wrapper(model, tok)
    stock = stock_attack(name, wrapper, masked_lm)
    kinds = []
    for row, mine in zip(rows.to_dict("records"), ours):
        seed_example(int(row["index"]))
        text = OrderedDict((c, row[c]) for c in task.text_columns)
        res = stock.attack(AttackedText(text), int(row["label"]))
        kind = _kind(res)
        kinds.append(kind)
        assert (mine.index, mine.result) == (row["index"], kind), name
        adv = res.perturbed_result.attacked_text.tokenizer_input
        assert mine.adversarial == ((adv,) if isinstance(adv, str) else tuple(adv)), name
        assert mine.pred_after == res.perturbed_result.output
        if kind != "skipped":
            assert mine.queries == res.num_queries, name
    assert len(ours) == len(rows)
    return ours, kinds


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_matches_textattack_on_sst2(glue, victims, masked_lm, name):
    task, _, dev = glue["sst2"]
    short = dev[dev.sentence.str.split().str.len().between(4, 10)]
    from robustbench_nlp.registry import ATTACKS

    rows = ATTACKS.get(name)().examples(task, short, N_SST2, seed=0)
    ours, kinds = _compare(name, task, rows, victims["sst2"], masked_lm)
    # real attacks, not a vacuous comparison: most are attacked, some succeed, and every
    # successful one changed the text
    assert kinds.count("skipped") <= 8 and kinds.count("successful") >= 4, kinds
    assert all(r.adversarial != r.original for r in ours if r.result == "successful")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_matches_textattack_on_pairs(glue, victims, masked_lm, name):
    """RTE pairs: same outcomes as the stock recipe, which may modify either segment."""
    task, _, dev = glue["rte"]
    tok, model = victims["rte"]
    short = dev[(dev.sentence1.str.split().str.len() + dev.sentence2.str.split().str.len())
                .between(8, 16)]
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.registry import ATTACKS

    pairs = list(short[list(task.text_columns)].itertuples(index=False, name=None))
    right = short[ClassifierWrapper(model, tok).predict(pairs) == short.label.to_numpy()]
    rows = ATTACKS.get(name)().examples(task, right, N_PAIR, seed=0)
    assert len(rows) == N_PAIR
    ours, kinds = _compare(name, task, rows, victims["rte"], masked_lm)
    assert kinds.count("skipped") == 0
    from textattack.shared import AttackedText

    for r in ours:
        # both segments modifiable: perturbed-word % over the pair's words, as textattack
        assert r.attacked_segment is None
        assert r.num_words == len(AttackedText(OrderedDict(zip(task.text_columns,
                                                                 r.original))).words)


def test_textfooler_matches_textattack_on_20_rte_pairs(glue, victims,
                                                      masked_lm):
    """TextFooler on 20 RTE pairs (8-30 words) the victim classifies correctly: the same
    outcomes as textattack's ``TextFoolerJin2019``, which on GLUE's column names may modify
    both segments; some adversarial examples change the first segment."""
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.registry import ATTACKS

    task, _, dev = glue["rte"]
    tok, model = victims["rte"]
    n = dev.sentence1.str.split().str.len() + dev.sentence2.str.split().str.len()
    short = dev[n.between(8, 30)]
    pairs = list(short[list(task.text_columns)].itertuples(index=False, name=None))
    right = short[ClassifierWrapper(model, tok).predict(pairs) == short.label.to_numpy()]
    rows = ATTACKS.get("textfooler")().examples(task, right, 20, seed=0)
    assert len(rows) == 20
    ours, kinds = _compare("textfooler", task, rows, victims["rte"], masked_lm)
    assert kinds.count("skipped") == 0 and kinds.count("successful") >= 5, kinds
    assert any(r.adversarial[0] != r.original[0] for r in ours)


def test_ensemble_is_the_worst_case_of_its_recipes(glue, victims):
    """Per example: robust iff every recipe alone fails it; broken by the first recipe of the
    suite that breaks it alone, with that recipe's adversarial text; queries summed over the
    recipes tried. Hence its AUA is at most the smallest single-recipe AUA."""
    from robustbench_nlp.attacks.ensemble import DEFAULT_SUITE, Ensemble
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.metrics import summarize
    from robustbench_nlp.registry import ATTACKS

    task, _, dev = glue["sst2"]
    tok, model = victims["sst2"]
    short = dev[dev.sentence.str.split().str.len().between(4, 10)]
    ens = Ensemble(Ensemble.Config(resources="offline"))
    assert ens.suite() == DEFAULT_SUITE.split(",") == ["deepwordbug", "textbugger", "a2t",
                                                       "textfooler", "pwws"]
    rows = ens.examples(task, short, N_SST2, seed=0)
    victim = ClassifierWrapper(model, tok, max_length=128)
    worst = list(ens.run(victim, task, rows))
    alone = {n: list(ATTACKS.get(n)(ATTACKS.get(n).Config(resources="offline"))
                     .run(victim, task, rows)) for n in ens.suite()}
    for i, w in enumerate(worst):
        kinds = [alone[n][i].result for n in ens.suite()]
        if "skipped" in kinds:
            assert set(kinds) == {"skipped"} and w.result == "skipped"
            continue
        first = next((n for n in ens.suite() if alone[n][i].result == "successful"), None)
        assert w.extra["broken_by"] == first
        assert w.result == ("failed" if first is None else "successful")
        tried = ens.suite()[:ens.suite().index(first) + 1] if first else ens.suite()
        assert [t["recipe"] for t in w.extra["per_recipe"]] == tried
        assert w.queries == sum(alone[n][i].queries for n in tried)
        if first:
            assert w.adversarial == alone[first][i].adversarial
    aua = {n: summarize([r.to_dict() for r in rs]).aua for n, rs in alone.items()}
    worst_aua = summarize([r.to_dict() for r in worst]).aua
    assert worst_aua <= min(aua.values())
    # not vacuous: the recipes disagree on some example, and at least two recipes break some
    assert len({tuple(r.result for r in rs) for rs in alone.values()}) > 1
    assert len({w.extra["broken_by"] for w in worst} - {None}) >= 2


def test_missing_masked_lm_is_one_line_before_training(tmp_path):
    from robustbench_nlp.attacks.bae import BAE
    from robustbench_nlp.errors import ConfigError
    from robustbench_nlp.tasks import get_task

    missing = tmp_path / "no-such-model"
    atk = BAE(BAE.Config(resources="offline", masked_lm=str(missing)))
    with pytest.raises(ConfigError, match=f"masked language model '{missing}'") as err:
        atk.check_task(get_task("sst2"))
    assert "\n" not in str(err.value) and "masked_lm=<Hub id or local folder>" in str(err.value)
