"""``rbnlp rescore``: protocol, curves and invalid-swap rate derived from stored rows, and
``rbnlp show``'s readable summary of them."""

from __future__ import annotations

import pytest

from robustbench_nlp.cli import main
from robustbench_nlp.db import Store

TF = {"resources": "auto", "query_budget": None, "max_candidates": 50, "min_cos_sim": 0.5,
      "use_threshold": 0.840845057, "attacked_column": None, "embedding": "e"}


def row(i, result, original, adversarial, perturbed, modified=(), queries=30, segment=None):
    orig = original if isinstance(original, tuple) else (original,)
    adv = adversarial if isinstance(adversarial, tuple) else (adversarial,)
    return {"index": i, "original": orig, "adversarial": adv, "attacked_segment": segment,
            "gold": 1, "pred_before": 1 if result != "skipped" else 0,
            "pred_after": 0 if result != "failed" else 1, "result": result,
            "queries": 0 if result == "skipped" else queries,
            "num_words": len(orig[-1].split()), "perturbed_words": perturbed,
            "extra": {"modified_indices": list(modified)}}


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    store.create_run(id="r1", task="sst2", defense="peaft", attack="textfooler", model="minilm",
                     seed=0, num_examples=4, status="finished", resources={"mode": "offline"},
                     config={"run": {}, "defense": {}, "attack": TF, "max_length": 64})
    ten = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"  # 10 words: cap 10% = 1 word, 30% = 3 words
    rows = [
        # one swap, a polarity reversal (bleak → heartening): broken under every cap ≥ 5%
        row(0, "successful", "a bleak film w3 w4 w5 w6 w7 w8 w9",
            "a heartening film w3 w4 w5 w6 w7 w8 w9", 1, [1]),
        # three swaps, none reversing: broken under caps ≥ 25% (ceil(10 * 0.25) = 3)
        row(1, "successful", ten, "v0 v1 v2 w3 w4 w5 w6 w7 w8 w9", 3, [0, 1, 2]),
        row(2, "failed", ten, ten, 0),
        row(3, "skipped", ten, ten, 0),
    ]
    for r in rows:
        store.add_example("r1", r)
    store.save_metrics("r1", acc=80.0, eval_examples=872, aua=25.0, attacked=4, failed=1,
                       successful=2, skipped=1, attacked_clean_acc=75.0)
    return url, store


def test_rescore_fills_protocol_curves_and_invalid_swaps(db, capsys):
    url, store = db
    assert store.get_run("r1").protocol_hash is None
    assert main(["rescore", "--db", url]) == 0
    assert capsys.readouterr().out.strip().endswith("rescored 1 run in " + store.safe_url)
    run = store.get_run("r1")
    assert run.protocol["examples"] == {
        "task": "sst2", "split": "validation", "count": 4, "indices": "0-3",
        "indices_sha256": run.protocol["examples"]["indices_sha256"]}
    assert len(run.protocol_hash) == 10
    m = run.metrics
    # AUA under a cap: failed / 4 attacked; at 10% only example 0 breaks (1 swap ≤ 1):
    # robust = {1, 2} → 50 %; at 30% both break → 25 %
    assert m.aua_at_10 == pytest.approx(50.0) and m.aua_at_30 == pytest.approx(25.0)
    curve = dict((round(k, 2), v) for k, v in m.robustness["word_share_curve"])
    # 0% cap: nothing may change, every attacked-and-correct example is robust (3 of 4)
    assert curve[0.0] == pytest.approx(75.0) and curve[0.05] == pytest.approx(50.0)
    # example 1 (3 swaps) holds under a 20% cap (ceil(10 * 0.2) = 2) and breaks at 25%
    # (ceil(2.5) = 3)
    assert curve[0.2] == pytest.approx(50.0) and curve[0.25] == pytest.approx(25.0)
    # one of the two successful examples holds a reversing swap
    assert m.invalid_swap_rate == pytest.approx(50.0)
    assert m.robustness["invalid_swaps"]["top_swaps"] == [["bleak", "heartening", 1]]
    # idempotent: rescoring again gives the same hash
    h = run.protocol_hash
    assert main(["rescore", "r1", "--db", url]) == 0
    assert store.get_run("r1").protocol_hash == h


def test_show_prints_protocol_intervals_and_reversing_swaps(db, capsys):
    url, _ = db
    assert main(["rescore", "--db", url]) == 0
    capsys.readouterr()
    assert main(["show", "r1", "--db", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "run r1: peaft on sst2 (minilm, seed 0), attack textfooler, status finished"
    assert out[1].startswith("protocol ") and "sst2/validation, 4 examples (0-3)" in out[1]
    # Wilson 95% interval of 1 robust of 4: (0.0456, 0.6994)
    assert "AUA 25.00 [95% CI 4.56, 69.94] over 4 attacked examples" in out[3]
    assert out[-1] == "most frequent reversing swaps: bleak→heartening ×1"
    assert main(["show", "r1", "--db", url, "--format", "json"]) == 0
    assert '"protocol_hash"' in capsys.readouterr().out


def test_pair_rows_get_textattack_total_words():
    from robustbench_nlp.rescore import total_words, with_total_words

    assert total_words(("A man is sleeping .", "He naps")) == 6  # textattack drops "."
    r = row(0, "successful", ("a b c", "d e"), ("a b c", "f e"), 1, [3], segment=1)
    (out,) = with_total_words([r])
    assert out["extra"]["total_words"] == 5 and "total_words" not in r["extra"]
