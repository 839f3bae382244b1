"""Antonym-repel weight sweep: why TextFooler's offline space uses k1 = 1.0.

Counter-fits GloVe 6B 50d (the inputs of ``counterfitted-glove-50d``) once per antonym-repel
weight ``k1``, every other hyperparameter published (robustbench_nlp.counterfit), and prints
per setting: PPDB and WordNet antonym pairs left as TextFooler swap candidates (one word
among the other's 50 nearest neighbours with cosine >= 0.5), the share of PPDB synonym pairs
that are candidates, SimLex-999 Spearman rho, and the mean share of a word's 50 nearest
neighbours kept from raw GloVe (2,000 random words, seed 0). Nothing is cached. Usage::

    python scripts/counterfit_k1_sweep.py [--k1 0.1 0.3 0.5 1.0] [--iterations 20]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def top_neighbours(x: np.ndarray, rows: np.ndarray, k: int = 50) -> np.ndarray:
    """Indices [len(rows), k] of the k nearest (cosine) neighbours of ``rows`` of unit ``x``,
    the word itself excluded."""
    import torch

    xt = torch.as_tensor(x)
    out = []
    for s in range(0, len(rows), 2048):
        r = torch.as_tensor(rows[s:s + 2048])
        sims = xt[r] @ xt.T
        sims[torch.arange(len(r)), r] = -2.0
        out.append(sims.topk(k, 1).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def candidate_pairs(x: np.ndarray, pairs: np.ndarray, k: int = 50,
                    min_cos: float = 0.5) -> tuple[int, int]:
    """(pairs that are swap candidates, unordered pairs) for index ``pairs`` [P, 2]."""
    p = np.unique(np.sort(pairs, 1), axis=0)
    words = np.unique(p)
    top = top_neighbours(x, words, k)
    pos = np.searchsorted(words, p)
    near = (top[pos[:, 0]] == p[:, 1:2]).any(1) | (top[pos[:, 1]] == p[:, 0:1]).any(1)
    cos = (x[p[:, 0]] * x[p[:, 1]]).sum(1)
    return int((near & (cos >= min_cos)).sum()), len(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k1", type=float, nargs="+", default=[0.1, 0.3, 0.5, 1.0])
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from robustbench_nlp import resources as R
    from robustbench_nlp.counterfit import (PUBLISHED_PARAMS, constraint_pairs, counter_fit,
                                            normalise, read_pairs, read_simlex,
                                            simlex_spearman)

    folder = R.counterfitting_dir()
    words, matrix, _ = R._load_glove()
    w2i = {w: i for i, w in enumerate(words)}
    syn = [p for f in R.COUNTERFIT_SYNONYM_FILES for p in read_pairs(folder / f)]
    ant = [p for f in R.COUNTERFIT_ANTONYM_FILES for p in read_pairs(folder / f)]
    sets = {name: constraint_pairs(read_pairs(folder / f), w2i) for name, f in
            (("PPDB ant", "ppdb_antonyms.txt"), ("WordNet ant", "wordnet_antonyms.txt"),
             ("PPDB syn", "ppdb_synonyms.txt"))}
    simlex = read_simlex(folder / "SimLex-999.txt")
    raw = normalise(matrix)
    sample = np.sort(np.random.default_rng(0).choice(len(words), 2000, replace=False))
    raw_top = top_neighbours(raw, sample)

    print(f"GloVe 6B 50d, {len(words):,} words; published params but k1; "
          f"{args.iterations} steps")
    print(f"{'k1':>5}  {'PPDB ant left':>13}  {'WordNet ant left':>16}  {'PPDB syn cand %':>15}"
          f"  {'SimLex rho':>10}  {'overlap':>7}")
    for k1 in args.k1:
        params = PUBLISHED_PARAMS.__class__(**{**PUBLISHED_PARAMS.to_dict(), "k1": k1,
                                               "iterations": args.iterations})
        x = counter_fit(matrix, words, syn, ant, params, progress=False)
        hits = {name: candidate_pairs(x, p) for name, p in sets.items()}
        rho, _ = simlex_spearman(x, w2i, simlex)
        top = top_neighbours(x, sample)
        overlap = float(np.mean([len(set(a) & set(b)) / 50 for a, b in zip(top, raw_top)]))
        h, n = hits["PPDB syn"]
        print(f"{k1:5.2f}  {hits['PPDB ant'][0]:>13}  {hits['WordNet ant'][0]:>16}  "
              f"{100 * h / n:15.2f}  {rho:10.3f}  {overlap:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
