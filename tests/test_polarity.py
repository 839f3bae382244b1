"""Tests of the label-preservation (polarity) constraint and the invalid-swap rate.

The Hu & Liu opinion lexicon comes from the data mirror
(``../shared/data/nltk_data/corpora/opinion_lexicon.zip``) or NLTK's own data path; the tests
that need it skip when neither has it. The one ``slow`` test attacks a real (cheap) victim.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from robustbench_nlp.errors import DataError


@pytest.fixture(scope="module")
def lexicon():
    from robustbench_nlp.attacks.polarity import load_opinion_lexicon

    try:
        return load_opinion_lexicon()
    except DataError as e:
        pytest.skip(str(e))


# ---------------------------------------------------------------------------- lexicon
def test_lexicon_sizes_and_polarity(lexicon):
    from robustbench_nlp.attacks.polarity import LEXICON_NAME, load_opinion_lexicon, polarity

    # sizes documented in ../shared/data/README.md (NLTK's positive() / negative())
    assert len(lexicon.positive) == 2006 and len(lexicon.negative) == 4783
    assert polarity("good") == 1 and polarity("bleak") == -1 and polarity("table") == 0
    assert polarity("GOOD") == 1 and polarity("Bleak") == -1  # lower-cased lookup
    # the three words the Hu & Liu lists share count as neither
    assert lexicon.positive & lexicon.negative == {"envious", "enviously", "enviousness"}
    assert polarity("envious") == 0
    src = lexicon.source
    assert src["name"] == LEXICON_NAME == "hu-liu-opinion-lexicon"
    assert len(src["fingerprint"]) == 64 and int(src["fingerprint"], 16) >= 0
    assert src["path"] == "nltk" or src["path"].endswith("opinion_lexicon.zip")
    assert load_opinion_lexicon() is lexicon  # cached per process


def test_lexicon_fingerprint_depends_on_words():
    from robustbench_nlp.attacks.polarity import lexicon_fingerprint

    a = lexicon_fingerprint(["good", "fine"], ["bad"])
    assert a == lexicon_fingerprint(["fine", "good"], ["bad"])  # order-free
    assert a != lexicon_fingerprint(["good"], ["bad", "fine"])


def test_missing_lexicon_is_a_one_line_data_error(monkeypatch, tmp_path):
    import nltk

    from robustbench_nlp.attacks import polarity as P

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(P, "_CACHE", {})
    with pytest.raises(DataError) as e:
        P.load_opinion_lexicon(tmp_path)  # a folder without nltk_data/
    msg = str(e.value)
    assert "\n" not in msg and "opinion_lexicon" in msg
    assert "nltk.download('opinion_lexicon')" in msg and "mirror" in msg


# ---------------------------------------------------------------------------- swaps
def test_reversing_swaps_single_segment(lexicon):
    from robustbench_nlp.attacks.polarity import reversing_swaps

    assert reversing_swaps(("a bleak film",), ("a heartening film",)) == [("bleak", "heartening")]
    assert reversing_swaps(("a bleak film",), ("a heartening film",), [1]) == \
        [("bleak", "heartening")]
    assert reversing_swaps(["a bleak film"], ["a heartening film"], modified_indices=[1],
                           lexicon=lexicon) == [("bleak", "heartening")]
    # same polarity (both positive), neutral -> neutral, neutral -> polar: not reversing
    assert reversing_swaps(("an enjoyable film",), ("an delightful film",), [1]) == []
    assert reversing_swaps(("an enjoyable film",), ("an enjoyable movie",), [2]) == []
    assert reversing_swaps(("an enjoyable film",), ("an enjoyable disaster",), [2]) == []
    # positive -> negative, two swaps, words as written (case kept)
    assert reversing_swaps(("Enjoyable and good .",), ("Unimaginably and bleak .",), [0, 2]) \
        == [("Enjoyable", "Unimaginably"), ("good", "bleak")]
    # modified_indices restrict the pairs that are looked at
    assert reversing_swaps(("Enjoyable and good .",), ("Unimaginably and bleak .",), [2]) \
        == [("good", "bleak")]
    assert reversing_swaps(("a bleak film",), ("a bleak film",), []) == []


def test_reversing_swaps_pair_task_second_segment(lexicon):
    from robustbench_nlp.attacks.polarity import reversing_swaps, text_words

    original = ("a good story", "a bleak ending")
    adversarial = ("a good story", "a heartening ending")
    # words of both segments in order, as AttackedText.words gives for the two columns
    from textattack.shared import AttackedText

    words = text_words(original)
    assert words == ["a", "good", "story", "a", "bleak", "ending"]
    assert words == AttackedText(OrderedDict(premise=original[0],
                                             hypothesis=original[1])).words
    assert reversing_swaps(original, adversarial, [4]) == [("bleak", "heartening")]
    assert reversing_swaps(original, adversarial) == [("bleak", "heartening")]  # aligned
    assert reversing_swaps(original, adversarial, [1]) == []  # index 1 is the unchanged "good"


def test_reversing_swaps_word_count_differs_uses_alignment(lexicon):
    from robustbench_nlp.attacks.polarity import reversing_swaps

    # 4 words vs 3: the indices cannot be trusted; difflib pairs the 1:1 replace span
    assert reversing_swaps(("truly a bleak film",), ("a heartening film",), [2]) == \
        [("bleak", "heartening")]
    # a 2-word span replaced by 1 word is not paired
    assert reversing_swaps(("a bleak dull film",), ("a heartening film",)) == []


def test_invalid_swap_stats_counts(lexicon):
    from robustbench_nlp.attacks.polarity import invalid_swap_stats

    def row(result, orig, adv, idx=None):
        extra = {} if idx is None else {"modified_indices": idx}
        return {"result": result, "original": [orig], "adversarial": [adv], "extra": extra}

    rows = [
        row("successful", "a bleak film", "a heartening film", [1]),           # invalid
        row("successful", "good and bleak", "bleak and good", [0, 2]),         # invalid, 2 swaps
        row("successful", "a bleak film", "a heartening film"),                # invalid (aligned)
        row("successful", "an enjoyable film", "an enjoyable movie", [2]),     # valid
        row("successful", "an enjoyable film", "an delightful film", [1]),     # valid
        row("failed", "a bleak film", "a heartening film", [1]),               # not successful
        row("skipped", "good", "good", []),
        # a raw SQL row: JSON strings
        {"result": "successful", "original": '["slow and dull"]',
         "adversarial": '["brisk and dull"]', "extra": '{"modified_indices": [0]}'},  # invalid
    ]
    st = invalid_swap_stats(rows)
    assert st["successful"] == 6 and st["invalid"] == 4
    assert st["invalid_swap_rate"] == pytest.approx(100 * 4 / 6)
    assert st["top_swaps"] == [["bleak", "heartening", 2], ["bleak", "good", 1],
                               ["good", "bleak", 1], ["slow", "brisk", 1]]
    empty = invalid_swap_stats([row("failed", "a", "b", [0])], lexicon)
    assert empty == {"successful": 0, "invalid": 0, "invalid_swap_rate": None, "top_swaps": []}


def test_invalid_swap_stats_top_ten_ties_by_word(lexicon):
    from robustbench_nlp.attacks.polarity import invalid_swap_stats

    negatives = ["awful", "bleak", "dull", "slow", "boring", "bad", "ugly", "sad", "weak",
                 "poor", "nasty", "grim"]
    assert all(lexicon.polarity(w) == -1 for w in negatives)
    assert lexicon.polarity("good") == 1
    rows = [{"result": "successful", "original": [f"a {w} film"], "adversarial": ["a good film"],
             "extra": {"modified_indices": [1]}} for w in negatives]
    rows += [rows[-1]] * 2  # "grim" three times
    st = invalid_swap_stats(rows)
    assert (st["successful"], st["invalid"], st["invalid_swap_rate"]) == (14, 14, 100.0)
    assert st["top_swaps"][0] == ["grim", "good", 3]
    assert [s[0] for s in st["top_swaps"][1:]] == sorted(negatives[:-1])[:9]


# ---------------------------------------------------------------------------- constraint
def _swap(text, index, word):
    """``text`` with word ``index`` replaced, as a word-swap transformation would mark it."""
    from textattack.transformations import WordSwapRandomCharacterDeletion

    out = text.replace_word_at_index(index, word)
    out.attack_attrs["last_transformation"] = WordSwapRandomCharacterDeletion()
    return out


def test_polarity_constraint_on_attacked_texts(lexicon):
    from robustbench_nlp.attacks.polarity import PolarityPreservation

    from textattack.constraints import Constraint
    from textattack.shared import AttackedText
    from textattack.transformations import WordDeletion

    # the pairs really are opposite / equal / neutral in the lexicon
    assert (lexicon.polarity("enjoyable"), lexicon.polarity("unimaginably")) == (1, -1)
    assert (lexicon.polarity("bleak"), lexicon.polarity("heartening")) == (-1, 1)
    assert (lexicon.polarity("delightful"), lexicon.polarity("film"),
            lexicon.polarity("movie")) == (1, 0, 0)

    c = PolarityPreservation()
    assert isinstance(c, Constraint) and c.compare_against_original is True
    assert c.extra_repr_keys() == ["lexicon_name", "lexicon_fingerprint",
                                   "compare_against_original"]
    assert "hu-liu-opinion-lexicon" in repr(c)
    original = AttackedText("an enjoyable film , not a bleak one")
    neutral = _swap(original, 2, "movie")
    same = _swap(original, 1, "delightful")
    reversed_ = _swap(original, 1, "unimaginably")
    assert original.words[5] == "bleak"  # "," is not a word
    reversed_neg = _swap(original, 5, "heartening")
    assert neutral.attack_attrs["newly_modified_indices"] == {2}
    assert c._check_constraint(neutral, original) is True
    assert c._check_constraint(same, original) is True
    assert c._check_constraint(reversed_, original) is False
    assert c._check_constraint(reversed_neg, original) is False
    # two swaps at once: one reversing swap is enough to reject
    both = _swap(neutral, 1, "unimaginably")
    assert c._check_constraint(both, original) is False
    assert c(neutral, original) is True and c(reversed_, original) is False
    kept = c.call_many([neutral, reversed_, same, reversed_neg], original)
    assert [t.text for t in kept] == [neutral.text, same.text]

    # only word swaps are checked: a deletion passes through call_many untouched
    assert c.check_compatibility(WordDeletion()) is False
    assert c.check_compatibility(reversed_.attack_attrs["last_transformation"]) is True
    deleted = original.delete_word_at_index(1)
    deleted.attack_attrs["last_transformation"] = WordDeletion()
    assert c.call_many([deleted], original) == [deleted]


def test_polarity_constraint_pair_task(lexicon):
    from robustbench_nlp.attacks.polarity import PolarityPreservation

    from textattack.shared import AttackedText

    c = PolarityPreservation(lexicon)
    original = AttackedText(OrderedDict(premise="a good story", hypothesis="a bleak ending"))
    assert original.words[4] == "bleak"
    assert c._check_constraint(_swap(original, 4, "heartening"), original) is False
    assert c._check_constraint(_swap(original, 5, "finale"), original) is True
    assert c._check_constraint(_swap(original, 1, "delightful"), original) is True


def test_textfooler_preserve_polarity_option(lexicon):
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.config import build_config
    from robustbench_nlp.tasks import get_task

    assert TextFooler.Config().preserve_polarity is False  # default: the lead decides
    cfg = build_config(TextFooler.Config, {"preserve_polarity": "true", "resources": "textattack"})
    atk = TextFooler(cfg)
    assert atk.config.preserve_polarity is True
    atk.check_task(get_task("sst2"))  # loads the lexicon
    assert atk.resources()["polarity_lexicon"] == lexicon.source
    off = TextFooler(TextFooler.Config(resources="textattack"))
    assert "polarity_lexicon" not in off.resources()


def test_textfooler_check_task_fails_without_lexicon(monkeypatch, tmp_path):
    import nltk

    from robustbench_nlp.attacks import polarity as P
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.tasks import get_task

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(P, "_CACHE", {})
    monkeypatch.setattr("robustbench_nlp.tasks.find_data_dir", lambda explicit=None: None)
    atk = TextFooler(TextFooler.Config(resources="textattack", preserve_polarity=True))
    with pytest.raises(DataError, match="opinion_lexicon"):
        atk.check_task(get_task("sst2"))


# ---------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def _one_thread():
    """One torch thread, as tests/test_fidelity.py (busy-waiting BLAS threads on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


N_E2E = 30


@pytest.mark.slow
def test_constraint_takes_effect_in_textfooler_search(_one_thread, lexicon):
    """Unconstrained TextFooler on the first 30 SST-2 dev examples (seed 0) of a cheap victim
    makes reversing swaps; with ``preserve_polarity`` it makes none.

    Observed on the project's 2-core machine (2026-12-01): unconstrained 26 successful, 4
    skipped, 2 invalid (``bleak -> heartening``, ``slow -> brisk``), 1,491 queries; with
    ``preserve_polarity`` 26 successful, 4 skipped, 0 invalid, 1,476 queries; 60 s for
    the test once the counter-fitted embedding cache exists.
    """
    from robustbench_nlp.attacks.polarity import reversing_swaps
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.tasks import find_data_dir, get_task, load_split
    from victims import minilm_probe

    if find_data_dir() is None:
        pytest.skip("local data mirror not found")
    task = get_task("sst2")
    train, _ = load_split(task, "train")
    dev, _ = load_split(task, "validation")
    # victim: all-MiniLM-L6-v2, linear head trained 100 Adam steps on frozen mean-pooled
    # features of 256 train sentences (as tests/test_textfooler.py's _probe_trained)
    tok, model = minilm_probe(train, 256, 100, max_length=48)

    def attack(preserve: bool):
        atk = TextFooler(TextFooler.Config(resources="offline", preserve_polarity=preserve))
        rows = atk.examples(task, dev, N_E2E, seed=0)
        results = list(atk.run(ClassifierWrapper(model, tok, max_length=128), task, rows))
        successful = [r for r in results if r.result == "successful"]
        invalid = {r.index: reversing_swaps(r.original, r.adversarial,
                                            r.extra["modified_indices"], lexicon)
                   for r in successful}
        return atk, results, successful, {i: s for i, s in invalid.items() if s}

    free, free_results, free_ok, free_invalid = attack(False)
    atk, kept_results, kept_ok, kept_invalid = attack(True)
    assert len(free_ok) >= 15 and len(kept_ok) >= 15
    assert len(free_invalid) >= 1, "unconstrained attack made no reversing swap: pick more"
    assert kept_invalid == {}
    # the constraint changed the search where the free attack reversed a word
    by_index = {r.index: r for r in kept_results}
    for i in free_invalid:
        assert by_index[i].adversarial != next(r for r in free_results
                                               if r.index == i).adversarial
    assert atk.resources()["polarity_lexicon"] == lexicon.source
    assert "polarity_lexicon" not in free.resources()
    victim = ClassifierWrapper(model, tok, max_length=128)
    assert [type(c).__name__ for c in atk.build(victim, task).constraints][-1] == \
        "PolarityPreservation"
    assert "PolarityPreservation" not in [type(c).__name__
                                          for c in free.build(victim, task).constraints]
