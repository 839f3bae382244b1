"""Antonym-repel weight sweep: why TextFooler's offline space uses k1 = 1.0.

Counter-fits GloVe 6B 50d (the inputs of ``counterfitted-glove-50d``) once per antonym-repel
weight ``k1``, every other hyperparameter published (robustbench_nlp.attacks.counterfit), and prints
per setting: PPDB and WordNet antonym pairs left as TextFooler swap candidates (one word
among the other's 50 nearest neighbours with cosine >= 0.5), the share of PPDB synonym pairs
that are candidates, SimLex-999 Spearman rho, and the mean share of a word's 50 nearest
neighbours kept from raw GloVe (2,000 random words, seed 0). Nothing is cached. Usage::

    python scripts/counterfit_k1_sweep.py [--k1 0.1 0.3 0.5 1.0] [--iterations 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np


def pair_candidates(x: np.ndarray, pairs: np.ndarray, k: int = 50) -> tuple[float, int]:
    """(% of unordered ``pairs`` [P, 2] that are swap candidates in ``x`` [N, d], count):
    :func:`robustbench_nlp.attacks.counterfit.neighbour_pair_share` with neighbours computed only
    for the words in ``pairs``."""
    from robustbench_nlp.attacks.counterfit import neighbour_pair_share
    from robustbench_nlp.attacks.resources import nearest_neighbours

    words = np.unique(pairs)
    nn = np.zeros((len(x), k + 1), dtype=np.int32)  # rows of other words are never read
    nn[words] = nearest_neighbours(x, k, rows=words)
    share, hits, _ = neighbour_pair_share(x, nn, pairs, k=k)
    return share, hits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k1", type=float, nargs="+", default=[0.1, 0.3, 0.5, 1.0])
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.counterfit import (PUBLISHED_PARAMS, constraint_pairs, counter_fit,
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
    raw_top = R.nearest_neighbours(raw, 50, rows=sample)[:, 1:]

    print(f"GloVe 6B 50d, {len(words):,} words; published params but k1; "
          f"{args.iterations} steps")
    print(f"{'k1':>5}  {'PPDB ant left':>13}  {'WordNet ant left':>16}  {'PPDB syn cand %':>15}"
          f"  {'SimLex rho':>10}  {'overlap':>7}")
    for k1 in args.k1:
        params = dataclasses.replace(PUBLISHED_PARAMS, k1=k1, iterations=args.iterations)
        x = counter_fit(matrix, words, syn, ant, params, progress=False)
        hits = {name: pair_candidates(x, p) for name, p in sets.items()}
        rho, _ = simlex_spearman(x, w2i, simlex)
        top = R.nearest_neighbours(x, 50, rows=sample)[:, 1:]
        overlap = float(np.mean([len(set(a) & set(b)) / 50 for a, b in zip(top, raw_top)]))
        print(f"{k1:5.2f}  {hits['PPDB ant'][1]:>13}  {hits['WordNet ant'][1]:>16}  "
              f"{hits['PPDB syn'][0]:15.2f}  {rho:10.3f}  {overlap:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
