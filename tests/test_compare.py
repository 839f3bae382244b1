"""``rbnlp compare``: paired comparison of two stored runs, on hand-built databases."""

from __future__ import annotations

import json

import pytest

from robustbench_nlp.attacks.protocol import example_set, protocol_hash, protocol_record
from robustbench_nlp.cli import main
from robustbench_nlp.compare import compare_runs, format_comparison
from robustbench_nlp.db import open_store
from robustbench_nlp.errors import ConfigError

OPTIONS = {"query_budget": None, "max_candidates": 50, "min_cos_sim": 0.5}
RESOURCES = {"mode": "offline", "embedding": {"name": "counterfitted-glove-50d",
                                              "fingerprint": "f17f1cf4aa"}}

# 20 examples (indices 0-19); robust = "failed". A is robust on 0-7 (8/20), B on 0-2 and 8
# (4/20): robust under both 0-2 (3), only A 3-7 (5), only B 8 (1), neither 9-19 (11).
# The non-robust results mix "successful" and "skipped" (neither counts as robust).
RESULTS_A = ["failed"] * 8 + ["successful", "skipped"] + ["successful"] * 9 + ["skipped"]
RESULTS_B = (["failed"] * 3 + ["successful"] * 4 + ["skipped", "failed"]
             + ["successful"] * 10 + ["skipped"])


def example(i: int, result: str) -> dict:
    return {"index": i, "original": (f"sentence {i}",), "adversarial": (f"sentence {i}",),
            "attacked_segment": 0, "gold": 1, "pred_before": 0 if result == "skipped" else 1,
            "pred_after": 0 if result != "failed" else 1, "result": result,
            "queries": 0 if result == "skipped" else 30, "num_words": 10,
            "perturbed_words": 2 if result == "successful" else 0, "extra": {}}


def make_run(store, results: dict[int, str], *, defense="peaft", seed=0, task="sst2",
             options=None, status="finished", store_protocol=True, run_id=None) -> str:
    options = dict(OPTIONS if options is None else options)
    rid = store.create_run(id=run_id, task=task, defense=defense, attack="textfooler",
                           model="minilm", seed=seed, num_examples=len(results),
                           config={"run": {}, "attack": options}, resources=RESOURCES)
    for i, r in results.items():
        store.add_example(rid, example(i, r))
    failed = sum(r == "failed" for r in results.values())
    store.save_metrics(rid, aua=100.0 * failed / len(results), attacked=len(results),
                       failed=failed)
    fields = {"status": status}
    if store_protocol:
        rec = protocol_record("textfooler", options, RESOURCES,
                              example_set(task, "validation", results))
        fields.update(protocol=rec, protocol_hash=protocol_hash(rec))
    store.update_run(rid, **fields)
    return rid


@pytest.fixture
def db(tmp_path):
    url = "sqlite:///" + str(tmp_path / "t.db")
    return url, open_store(url)


@pytest.fixture
def pair(db):
    url, store = db
    a = make_run(store, dict(enumerate(RESULTS_A)), defense="freelb", seed=1, run_id="runA")
    b = make_run(store, dict(enumerate(RESULTS_B)), defense="peaft", seed=2, run_id="runB")
    return url, store, a, b


def test_contingency_and_statistics(pair):
    _, store, a, b = pair
    c = compare_runs(store, a, b)
    assert (c.n, c.both, c.only_a, c.only_b, c.neither) == (20, 3, 5, 1, 11)
    assert c.only_a_indices == [3, 4, 5, 6, 7] and c.only_b_indices == [8]
    assert (c.a.robust, c.a.aua_pct, c.b.robust, c.b.aua_pct) == (8, 40.0, 4, 20.0)
    assert (c.a.defense, c.a.seed, c.b.defense, c.b.seed) == ("freelb", 1, "peaft", 2)
    # Wilson 8/20 = (0.218807, 0.613418), 4/20 = (0.080658, 0.416017): see test_stats.py
    assert (round(c.a.aua_low_pct, 2), round(c.a.aua_high_pct, 2)) == (21.88, 61.34)
    assert (round(c.b.aua_low_pct, 2), round(c.b.aua_high_pct, 2)) == (8.07, 41.60)
    # difference 20 points, Newcombe interval (−0.048028, 0.419299) hand-computed in
    # test_stats.py::test_paired_interval_hand_computed
    assert c.diff_points == pytest.approx(20.0)
    assert (round(c.diff_low_points, 2), round(c.diff_high_points, 2)) == (-4.80, 41.93)
    # exact McNemar, 5 vs 1 discordant: 2·P(X ≤ 1), X ~ Bin(6, 1/2) = 2·(1 + 6)/64
    assert c.p_value == pytest.approx(14 / 64, abs=1e-12)
    assert not c.significant
    assert c.answer() == "no significant difference at the 5% level (p = 0.22)"
    assert c.protocol_hash == store.get_run(a).protocol_hash and not c.shared_indices
    # B against A mirrors everything
    r = compare_runs(store, b, a)
    assert (r.only_a, r.only_b, r.only_a_indices) == (1, 5, [8])
    assert (round(r.diff_low_points, 2), round(r.diff_high_points, 2)) == (-41.93, 4.80)
    assert r.p_value == pytest.approx(c.p_value)


def test_cli_text_markdown_json(pair, capsys):
    url, _, a, b = pair
    assert main(["compare", a, b, "--db", url]) == 0
    out = capsys.readouterr().out
    assert "  A  runA  defense freelb, model minilm, seed 1" in out
    assert "  B  runB  defense peaft, model minilm, seed 2" in out
    assert "protocol " + protocol_hash(protocol_record(
        "textfooler", OPTIONS, RESOURCES, example_set("sst2", "validation", range(20)))) in out
    assert "sst2/validation, 20 examples (0-19)" in out
    assert "  A robust             3             5      8" in out
    assert "  A not robust         1            11     12" in out
    assert "  total                4            16     20" in out
    assert "AUA A    40.00%  (8/20; 95% Wilson CI 21.88% to 61.34%)" in out
    assert "AUA B    20.00%  (4/20; 95% Wilson CI 8.07% to 41.60%)" in out
    assert "A − B    20.00 points  (95% Newcombe paired CI -4.80 to 41.93 points)" in out
    assert "exact McNemar test (5 vs 1 discordant examples): p = 0.22" in out
    assert "robust only under A (5): 3-7" in out and "robust only under B (1): 8" in out
    assert out.rstrip().endswith("no significant difference at the 5% level (p = 0.22)")
    assert "compared on the" not in out

    assert main(["compare", a, b, "--db", url, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| A | `runA` | freelb | minilm | 1 |" in md
    assert "| A robust | 3 | 5 | 8 |" in md and "| A not robust | 1 | 11 | 12 |" in md
    assert "| A | 40.00 | 21.88 to 61.34 | Wilson (8/20) |" in md
    assert "| A − B (points) | 20.00 | -4.80 to 41.93 | Newcombe paired |" in md
    assert "**no significant difference at the 5% level (p = 0.22)**" in md

    assert main(["compare", a, b, "--db", url, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["both"], d["only_a"], d["only_b"], d["neither"], d["n"]) == (3, 5, 1, 11, 20)
    assert d["a"]["aua_pct"] == 40.0 and d["b"]["aua_pct"] == 20.0
    assert d["p_value"] == pytest.approx(0.21875)
    assert round(d["diff_low_points"], 2) == -4.80 and d["only_b_indices"] == [8]
    assert d["protocol"]["examples"]["count"] == 20 and d["significant"] is False


def test_significant_difference(db, capsys):
    url, store = db
    # A robust on 0-9 and B on none of 0-19: 10 vs 0 discordant, p = 2/2^10 = 0.001953
    a = make_run(store, {i: "failed" if i < 10 else "successful" for i in range(20)})
    b = make_run(store, {i: "successful" for i in range(20)})
    c = compare_runs(store, a, b)
    assert c.p_value == pytest.approx(2 / 1024) and c.significant
    assert c.answer() == "A is more robust than B (p = 0.002)"
    assert compare_runs(store, b, a).answer() == "B is more robust than A (p = 0.002)"
    assert main(["compare", a, b, "--db", url]) == 0
    assert capsys.readouterr().out.rstrip().endswith("A is more robust than B (p = 0.002)")


def test_different_tasks(db, capsys):
    url, store = db
    a = make_run(store, {i: "failed" for i in range(5)}, run_id="s1")
    b = make_run(store, {i: "failed" for i in range(5)}, task="rte", run_id="r1")
    assert main(["compare", a, b, "--db", url]) == 2
    err = capsys.readouterr().err
    assert err == "error: runs s1 and r1 are of different tasks (sst2, rte)\n"


def test_different_protocols(db, capsys):
    url, store = db
    a = make_run(store, {i: "failed" for i in range(10)}, run_id="p1")
    b = make_run(store, {i: "failed" for i in range(20)}, run_id="p2",
                 options={**OPTIONS, "query_budget": 100})
    for shared in ([], ["--shared-indices"]):  # the option does not excuse other fields
        assert main(["compare", a, b, "--db", url, *shared]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            "error: runs p1 and p2 were attacked under different protocols (differ in: ")
        assert "options.query_budget" in err and err.endswith(
            "; compare runs of one protocol\n")
    with pytest.raises(ConfigError, match=r"examples\.count, examples\.indices, "
                                          r"examples\.indices_sha256, options\.query_budget\)"):
        compare_runs(store, a, b)


def test_shared_indices(db, capsys):
    url, store = db
    # A attacked 0-9 (robust on 0-4), B attacked 0-19 (robust on 0-1 and 5-19)
    a = make_run(store, {i: "failed" if i < 5 else "successful" for i in range(10)},
                 run_id="ten")
    b = make_run(store, {i: "successful" if 2 <= i < 5 else "failed" for i in range(20)},
                 run_id="twenty")
    with pytest.raises(ConfigError, match=r"differ in: examples\.count, examples\.indices, "
                                          r"examples\.indices_sha256\); compare runs of one "
                                          r"protocol, or pass --shared-indices"):
        compare_runs(store, a, b)
    c = compare_runs(store, a, b, shared_indices=True)
    # on 0-9: both 0-1, only A 2-4, only B 5-9, neither none
    assert (c.n, c.both, c.only_a, c.only_b, c.neither) == (10, 2, 3, 5, 0)
    assert c.only_a_indices == [2, 3, 4] and c.only_b_indices == [5, 6, 7, 8, 9]
    assert (c.a.aua_pct, c.b.aua_pct, c.a.attacked, c.b.attacked) == (50.0, 70.0, 10, 20)
    assert c.diff_points == pytest.approx(-20.0)
    assert c.p_value == pytest.approx(2 * (1 + 8 + 28 + 56) / 256)  # 3 vs 5 of 8
    assert c.protocol["examples"]["count"] == 10
    assert c.protocol_hash == protocol_hash(c.protocol) == store.get_run(a).protocol_hash
    assert c.note() == "compared on the 10 indices both runs attacked (A attacked 10, " \
                       "B attacked 20)"
    assert main(["compare", a, b, "--db", url, "--shared-indices"]) == 0
    out = capsys.readouterr().out
    assert "compared on the 10 indices both runs attacked (A attacked 10, B attacked 20)" in out
    assert "AUA B    70.00%  (7/10;" in out
    assert main(["compare", a, b, "--db", url, "--shared-indices", "--format", "markdown"]) == 0
    assert "Compared on the 10 indices both runs attacked" in capsys.readouterr().out


def test_unfinished_and_unknown_runs(db):
    _, store = db
    a = make_run(store, {0: "failed"}, run_id="done")
    b = make_run(store, {0: "failed"}, status="attacking", run_id="busy")
    with pytest.raises(ConfigError, match="run busy is not finished \\(status 'attacking'\\)"):
        compare_runs(store, a, b)
    with pytest.raises(ConfigError, match="no run with id 'nope'"):
        compare_runs(store, a, "nope")
    with pytest.raises(ConfigError, match="unknown format"):
        format_comparison(compare_runs(store, a, a), "html")


def test_protocol_computed_for_older_runs(db):
    """Runs stored before revision 0003 (no ``runs.protocol``) get theirs computed."""
    _, store = db
    a = make_run(store, dict(enumerate(RESULTS_A)), store_protocol=False, options={})
    b = make_run(store, dict(enumerate(RESULTS_B)), store_protocol=False, options={})
    assert store.get_run(a).protocol is None
    c = compare_runs(store, a, b)
    assert (c.both, c.only_a, c.only_b, c.neither) == (3, 5, 1, 11)
    assert c.protocol["recipe"] == "textfooler" and c.protocol["examples"]["count"] == 20
    assert c.a.protocol_hash == c.b.protocol_hash == c.protocol_hash
    # a differing stored attack option is named
    d = make_run(store, dict(enumerate(RESULTS_B)), store_protocol=False,
                 options={"max_candidates": 5})
    with pytest.raises(ConfigError, match=r"differ in: options\.max_candidates\)"):
        compare_runs(store, a, d)
