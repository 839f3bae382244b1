"""Robustness curves from stored rows (:mod:`robustbench_nlp.curves`).

* hand-computed caps, outcomes, curves, area and budget ranges (pure Python, instant);
* the exactness test (slow): an unconstrained TextFooler run on SST-2 dev examples, then
  textattack reruns with ``MaxWordsPerturbed(max_percent=k)`` added and with
  ``query_budget=b``; every rerun result must be the one the derivation predicts from the
  unconstrained rows.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

import pytest

from robustbench_nlp import curves as C


def _row(result, queries=0, num_words=10, perturbed=0, **extra):
    return {"result": result, "queries": queries, "num_words": num_words,
            "perturbed_words": perturbed, "extra": extra}


# ---------------------------------------------------------------- word caps
def test_word_shares_are_the_written_floats():
    assert C.WORD_SHARES == (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
    assert C.WORD_SHARES[6] == 0.3 and 6 * 0.05 != 0.3  # why round(i * 0.05, 2)


def test_word_cap_hand_computed():
    # textattack: math.ceil(n * k) on the float k
    assert C.word_cap(10, 0.3) == 3             # 10 * 0.3 == 3.0 in floats: ceil 3
    assert C.word_cap(10, 6 * 0.05) == 4        # 10 * 0.30000000000000004 = 3.0000000000000004
    assert C.word_cap(100, 0.07) == 8           # 100 * 0.07 = 7.000000000000001
    assert C.word_cap(9, 0.1) == 1              # ceil(0.9)
    assert C.word_cap(20, 0.0) == 0
    assert C.word_cap(8, 0.45) == 4             # ceil(3.6)
    assert C.word_cap(0, 0.5) == 0
    assert C.word_cap(7, 1) == 7


@pytest.mark.parametrize("args", [(10, -0.1), (10, 1.5), (10, float("nan")), (-1, 0.1),
                                  (3.0, 0.1), (True, 0.1), (10, "0.3")])
def test_word_cap_rejects(args):
    with pytest.raises(ValueError):
        C.word_cap(*args)


def _cap_rows():
    """2 skipped, 2 failed and 6 successful rows (total words n, perturbed m); with
    caps ceil(n * k) the successful ones survive from share:
      A n=10 m=1: 0.05 (ceil 0.5 = 1)        B n=10 m=2: 0.15 (ceil 1.0 = 1 at 0.1)
      C n=10 m=4: 0.35 (cap 3 at 0.3)        D n=20 m=3: 0.15 (20 * 0.15 = 3.0)
      E n=8  m=4: 0.4  (ceil 2.8 = 3 at 0.35) F n=5 m=5: never (cap 3 at 0.5)
    D is a pair row: 10 words in its attacked segment, 20 in all (extra["total_words"])."""
    return [_row("skipped"), _row("skipped"),
            _row("failed", 50, 10, 3), _row("failed", 60, 12, 0),
            _row("successful", 20, 10, 1), _row("successful", 20, 10, 2),
            _row("successful", 20, 10, 4), _row("successful", 20, 10, 3, total_words=20),
            _row("successful", 20, 8, 4), _row("successful", 20, 5, 5)]


def test_outcome_under_word_cap():
    rows = _cap_rows()
    assert [C.outcome_under_word_cap(r, 0.3) for r in rows] == \
        ["skipped"] * 2 + ["failed"] * 2 + ["successful", "successful", "failed",
                                            "successful", "failed", "failed"]
    # without total_words, D falls back to num_words = 10: cap(10, 0.15) = 2 < 3
    d = rows[7]
    assert C.outcome_under_word_cap(d, 0.15) == "successful"
    assert C.outcome_under_word_cap({**d, "extra": {}}, 0.15) == "failed"
    assert C.outcome_under_word_cap({**d, "extra": None}, 0.25) == "successful"  # cap 3
    with pytest.raises(ValueError):
        C.outcome_under_word_cap(_row("maximized"), 0.1)


def test_word_share_curve_and_summary_hand_computed():
    rows = _cap_rows()
    # failed = 2 + successful rows above their cap, over N = 10 rows:
    #   0: all 6 over -> 8/10;  0.05, 0.1: A survives -> 7;  0.15-0.3: A B D -> 5;
    #   0.35: + C -> 4;  0.4-0.5: + E -> 3
    expected = [80.0, 70.0, 70.0, 50.0, 50.0, 50.0, 50.0, 40.0, 30.0, 30.0, 30.0]
    curve = C.word_share_curve(rows)
    assert [s for s, _ in curve] == list(C.WORD_SHARES)
    assert [a for _, a in curve] == pytest.approx(expected)
    # area / 0.5 = (80/2 + 70+70+50+50+50+50+40+30+30 + 30/2) / 10 = (40 + 440 + 15) / 10
    s = C.curve_summary(rows)
    assert set(s) == {"aua_at_10", "aua_at_30", "curve_area"}
    assert s["aua_at_10"] == pytest.approx(70.0)
    assert s["aua_at_30"] == pytest.approx(50.0)
    assert s["curve_area"] == pytest.approx(49.5)
    # a flat curve has its value as area; no rows: AUA 0 (as metrics.summarize)
    assert C.curve_summary([_row("failed", 5)])["curve_area"] == pytest.approx(100.0)
    assert C.curve_summary([]) == {"aua_at_10": 0.0, "aua_at_30": 0.0, "curve_area": 0.0}
    assert C.word_share_curve(rows, [0.3]) == [(0.3, 50.0)]


# ---------------------------------------------------------------- query budgets
def _budget_rows():
    return [
        _row("skipped"),
        _row("failed", 40, min_budget=None, success_budgets=[]),
        _row("successful", 30, min_budget=25, success_budgets=[[25, None]]),
        _row("successful", 50, min_budget=12, success_budgets=[[12, None]]),
        _row("successful", 20),                                 # older run: no min_budget
        _row("failed", 60, min_budget=None, success_budgets=[[33, 35]]),  # 3-class case
    ]


def test_outcome_under_budget():
    rows = _budget_rows()
    at = lambda b: [C.outcome_under_budget(r, b) for r in rows]  # noqa: E731
    assert at(1) == ["skipped"] + ["failed"] * 5
    assert at(12)[3] == "successful" and at(11)[3] == "failed"
    assert at(19)[4] == "failed" and at(20)[4] == "successful"   # queries <= budget
    assert [at(b)[5] for b in (32, 33, 35, 36)] == ["failed", "successful", "successful",
                                                    "failed"]
    assert at(math.inf) == ["skipped", "failed", "successful", "successful", "successful",
                            "failed"]
    # min_budget alone (no ranges) is used as a threshold
    assert C.outcome_under_budget(_row("successful", 30, min_budget=25), 24) == "failed"
    assert C.outcome_under_budget(_row("successful", 30, min_budget=25), 25) == "successful"
    for bad in (0, -3, 2.5, float("nan"), True):
        with pytest.raises(ValueError):
            C.outcome_under_budget(rows[2], bad)


def test_query_budget_curve_hand_computed():
    rows = _budget_rows()
    # N = 6; failed among the 5 attacked rows:
    #   b=10: 5 -> 83.33; 12: row 3 broken -> 4 -> 66.67; 20: + the old row -> 3 -> 50;
    #   25: + row 2 -> 2 -> 33.33; 34: + the 3-class row -> 1 -> 16.67; 36: it fails again
    out = C.query_budget_curve(rows, [10, 12, 20, 25, 34, 36])
    assert [b for b, _ in out["points"]] == [10, 12, 20, 25, 34, 36]
    assert [a for _, a in out["points"]] == pytest.approx(
        [500 / 6, 400 / 6, 300 / 6, 200 / 6, 100 / 6, 200 / 6])
    assert out["exact"] is False                       # the old successful row
    exact = C.query_budget_curve([r for i, r in enumerate(rows) if i != 4])
    assert exact["exact"] is True
    # default grid: 1-2-5 below the largest stored query count (60), then 60
    assert [b for b, _ in exact["points"]] == [1, 2, 5, 10, 20, 50, 60]
    assert exact["points"][0][1] == pytest.approx(80.0)    # budget 1: every attack fails
    assert exact["points"][-1][1] == pytest.approx(40.0)   # unconstrained AUA (2 of 5)


def test_default_budgets():
    assert C.default_budgets(0) == [1]
    assert C.default_budgets(1) == [1]
    assert C.default_budgets(50) == [1, 2, 5, 10, 20, 50]
    assert C.default_budgets(51) == [1, 2, 5, 10, 20, 50, 51]
    assert C.default_budgets(1234) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1234]


def test_success_budgets_two_classes():
    trace = [
        (0, [(0.2, False)]),                              # clean text
        (1, [(0.3, False), (0.6, True), (0.1, False)]),   # ranking: a success is not returned
        (4, [(0.25, False), (0.35, False)]),              # step: cur 0.2 -> 0.35
        (6, [(0.3, False), (0.55, True), (0.7, True)]),   # step: first success at position 2
    ]
    # min_budget = 6 queries before the last call + position 2 = 8
    assert C.success_budgets(trace) == [[8, None]]
    failed = trace[:3] + [(6, [(0.3, False), (0.4, False)])]
    assert C.success_budgets(failed) == []
    assert C.success_budgets(trace[:2]) == []             # nothing to swap


def test_success_budgets_three_classes_not_monotone():
    trace = [
        (0, [(0.1, False)]),
        (1, [(0.2, False), (0.3, False)]),
        # prefix 1: best 0.55 succeeds -> budget 4; prefix 2: best 0.6 does not; cur -> 0.6
        (3, [(0.55, True), (0.6, False), (0.4, False)]),
        # a success scoring below the current score is not accepted (budget 7 fails);
        # prefix 2: 0.65 succeeds (8), prefix 3: still 0.65 (9) -> the search returns
        (6, [(0.58, True), (0.65, True), (0.5, False)]),
    ]
    assert C.success_budgets(trace) == [[4, 4], [8, None]]


def test_success_budgets_rejects_bad_traces():
    with pytest.raises(ValueError):
        C.success_budgets([])
    with pytest.raises(ValueError):
        C.success_budgets([(0, [(0.1, False)]), (2, [(0.2, False)])])     # gap in queries
    with pytest.raises(ValueError):  # a successful step is the last one
        C.success_budgets([(0, [(0.1, False)]), (1, []), (1, [(0.9, True)]),
                           (2, [(0.95, True)])])


def test_no_heavy_imports():
    import subprocess
    import sys

    code = ("import sys, robustbench_nlp.curves; "
            "print(any(m in sys.modules for m in ('torch', 'textattack')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- exactness (slow)
N_EXACT = 40
EXACT_SHARES = (0.05, 0.1, 0.2, 0.3)
TRAIN_STEPS = 300
TRAIN_SENTENCES = 1000


@pytest.fixture(scope="module")
def attacked():
    """The victim of tests/test_fidelity.py (all-MiniLM-L6-v2, linear head trained for
    TRAIN_STEPS full-batch Adam steps on frozen features of TRAIN_SENTENCES SST-2 train
    sentences; built the same way, not imported from that module) and our unconstrained
    TextFooler's rows on the first N_EXACT SST-2 dev examples; one torch thread."""
    import torch

    from robustbench_nlp.tasks import find_data_dir, get_task, load_split

    if find_data_dir() is None:
        pytest.skip("local data mirror not found")
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from victims import minilm_probe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = get_task("sst2")
        train_df, _ = load_split(task, "train")
        dev, _ = load_split(task, "validation")
        tok, model = minilm_probe(train_df, TRAIN_SENTENCES, TRAIN_STEPS, max_length=64,
                                  batch_size=64)
        # one wrapper for every run: its cache gives a text the same probabilities in every
        # run whatever batch it comes in (the derivation's premise, module docstring)
        wrapper = ClassifierWrapper(model, tok, max_length=128)
        atk = TextFooler(TextFooler.Config(resources="offline"))
        rows = atk.examples(task, dev, N_EXACT, seed=0)
        results = [r.to_dict() for r in atk.run(wrapper, task, rows)]
        yield task, wrapper, rows, results
    finally:
        torch.set_num_threads(threads)


def _kind(result) -> str:
    from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                           SuccessfulAttackResult)

    for cls, name in ((SuccessfulAttackResult, "successful"), (FailedAttackResult, "failed"),
                      (SkippedAttackResult, "skipped")):
        if isinstance(result, cls):
            return name
    raise AssertionError(type(result).__name__)


def _capped_kinds(task, wrapper, rows, share) -> list[str]:
    """textattack's own ``MaxWordsPerturbed(max_percent=share)`` appended to our built
    TextFooler's constraints, the attack rebuilt with ``textattack.Attack``."""
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    ta = import_textattack()
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.shared import AttackedText

    base = TextFooler(TextFooler.Config(resources="offline")).build(wrapper, task)
    attack = ta.Attack(base.goal_function,
                       base.pre_transformation_constraints + base.constraints
                       + [MaxWordsPerturbed(max_percent=share)],
                       base.transformation, base.search_method)
    assert type(attack.constraints[-1]).__name__ == "MaxWordsPerturbed"
    return [_kind(attack.attack(AttackedText(OrderedDict(sentence=r["sentence"])),
                                int(r["label"]))) for r in rows.to_dict("records")]


@pytest.mark.slow
def test_curves_match_textattack_reruns(attacked):
    """Example by example, the result of a rerun under a word cap / query budget equals the
    derived one (about 2 minutes on the 2-core machine)."""
    from robustbench_nlp.attacks.textfooler import TextFooler

    task, wrapper, rows, results = attacked
    kinds = [r["result"] for r in results]
    assert kinds.count("successful") >= 15 and kinds.count("skipped") >= 1
    for r in results:  # what run() records
        e = r["extra"]
        assert e["total_words"] == r["num_words"]  # one segment
        if r["result"] == "skipped":
            assert "min_budget" not in e
        elif r["result"] == "failed":
            assert e["min_budget"] is None and e["success_budgets"] == []
        else:  # two classes: one unbounded range from min_budget
            assert 1 < e["min_budget"] <= r["queries"]
            assert e["success_budgets"] == [[e["min_budget"], None]]

    changed = {}
    t0 = time.perf_counter()
    for share in EXACT_SHARES:
        got = _capped_kinds(task, wrapper, rows, share)
        want = [C.outcome_under_word_cap(r, share) for r in results]
        assert got == want, (share, [(i, g, w) for i, (g, w) in enumerate(zip(got, want))
                                     if g != w])
        changed[f"cap {share}"] = sum(w != k for w, k in zip(want, kinds))

    # budgets around the median query count: the min_budget nearest to it, one query less,
    # and the lower quartile of the query counts
    queries = sorted(r["queries"] for r in results if r["result"] != "skipped")
    median, quartile = queries[len(queries) // 2], queries[len(queries) // 4]
    near = min((r for r in results if r["result"] == "successful"),
               key=lambda r: abs(r["extra"]["min_budget"] - median))
    edge = near["extra"]["min_budget"]
    budgets = list(dict.fromkeys([edge, edge - 1, quartile]))
    for b in budgets:
        atk = TextFooler(TextFooler.Config(resources="offline", query_budget=b))
        got = [r.result for r in atk.run(wrapper, task, rows)]
        want = [C.outcome_under_budget(r, b) for r in results]
        assert got == want, (b, [(i, g, w) for i, (g, w) in enumerate(zip(got, want))
                                 if g != w])
        changed[f"budget {b}"] = sum(w != k for w, k in zip(want, kinds))
    print(f"\n{N_EXACT} examples ({kinds.count('successful')} successful, "
          f"{kinds.count('failed')} failed, {kinds.count('skipped')} skipped; median "
          f"{median} queries); outcomes changed: {changed}; reruns "
          f"{time.perf_counter() - t0:.0f} s")
    # not vacuous: the caps and budgets do turn successes into failures
    assert changed["cap 0.1"] >= 1 and changed[f"budget {quartile}"] >= 1
    # one query less than a min_budget breaks exactly the examples needing that many
    assert changed[f"budget {edge - 1}"] - changed[f"budget {edge}"] == \
        sum(r["extra"].get("min_budget") == edge for r in results) >= 1
