"""Fidelity of our TextFooler to textattack's own recipe, and validity of its swaps.

* Fidelity: textattack's ``TextFoolerJin2019.build`` (the recipe's own code) is run with its
  three downloaded resources replaced by the same offline ones our attack uses (counter-fitted
  GloVe-50d, the numpy USE, the spaCy tagger: monkeypatched into the recipe's namespace), on
  the stock model-wrapper path: textattack's ``HuggingFaceModelWrapper`` rejects our
  ``TextClassifier`` (it asserts a ``transformers.PreTrainedModel``), so the stock side uses
  :func:`stock.stock_wrapper`, a minimal ``textattack`` ``ModelWrapper`` that runs the model on
  one unpadded text at a time, without a cache. Our side is :class:`TextFooler` with the
  batched, padded, sorted, cached :class:`ClassifierWrapper`. Both attack the same 30 SST-2
  dev examples of the same model; per-example result type, adversarial text and query count
  must be identical.
* Validity: TextFooler with the counter-fitted space attacks 50 SST-2 dev examples; no swap
  in a successful example may replace a word by one of its PPDB or WordNet antonyms.

The victim is all-MiniLM-L6-v2 with its linear head trained for 300 steps on frozen features of
1,000 SST-2 train sentences (seconds instead of minutes for fine-tuning; the attack only needs
a model that is right on most examples), built once per module.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from stock import stock_wrapper

pytestmark = pytest.mark.slow  # attacks a real model: about 75 s for the module

TRAIN_STEPS = 300
TRAIN_SENTENCES = 1000
N_FIDELITY = 30
N_VALIDITY = 50


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread here: on a shared 2-core machine two busy-waiting BLAS threads made
    these small forward passes several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sst2():
    from robustbench_nlp.tasks import find_data_dir, get_task, load_split

    if find_data_dir() is None:
        pytest.skip("local data mirror not found")
    task = get_task("sst2")
    train, _ = load_split(task, "train")
    dev, _ = load_split(task, "validation")
    return task, train, dev


@pytest.fixture(scope="module")
def victim(sst2):
    """(tokenizer, model): all-MiniLM-L6-v2 whose mean-pooled linear head is trained for
    TRAIN_STEPS full-batch Adam steps on the frozen features of TRAIN_SENTENCES SST-2 train
    sentences (about 72% dev accuracy); built once per module."""
    from victims import minilm_probe

    _, train_df, _ = sst2
    return minilm_probe(train_df, TRAIN_SENTENCES, TRAIN_STEPS, max_length=64, batch_size=64)


@pytest.fixture(scope="module")
def ours(sst2, victim):
    """Our TextFooler (offline resources, counter-fitted embedding) on N_VALIDITY examples."""
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    task, _, dev = sst2
    tok, model = victim
    atk = TextFooler(TextFooler.Config(resources="offline"))
    assert atk.config.embedding == "counterfitted-glove-50d-k1"  # the offline default
    rows = atk.examples(task, dev, N_VALIDITY, seed=0)
    return rows, list(atk.run(ClassifierWrapper(model, tok, max_length=128), task, rows))


def _kind(result) -> str:
    from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                           SuccessfulAttackResult)

    for cls, name in ((SuccessfulAttackResult, "successful"), (FailedAttackResult, "failed"),
                      (SkippedAttackResult, "skipped")):
        if isinstance(result, cls):
            return name
    raise AssertionError(type(result).__name__)


def test_matches_textattack_recipe(monkeypatch, victim, ours):
    from textattack.attack_recipes import textfooler_jin_2019 as recipe
    from textattack.shared import AttackedText, WordEmbedding

    from robustbench_nlp.attacks import resources as R

    tok, model = victim
    rows, our_results = ours
    emb, _ = R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    monkeypatch.setattr(WordEmbedding, "counterfitted_GLOVE_embedding", staticmethod(lambda: emb))
    monkeypatch.setattr(recipe, "UniversalSentenceEncoder", R.USEm3Encoder)
    monkeypatch.setattr(recipe, "PartOfSpeech", R.SpacyPartOfSpeech)
    wrapper = stock_wrapper(model, tok)
    stock = recipe.TextFoolerJin2019.build(wrapper)
    assert [type(c).__name__ for c in stock.constraints + stock.pre_transformation_constraints
            ] == ["WordEmbeddingDistance", "SpacyPartOfSpeech", "USEm3Encoder",
                  "RepeatModification", "StopwordModification", "InputColumnModification"]

    kinds = []
    for row, mine in zip(rows.head(N_FIDELITY).to_dict("records"), our_results):
        res = stock.attack(AttackedText(OrderedDict(sentence=row["sentence"])), int(row["label"]))
        kind = _kind(res)
        kinds.append(kind)
        assert (mine.index, mine.result) == (row["index"], kind)
        assert mine.adversarial == (res.perturbed_result.attacked_text.text,)
        assert mine.pred_after == res.perturbed_result.output
        if kind != "skipped":
            assert mine.queries == res.num_queries
    # mostly real attacks (this weak victim rarely survives one: failures are rare)
    assert kinds.count("successful") >= 20 and 1 <= kinds.count("skipped") <= 8
    assert wrapper.calls > 1000


def test_matches_textattack_recipe_under_query_budget(monkeypatch, sst2, victim):
    """With a query budget of 25 on both sides, examples whose budget runs out are "failed"
    on both, with the same text and query count (the 30-example test above rarely fails)."""
    from robustbench_nlp.attacks import resources as R  # first: sets up textattack offline
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from textattack.attack_recipes import textfooler_jin_2019 as recipe
    from textattack.shared import AttackedText, WordEmbedding

    task, _, dev = sst2
    tok, model = victim
    atk = TextFooler(TextFooler.Config(resources="offline", query_budget=25))
    rows = atk.examples(task, dev, 12, seed=0)
    mine = list(atk.run(ClassifierWrapper(model, tok, max_length=128), task, rows))
    emb, _ = R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    monkeypatch.setattr(WordEmbedding, "counterfitted_GLOVE_embedding", staticmethod(lambda: emb))
    monkeypatch.setattr(recipe, "UniversalSentenceEncoder", R.USEm3Encoder)
    monkeypatch.setattr(recipe, "PartOfSpeech", R.SpacyPartOfSpeech)
    stock = recipe.TextFoolerJin2019.build(stock_wrapper(model, tok))
    stock.goal_function.query_budget = 25
    kinds = []
    for row, m in zip(rows.to_dict("records"), mine):
        res = stock.attack(AttackedText(OrderedDict(sentence=row["sentence"])), int(row["label"]))
        kinds.append(_kind(res))
        assert (m.index, m.result) == (row["index"], kinds[-1])
        assert m.adversarial == (res.perturbed_result.attacked_text.text,)
        if kinds[-1] != "skipped":
            assert m.queries == res.num_queries <= 25
    assert kinds.count("failed") >= 2 and kinds.count("successful") >= 2


def _antonyms() -> set[tuple[str, str]]:
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.counterfit import read_pairs

    folder = R.counterfitting_dir()
    pairs = set()
    for f in R.COUNTERFIT_ANTONYM_FILES:
        for a, b in read_pairs(folder / f):
            pairs |= {(a.lower(), b.lower()), (b.lower(), a.lower())}
    return pairs


def test_no_antonym_swaps(ours):
    from textattack.shared import AttackedText

    from robustbench_nlp.attacks import resources as R

    rows, results = ours
    antonyms = _antonyms()
    swaps = []
    for r in results:
        if r.result != "successful":
            continue
        before, after = AttackedText(r.original[0]).words, AttackedText(r.adversarial[0]).words
        assert len(before) == len(after)
        swaps += [(before[i].lower(), after[i].lower()) for i in r.extra["modified_indices"]]
    assert sum(r.result == "successful" for r in results) >= 20 and len(swaps) >= 30
    assert [s for s in swaps if s in antonyms] == []

    # not vacuous: raw GloVe would have offered antonyms of these examples' words as swaps
    raw, _ = R.load_word_embedding("glove-6b-50d")
    words = {w.lower() for r in results for w in AttackedText(r.original[0]).words}
    offered = []
    for w in sorted(words):
        if w in raw._word2index:
            i = raw.word2index(w)
            for j in raw.nearest_neighbours(i, 50):
                c = raw.index2word(j)
                if (w, c) in antonyms and raw.get_cos_sim(w, c) >= 0.5:
                    offered.append((w, c))
    assert len(offered) >= 5, offered
