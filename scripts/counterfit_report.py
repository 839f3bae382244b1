"""Report: raw GloVe-50d vs its counter-fitted version (TextFooler's offline word space).

Prints, for ``glove-6b-50d`` and ``counterfitted-glove-50d`` (robustbench_nlp.resources):

* SimLex-999 Spearman ρ between gold similarity and cosine similarity (pairs with both words
  in the vocabulary);
* the share of PPDB antonym pairs (and, for reference, WordNet antonym and PPDB synonym pairs)
  that are TextFooler swap candidates of each other: one word among the other's 50 nearest
  neighbours with cosine ≥ 0.5 (:func:`robustbench_nlp.counterfit.neighbour_pair_share`).

Builds either embedding first if its cache is empty (minutes). Usage::

    python scripts/counterfit_report.py [--k 50] [--min-cos 0.5]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=50, help="neighbours per word (TextFooler: 50)")
    ap.add_argument("--min-cos", type=float, default=0.5,
                    help="minimum cosine of a swap (TextFooler: 0.5)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from robustbench_nlp import resources as R
    from robustbench_nlp.counterfit import (constraint_pairs, neighbour_pair_share, read_pairs,
                                            read_simlex, simlex_spearman)

    folder = R.counterfitting_dir()
    vocab_lines = [w for w in (folder / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
                   if w.strip()]
    spaces = {}
    for name in ("glove-6b-50d", "counterfitted-glove-50d"):
        emb, info = R.load_word_embedding(name)
        spaces[name] = (emb, info)
    raw, raw_info = spaces["glove-6b-50d"]
    cf, cf_info = spaces["counterfitted-glove-50d"]
    if raw._word2index != cf._word2index:
        print("error: the two spaces have different vocabularies", file=sys.stderr)
        return 1
    w2i = raw._word2index
    simlex = read_simlex(folder / "SimLex-999.txt")
    sets = {
        "PPDB antonym pairs": constraint_pairs(read_pairs(folder / "ppdb_antonyms.txt"), w2i),
        "WordNet antonym pairs": constraint_pairs(read_pairs(folder / "wordnet_antonyms.txt"),
                                                  w2i),
        "PPDB synonym pairs": constraint_pairs(read_pairs(folder / "ppdb_synonyms.txt"), w2i),
    }

    print(f"data: {folder}")
    print(f"vocabulary.txt: {len(vocab_lines):,} words (the data README says 65,713, the size "
          f"of textattack's paragramcf); in GloVe 6B: {raw_info['vocab_size']:,}")
    cfi = cf_info.get("counterfit", {})
    print(f"counter-fitting: params {cfi.get('params')}; ordered pairs used "
          f"{cfi.get('ordered_pairs')}; build {cf_info.get('build_seconds')} s "
          f"(counter-fit {cfi.get('seconds')} s); fingerprint {cf_info['fingerprint'][:16]}")
    w = 44
    print()
    print(f"{'':<{w}}  {'glove-6b-50d':>14}  {'counterfitted':>14}")
    rows = []
    r0, n0 = simlex_spearman(raw.embedding_matrix, w2i, simlex)
    r1, n1 = simlex_spearman(cf.embedding_matrix, w2i, simlex)
    rows.append((f"SimLex-999 Spearman rho ({n0} of {len(simlex)} pairs)", f"{r0:.3f}",
                 f"{r1:.3f}"))
    for label, pairs in sets.items():
        s0, h0, n = neighbour_pair_share(raw.embedding_matrix, raw.nn_matrix, pairs, args.k,
                                         args.min_cos)
        s1, h1, _ = neighbour_pair_share(cf.embedding_matrix, cf.nn_matrix, pairs, args.k,
                                         args.min_cos)
        rows.append((f"{label} as swap candidates, % of {n:,}", f"{s0:.2f} ({h0})",
                     f"{s1:.2f} ({h1})"))
    for label, a, b in rows:
        print(f"{label:<{w}}  {a:>14}  {b:>14}")
    print(f"\nswap candidate: among the other's {args.k} nearest neighbours (either direction) "
          f"with cosine >= {args.min_cos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
