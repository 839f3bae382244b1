"""Tests of counter-fitting (attacks/counterfit.py) and its cached embedding.

The synthetic tests take well under a second. ``test_real_counterfitted_embedding`` is
marked slow: it loads the cached ``counterfitted-glove-50d-k1`` build in seconds, or builds it
(a few minutes on two CPU cores) when the cache is empty.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robustbench_nlp.attacks.counterfit import (PUBLISHED_PARAMS, STRONG_REPEL_PARAMS,
                                        CounterfitParams, constraint_pairs, counter_fit,
                                        counterfit_step, neighbour_pair_share, normalise,
                                        read_pairs, read_simlex, remove_pairs, simlex_spearman,
                                        vsp_pairs)


def _reference_step(x: np.ndarray, syn: set, ant: set, vsp: dict, p: CounterfitParams):
    """One step of the published procedure written as per-pair loops in float64
    (the paper's update, independent of the vectorised implementation)."""
    grad: dict[int, np.ndarray] = {}
    cnt: dict[int, int] = {}

    def add(w, g):
        grad[w] = grad.get(w, 0) + g
        cnt[w] = cnt.get(w, 0) + 1

    for i, j in ant:
        if 1 - x[i] @ x[j] < p.delta:
            add(i, p.k1 * (x[i] * (x[i] @ x[j]) - x[j]))
    for i, j in syn:
        if 1 - x[i] @ x[j] > p.gamma:
            add(j, -p.k2 * (x[j] * (x[j] @ x[i]) - x[i]))
    for (i, j), d0 in vsp.items():
        if d0 <= 1 - x[i] @ x[j]:
            add(i, -p.k3 * (x[i] * (x[i] @ x[j]) - x[j]))
    out = x.copy()
    for w, g in grad.items():
        out[w] = out[w] + g / cnt[w]
    return out / np.sqrt((out ** 2).sum(1, keepdims=True) + 1e-6)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    x = rng.normal(size=(40, 6)).astype(np.float32)
    syn = [(f"w{2 * k}", f"w{2 * k + 1}") for k in range(12)]           # 12 pairs
    ant = [(f"w{k}", f"w{k + 13}") for k in range(0, 20, 2)]              # 10 pairs
    syn.append(("w30", "w31"))  # listed as both: an antonym pair only
    ant += [("w31", "w30"), ("w1", "not-in-vocab"), ("w5", "w5")]
    return words, x, syn, ant


def test_constraint_pairs_both_orders_in_vocab_only():
    w2i = {"good": 0, "bad": 1, "fine": 2}
    p = constraint_pairs([("good", "bad"), ("bad", "good"), ("good", "good"),
                          ("good", "awful"), ("fine", "good")], w2i)
    assert p.tolist() == [[0, 1], [0, 2], [1, 0], [2, 0]]
    assert remove_pairs(p, np.array([[1, 0], [2, 2]]), 3).tolist() == [[0, 1], [0, 2], [2, 0]]
    assert constraint_pairs([("x", "y")], w2i).shape == (0, 2)


def test_vectorised_step_matches_published_loops(toy):
    words, x0, syn_w, ant_w = toy
    w2i = {w: i for i, w in enumerate(words)}
    p = CounterfitParams(rho=0.6)
    x = normalise(x0)
    ant = constraint_pairs(ant_w, w2i)
    syn = remove_pairs(constraint_pairs(syn_w, w2i), ant, len(words))
    assert len(ant) == 22 and len(syn) == 24  # the shared pair left the synonyms
    vsp, d0 = vsp_pairs(x, p.rho, chunk=7, progress=False)
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(s, -2)
    assert sorted(map(tuple, vsp.tolist())) == sorted(zip(*np.nonzero(s >= 1 - p.rho)))
    assert len(vsp) > 10
    ref = x.astype(np.float64)
    vsp_dict = {(i, j): 1 - ref[i] @ ref[j] for i, j in vsp.tolist()}
    fast = x
    for _ in range(3):
        ref = _reference_step(ref, set(map(tuple, syn.tolist())), set(map(tuple, ant.tolist())),
                              vsp_dict, p)
        fast = counterfit_step(fast, syn, ant, vsp, d0, p, chunk=5)
        np.testing.assert_allclose(fast, ref, atol=2e-5)
    assert np.abs(fast - x).max() > 0.05  # the step did move vectors


def test_counter_fit_attracts_synonyms_repels_antonyms(toy):
    words, x0, syn_w, ant_w = toy
    w2i = {w: i for i, w in enumerate(words)}
    stats: dict = {}
    out = counter_fit(x0, words, syn_w, ant_w, progress=False, stats=stats)
    assert stats["antonym_pairs"] == 22 and stats["synonym_pairs"] == 24
    assert out.shape == x0.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    x = normalise(x0)

    def cos(v, pairs):
        return np.array([v[w2i[a]] @ v[w2i[b]] for a, b in pairs if a in w2i and b in w2i
                         and a != b])

    ant_in = [(a, b) for a, b in ant_w if b in w2i and a != b]
    syn_only = [q for q in syn_w if q not in ant_in and q[0] != q[1]]
    assert (cos(out, syn_only) > cos(x, syn_only) + 0.05).all()
    # antonyms are repelled while their cosine distance is below delta = 1 (cosine > 0)
    close = cos(x, ant_in) > 0.1
    assert close.sum() >= 3
    assert (cos(out, ant_in)[close] < cos(x, ant_in)[close] - 0.1).all()
    assert cos(out, ant_in).max() < 0.15


def test_params_and_inputs_validated():
    with pytest.raises(ValueError, match="k1"):
        CounterfitParams(k1=-0.1)
    with pytest.raises(ValueError, match="iterations"):
        CounterfitParams(iterations=2.5)
    with pytest.raises(ValueError, match="3 words"):
        counter_fit(np.zeros((2, 4)), ["a", "b", "c"], [], [])
    with pytest.raises(ValueError, match="repeated"):
        counter_fit(np.ones((2, 4)), ["a", "a"], [], [])


def test_evaluation_helpers(tmp_path):
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    nn = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3], [3, 2, 1, 0]])
    # (0,1): neighbours, cos 0.99 -> counted; (0,3): cos -1; (1,2): cos 0.11
    share, hits, n = neighbour_pair_share(x, nn, np.array([[0, 1], [1, 0], [0, 3], [1, 2]]),
                                          k=1)
    assert (hits, n) == (1, 3) and abs(share - 100 / 3) < 1e-9
    f = tmp_path / "simlex.txt"
    f.write_text("word1\tword2\tPOS\tSimLex999\n" "a\tb\tA\t9.0\n" "a\tc\tA\t5.0\n"
                 "a\td\tA\t1.0\n" "a\tzz\tA\t3.0\n", encoding="utf-8")
    rows = read_simlex(f)
    assert rows[0] == ("a", "b", 9.0) and len(rows) == 4
    rho, used = simlex_spearman(x, {"a": 0, "b": 1, "c": 2, "d": 3}, rows)
    assert used == 3 and rho == pytest.approx(1.0)
    g = tmp_path / "pairs.txt"
    g.write_text("good bad \n\nhot cold\n", encoding="utf-8")
    assert read_pairs(g) == [("good", "bad"), ("hot", "cold")]


@pytest.mark.slow
def test_real_counterfitted_embedding():
    """TextFooler's offline space (cached build, or a fresh one): no PPDB or WordNet antonym
    pair is left a swap candidate, synonyms stay candidates, SimLex-999 ρ rises."""
    from robustbench_nlp.attacks import resources as R

    try:
        folder = R.counterfitting_dir()
    except Exception as e:  # no data mirror
        pytest.skip(str(e))
    cf, info = R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    raw, raw_info = R.load_word_embedding("glove-6b-50d")
    assert info["vocab_size"] == raw_info["vocab_size"] and info["dim"] == 50
    assert cf.index2word(0) == raw.index2word(0)
    assert info["counterfit"]["params"] == STRONG_REPEL_PARAMS.to_dict()
    assert STRONG_REPEL_PARAMS == dataclasses.replace(PUBLISHED_PARAMS, k1=1.0)
    w2i = cf._word2index
    assert w2i == raw._word2index
    ant = constraint_pairs(read_pairs(folder / "ppdb_antonyms.txt"), w2i)
    before, _, n = neighbour_pair_share(raw.embedding_matrix, raw.nn_matrix, ant)
    after, _, n2 = neighbour_pair_share(cf.embedding_matrix, cf.nn_matrix, ant)
    assert n == n2 > 200
    assert before > 50 and after == 0
    wn = constraint_pairs(read_pairs(folder / "wordnet_antonyms.txt"), w2i)
    wn_before = neighbour_pair_share(raw.embedding_matrix, raw.nn_matrix, wn)[0]
    wn_after = neighbour_pair_share(cf.embedding_matrix, cf.nn_matrix, wn)[0]
    assert wn_before > 10 and wn_after == 0
    syn = constraint_pairs(read_pairs(folder / "ppdb_synonyms.txt"), w2i)
    assert neighbour_pair_share(cf.embedding_matrix, cf.nn_matrix, syn)[0] > 95
    simlex = read_simlex(folder / "SimLex-999.txt")
    rho_raw, m = simlex_spearman(raw.embedding_matrix, w2i, simlex)
    rho_cf, _ = simlex_spearman(cf.embedding_matrix, w2i, simlex)
    assert m > 900 and rho_cf > rho_raw + 0.08

    def nbrs(w, n=50):
        return {cf.index2word(i) for i in cf.nearest_neighbours(cf.word2index(w), n)}

    assert "bad" not in nbrs("good") and "worse" not in nbrs("better")
    assert {"terrific", "wonderful"} & nbrs("great")


def test_cli_resources_unknown_embedding(capsys):
    from robustbench_nlp.cli import main

    assert main(["resources", "build", "--embedding", "no-such-space", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown word embedding 'no-such-space'" in err[0]
    assert "counterfitted-glove-50d-k1" in err[0]


@pytest.mark.slow
def test_cli_resources_build_and_list(capsys):
    """``rbnlp resources build`` (default: TextFooler's embedding) then ``list``."""
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.cli import main

    try:
        R.counterfitting_dir()
    except Exception as e:
        pytest.skip(str(e))
    assert main(["resources", "build", "--no-progress"]) == 0
    out = capsys.readouterr().out
    fp = R.embedding_fingerprint("counterfitted-glove-50d-k1")
    assert out.startswith("counterfitted-glove-50d-k1: 71,815 words x 50 d, 100 neighbours, "
                          f"fingerprint {fp[:16]}")
    assert main(["resources", "list"]) == 0
    out = capsys.readouterr().out
    assert f"built: {R.embedding_cache_path('counterfitted-glove-50d-k1')}" in out
    assert out.count("\n    ") == len(R.EMBEDDINGS)


def test_leaderboard_separates_embedding_builds(tmp_path):
    """Runs whose word spaces differ (name or fingerprint) were attacked under different
    protocols: each is ranked in its own table."""
    from robustbench_nlp.attacks.protocol import protocol_hash, run_protocol
    from robustbench_nlp.db import open_store
    from robustbench_nlp.leaderboard import leaderboard, protocol_tables, resources_tag

    def res(name, fp):
        return {"mode": "offline", "embedding": {"name": name, "fingerprint": fp},
                "sentence_encoder": {"name": "USEm3Encoder"},
                "pos_tagger": {"name": "SpacyPartOfSpeech"}}

    variants = {"a": res("counterfitted-glove-50d", "ab" * 32),
                "b": res("counterfitted-glove-50d", "cd" * 32),
                "c": res("glove-6b-50d", "ab" * 32)}
    assert resources_tag(variants["a"]) == ("counterfitted-glove-50d@abababab + USEm3Encoder + "
                                            "SpacyPartOfSpeech")
    store = open_store(f"sqlite:///{tmp_path / 'lb.db'}")
    for run_id, aua in (("a", 30.0), ("b", 40.0), ("c", 50.0)):
        store.create_run(id=run_id, task="sst2", defense="peaft", attack="textfooler",
                         model="minilm", seed=0, num_examples=1, config={},
                         resources=variants[run_id], status="finished")
        store.save_metrics(run_id, acc=80.0, aua=aua, avg=(80 + aua) / 2)
        rec = run_protocol("textfooler", "sst2", {}, variants[run_id], [0])
        store.update_run(run_id, protocol=rec, protocol_hash=protocol_hash(rec))
    runs = store.runs_frame()
    tables = protocol_tables(leaderboard(runs=runs), runs)
    assert sorted((t.ranked["runs"].tolist(), t.ranked["rank"].tolist()) for t in tables) == [
        (["a"], [1]), (["b"], [1]), (["c"], [1])]
    assert len({t.protocol_hash for t in tables}) == 3
    assert sum("glove-6b-50d@abababab" in t.description for t in tables) == 1


def test_offline_default_is_the_strong_repel_space():
    """TextFooler's default embedding is the registered k1 = 1.0 space; the published
    setting stays registered under its own name with its own fingerprint (cache, tag)."""
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.textfooler import TextFooler

    assert TextFooler.Config().embedding == R.COUNTERFITTED_DEFAULT == "counterfitted-glove-50d-k1"
    assert {"glove-6b-50d", "counterfitted-glove-50d", R.COUNTERFITTED_DEFAULT} <= set(R.EMBEDDINGS)
    try:
        R.counterfitting_dir()
    except Exception as e:  # no data mirror: fingerprints need the constraint files
        pytest.skip(str(e))
    fps = {n: R.embedding_fingerprint(n) for n in ("counterfitted-glove-50d",
                                                   R.COUNTERFITTED_DEFAULT)}
    assert len(set(fps.values())) == 2
    assert PUBLISHED_PARAMS == CounterfitParams() and STRONG_REPEL_PARAMS.k1 == 1.0


def test_nearest_neighbours_of_chosen_rows_equal_the_full_table():
    from robustbench_nlp.attacks.resources import nearest_neighbours

    x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    full = nearest_neighbours(x, 6, chunk=7)
    rows = np.array([3, 17, 0, 39])
    part = nearest_neighbours(x, 6, chunk=3, rows=rows)
    assert part.shape == (4, 7) and (part == full[rows]).all()
    assert part[:, 0].tolist() == [3, 17, 0, 39]
