"""Report: raw GloVe-50d vs its counter-fitted version (TextFooler's offline word space).

Prints, for ``glove-6b-50d``, ``counterfitted-glove-50d`` (published hyperparameters) and
``counterfitted-glove-50d-k1`` (TextFooler's offline default, antonym-repel weight k1 = 1.0;
robustbench_nlp.attacks.resources):

* SimLex-999 Spearman ρ between gold similarity and cosine similarity (pairs with both words
  in the vocabulary);
* the share of PPDB antonym pairs (and, for reference, WordNet antonym and PPDB synonym pairs)
  that are TextFooler swap candidates of each other: one word among the other's 50 nearest
  neighbours with cosine ≥ 0.5 (:func:`robustbench_nlp.attacks.counterfit.neighbour_pair_share`).

Builds an embedding first if its cache is empty (minutes each). Usage::

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
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.counterfit import (constraint_pairs, neighbour_pair_share, read_pairs,
                                            read_simlex, simlex_spearman)

    folder = R.counterfitting_dir()
    vocab_lines = [w for w in (folder / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
                   if w.strip()]
    names = ("glove-6b-50d", "counterfitted-glove-50d", R.COUNTERFITTED_DEFAULT)
    spaces = {name: R.load_word_embedding(name) for name in names}
    raw, raw_info = spaces["glove-6b-50d"]
    if any(emb._word2index != raw._word2index for emb, _ in spaces.values()):
        print("error: the spaces have different vocabularies", file=sys.stderr)
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
    for name in names[1:]:
        info = spaces[name][1]
        cfi = info.get("counterfit", {})
        print(f"{name}: params {cfi.get('params')}; ordered pairs used "
              f"{cfi.get('ordered_pairs')}; build {info.get('build_seconds')} s "
              f"(counter-fit {cfi.get('seconds')} s); fingerprint {info['fingerprint'][:16]}")
    c = 16
    print()
    rows = []
    rhos = [simlex_spearman(emb.embedding_matrix, w2i, simlex) for emb, _ in spaces.values()]
    rows.append((f"SimLex-999 Spearman rho ({rhos[0][1]} of {len(simlex)} pairs)",
                 [f"{r:.3f}" for r, _ in rhos]))
    for label, pairs in sets.items():
        cells = []
        for emb, _ in spaces.values():
            share, hits, n = neighbour_pair_share(emb.embedding_matrix, emb.nn_matrix, pairs,
                                                  args.k, args.min_cos)
            cells.append(f"{share:.2f} ({hits})")
        rows.append((f"{label} as swap candidates, % of {n:,}", cells))
    w = max(len(label) for label, _ in rows)
    print(f"{'':<{w}}" + "".join(f"  {h:>{c}}" for h in ("glove-6b-50d", "published k1=0.1",
                                                         "default k1=1.0")))
    for label, cells in rows:
        print(f"{label:<{w}}" + "".join(f"  {x:>{c}}" for x in cells))
    print(f"\nswap candidate: among the other's {args.k} nearest neighbours (either direction) "
          f"with cosine >= {args.min_cos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
