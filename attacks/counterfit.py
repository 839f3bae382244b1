"""Counter-fitting word vectors to linguistic constraints (Mrkšić et al., NAACL 2016).

TextFooler draws its swap candidates from *counter-fitted* vectors: a pretrained space nudged
so that synonyms move together and antonyms apart while every word's close neighbourhood is
kept. This module implements that procedure, vectorised, following the paper and its
published code (``nmrksic/counter-fitting``, ``counterfitting.py`` and
``experiment_parameters.cfg``):

* every vector is scaled to unit length (``v / sqrt(|v|² + 1e-6)``);
* constraints are word pairs whose two (distinct) words are both in the vocabulary, taken in
  both orders; a pair that is both a synonym and an antonym pair counts as an antonym only;
* *vector-space preservation* (VSP) pairs are all ordered pairs of distinct words whose
  initial cosine distance ``1 - u·v`` is at most ``rho``, antonym pairs excluded;
* each of ``iterations`` full-batch steps computes, from the vectors at the start of the
  step, with ``g(u, v) = u (u·v) - v`` (the gradient of the cosine distance with respect to
  ``u`` on the unit sphere):

  - antonym repel, for an ordered antonym pair ``(i, j)`` with distance ``< delta``:
    ``+k1 · g(v_i, v_j)`` into word ``i``'s update;
  - synonym attract, for an ordered synonym pair ``(i, j)`` with distance ``> gamma``:
    ``-k2 · g(v_j, v_i)`` into word ``j``'s update;
  - VSP, for an ordered pair ``(i, j)`` whose current distance is not below its initial
    one: ``-k3 · g(v_i, v_j)`` into word ``i``'s update;

  then adds to each word the *mean* of its update terms and renormalises every vector.

Hyperparameters (:class:`CounterfitParams`) default to the published configuration
(:data:`PUBLISHED_PARAMS`): ``k1 = k2 = k3 = 0.1``, ``delta = 1.0``, ``gamma = 0.0``,
``rho = 0.2``, 20 steps. On 50-d GloVe these leave 29 of 239 PPDB antonym pairs as
TextFooler swap candidates: co-hyponyms in tight clusters (months, weekdays, compass points,
up/down, son/daughter) whose vector-space-preservation pulls towards the rest of the cluster
outweigh the averaged antonym repel, even after 80 steps (13 pairs left). TextFooler's
offline space therefore uses :data:`STRONG_REPEL_PARAMS` (``k1 = 1.0``), which leaves none,
a documented departure; README, "TextFooler resources" has the measurements.

All heavy work is chunked matrix arithmetic in ``torch`` (float32, CPU): on the 71,815-word
GloVe-50d vocabulary the whole procedure takes minutes on two cores. Building, caching and
registering the result as a TextFooler embedding is :mod:`robustbench_nlp.attacks.resources`' job
(embeddings ``"counterfitted-glove-50d-k1"`` and ``"counterfitted-glove-50d"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: Bump when the procedure's output changes for the same inputs (keys the embedding cache).
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class CounterfitParams:
    """Hyperparameters of counter-fitting (defaults: the published ``experiment_parameters.cfg``).

    Attributes:
        k1: weight of the antonym-repel term.
        k2: weight of the synonym-attract term.
        k3: weight of the vector-space-preservation term.
        delta: antonym margin: a pair is repelled while its cosine distance is below it.
        gamma: synonym margin: a pair is attracted while its cosine distance is above it.
        rho: VSP radius: pairs with initial cosine distance ≤ rho are preserved.
        iterations: full-batch update steps.
    """

    k1: float = 0.1
    k2: float = 0.1
    k3: float = 0.1
    delta: float = 1.0
    gamma: float = 0.0
    rho: float = 0.2
    iterations: int = 20

    def __post_init__(self) -> None:
        for name in ("k1", "k2", "k3", "delta", "gamma", "rho"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"CounterfitParams.{name} must be a finite number ≥ 0, got {v!r}")
        if int(self.iterations) != self.iterations or self.iterations < 0:
            raise ValueError(f"CounterfitParams.iterations must be an integer ≥ 0, "
                             f"got {self.iterations!r}")

    def to_dict(self) -> dict:
        """The parameters as a JSON-able dict."""
        return asdict(self)


#: The published configuration (``experiment_parameters.cfg`` of nmrksic/counter-fitting).
PUBLISHED_PARAMS = CounterfitParams()

#: The published configuration with a 10× antonym-repel weight: the smallest k1 of
#: {0.1, 0.3, 0.5, 1.0} that leaves no PPDB or WordNet antonym pair a swap candidate of
#: GloVe-50d (README, "TextFooler resources").
STRONG_REPEL_PARAMS = CounterfitParams(k1=1.0)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` [N, d] scaled to (almost) unit length as the published code does:
    ``v / sqrt(|v|² + 1e-6)``. Returns a new float32 array."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.sqrt((x.astype(np.float64) ** 2).sum(1, keepdims=True) + 1e-6).astype(np.float32)


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Word pairs of a constraint file: the first two whitespace-separated tokens of each line.

    Lines with fewer than two tokens are skipped (the published files have none; some lines
    carry a trailing space).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            toks = line.split()
            if len(toks) >= 2:
                out.append((toks[0], toks[1]))
    return out


def constraint_pairs(pairs: Iterable[tuple[str, str]], word2index: dict[str, int]) -> np.ndarray:
    """Ordered index pairs of the constraints usable in a vocabulary.

    Args:
        pairs: word pairs (one direction is enough).
        word2index: the vocabulary.

    Returns:
        int64 [P, 2], sorted and unique: both orders of every pair whose two words are
        distinct and both in ``word2index``.
    """
    rows = []
    for a, b in pairs:
        i, j = word2index.get(a), word2index.get(b)
        if i is not None and j is not None and i != j:
            rows.append((i, j))
            rows.append((j, i))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.asarray(rows, dtype=np.int64), axis=0)


def _pair_codes(pairs: np.ndarray, n: int) -> np.ndarray:
    return pairs[:, 0].astype(np.int64) * n + pairs[:, 1].astype(np.int64)


def remove_pairs(pairs: np.ndarray, drop: np.ndarray, n: int) -> np.ndarray:
    """Rows of ``pairs`` [P, 2] that are not rows of ``drop`` [Q, 2] (indices < ``n``)."""
    if len(pairs) == 0 or len(drop) == 0:
        return pairs
    keep = ~np.isin(_pair_codes(pairs, n), _pair_codes(drop, n))
    return pairs[keep]


def pair_distances(x, pairs: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Cosine distances ``1 - x_i·x_j`` [P] (float32) of unit rows of ``x`` [N, d] for ``pairs``."""
    import torch

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    out = np.empty(len(pairs), dtype=np.float32)
    pt = torch.as_tensor(pairs, dtype=torch.long)
    for s in range(0, len(pairs), chunk):
        p = pt[s:s + chunk]
        out[s:s + len(p)] = (1 - (xt[p[:, 0]] * xt[p[:, 1]]).sum(1)).numpy()
    return out


def vsp_pairs(x: np.ndarray, rho: float, chunk: int = 512,
              progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vector-space-preservation pairs: ordered pairs of distinct rows within cosine distance
    ``rho`` of each other.

    Args:
        x: unit-length vectors [N, d] (see :func:`normalise`).
        rho: radius in cosine distance (pairs with ``x_i·x_j ≥ 1 - rho``).
        chunk: rows per block product (memory ≈ chunk × N × 4 bytes).
        progress: tqdm bar (``None``: only on a terminal).

    Returns:
        ``(pairs, distances)``: int64 [P, 2] sorted by (i, j), and their initial cosine
        distances float32 [P], computed as :func:`pair_distances` does (so the first update
        step sees exactly these values).
    """
    import torch
    from tqdm.auto import tqdm

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n = xt.shape[0]
    found = []
    for s in tqdm(range(0, n, chunk), desc="counter-fitting: VSP pairs", unit="block",
                  disable=(None if progress is None else not progress), leave=False):
        sims = xt[s:s + chunk] @ xt.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + s] = -2.0  # never pair a word with itself
        i, j = torch.nonzero(sims >= 1 - rho, as_tuple=True)
        found.append(torch.stack([i + s, j], 1).numpy())
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    pairs = pairs.astype(np.int64)
    return pairs, pair_distances(x, pairs)


def _accumulate(xt, pairs, coef: float, sign: float, grad, count, chunk: int, active_fn,
                target_first: bool) -> None:
    """Add ``sign * coef * g(v_t, v_o)`` for active pairs into ``grad``/``count`` rows ``t``.

    ``target_first``: the updated word is ``pairs[:, 0]`` (else ``pairs[:, 1]``).
    """
    import torch

    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        t, o = (p[:, 0], p[:, 1]) if target_first else (p[:, 1], p[:, 0])
        u, v = xt[t], xt[o]
        dot = (u * v).sum(1)
        active = active_fn(1 - dot, s, len(p))
        if not bool(active.any()):
            continue
        g = (u[active] * dot[active, None] - v[active]) * (sign * coef)
        grad.index_add_(0, t[active], g)
        count.index_add_(0, t[active], torch.ones(int(active.sum()), dtype=count.dtype))


def counterfit_step(x: np.ndarray, synonyms: np.ndarray, antonyms: np.ndarray,
                    vsp: np.ndarray, vsp_dist: np.ndarray, params: CounterfitParams,
                    chunk: int = 1 << 18) -> np.ndarray:
    """One full-batch counter-fitting step (see the module docstring for the update).

    Args:
        x: unit vectors [N, d] float32.
        synonyms, antonyms, vsp: ordered index pairs [P, 2] (int64).
        vsp_dist: initial cosine distances [len(vsp)] of the VSP pairs.
        params: hyperparameters.
        chunk: pairs per vectorised block.

    Returns:
        the updated, renormalised vectors [N, d] float32 (``x`` is not modified).
    """
    import torch

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    grad = torch.zeros_like(xt)
    count = torch.zeros(xt.shape[0], dtype=torch.float32)
    # antonym repel: word i moves away from j while dist(i, j) < delta
    if len(antonyms) and params.k1 > 0:
        _accumulate(xt, torch.as_tensor(antonyms), params.k1, +1.0, grad, count, chunk,
                    lambda d, s, n: d < params.delta, target_first=True)
    # synonym attract: word j moves towards i while dist(i, j) > gamma
    if len(synonyms) and params.k2 > 0:
        _accumulate(xt, torch.as_tensor(synonyms), params.k2, -1.0, grad, count, chunk,
                    lambda d, s, n: d > params.gamma, target_first=False)
    # vector-space preservation: word i moves towards j while dist(i, j) ≥ its initial value
    if len(vsp) and params.k3 > 0:
        orig = torch.as_tensor(vsp_dist)
        _accumulate(xt, torch.as_tensor(vsp), params.k3, -1.0, grad, count, chunk,
                    lambda d, s, n: orig[s:s + n] <= d, target_first=True)
    moved = count > 0
    out = xt.clone()
    out[moved] += grad[moved] / count[moved, None]
    return normalise(out.numpy())


def counter_fit(vectors: np.ndarray, words: Sequence[str],
                synonym_pairs: Iterable[tuple[str, str]],
                antonym_pairs: Iterable[tuple[str, str]],
                params: CounterfitParams | None = None, progress: bool | None = None,
                stats: dict | None = None) -> np.ndarray:
    """Counter-fit ``vectors`` to synonym and antonym constraints.

    Args:
        vectors: pretrained vectors [N, d] (row i for ``words[i]``; any norm).
        words: the vocabulary (unique).
        synonym_pairs, antonym_pairs: word pairs (files: :func:`read_pairs`); pairs with a
            word outside ``words`` are ignored.
        params: hyperparameters (default: the published ones).
        progress: tqdm bars (``None``: only on a terminal).
        stats: if given, filled with the constraint counts (ordered pairs actually used).

    Returns:
        float32 [N, d]: the counter-fitted vectors, unit length (up to the 1e-6 of
        :func:`normalise`).

    Raises:
        ValueError: ``vectors`` and ``words`` disagree in length, or ``words`` repeats.
    """
    from tqdm.auto import tqdm

    params = params or CounterfitParams()
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] != len(words):
        raise ValueError(f"counter_fit: {len(words)} words for vectors of shape {x.shape}")
    word2index = {w: i for i, w in enumerate(words)}
    if len(word2index) != len(words):
        raise ValueError("counter_fit: the vocabulary has repeated words")
    n = len(words)
    x = normalise(x)
    ant = constraint_pairs(antonym_pairs, word2index)
    syn = remove_pairs(constraint_pairs(synonym_pairs, word2index), ant, n)
    if params.k3 > 0 and params.iterations > 0:
        vsp, vsp_dist = vsp_pairs(x, params.rho, progress=progress)
        keep = ~np.isin(_pair_codes(vsp, n), _pair_codes(ant, n)) if len(ant) else \
            np.ones(len(vsp), dtype=bool)
        vsp, vsp_dist = vsp[keep], vsp_dist[keep]
    else:
        vsp, vsp_dist = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    if stats is not None:
        stats.update(synonym_pairs=int(len(syn)), antonym_pairs=int(len(ant)),
                     vsp_pairs=int(len(vsp)), vocab_size=n)
    for _ in tqdm(range(int(params.iterations)), desc="counter-fitting", unit="step",
                  disable=(None if progress is None else not progress)):
        x = counterfit_step(x, syn, ant, vsp, vsp_dist, params)
    return x


# --------------------------------------------------------------------------------------------
# Evaluation of a word space (scripts/counterfit_report.py, tests)
# --------------------------------------------------------------------------------------------

def read_simlex(path: str | Path) -> list[tuple[str, str, float]]:
    """SimLex-999 (Hill et al. 2015): ``(word1, word2, score)`` rows of the tab-separated file
    (header skipped; score = column ``SimLex999``, 0-10).

    Raises:
        ValueError: the header has no ``SimLex999`` column.
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if "SimLex999" not in header:
            raise ValueError(f"{path}: not a SimLex-999 file (no SimLex999 column)")
        col = header.index("SimLex999")
        for line in f:
            t = line.rstrip("\n").split("\t")
            if len(t) > col:
                rows.append((t[0], t[1], float(t[col])))
    return rows


def simlex_spearman(vectors: np.ndarray, word2index: dict[str, int],
                    simlex: Sequence[tuple[str, str, float]]) -> tuple[float, int]:
    """Spearman ρ between SimLex-999 scores and cosine similarities of ``vectors`` [N, d].

    Pairs with a word outside ``word2index`` are skipped (the published evaluation does the
    same). Returns ``(rho, pairs used)``.
    """
    from scipy.stats import spearmanr

    gold, cos = [], []
    x = normalise(vectors)
    for a, b, score in simlex:
        i, j = word2index.get(a), word2index.get(b)
        if i is not None and j is not None:
            gold.append(score)
            cos.append(float(x[i] @ x[j]))
    if len(gold) < 3:
        return float("nan"), len(gold)
    return float(spearmanr(gold, cos).statistic), len(gold)


def neighbour_pair_share(vectors: np.ndarray, nn_matrix: np.ndarray,
                         pairs: np.ndarray, k: int = 50,
                         min_cos: float = 0.5) -> tuple[float, int, int]:
    """Share of word pairs that are TextFooler swap candidates of each other.

    A pair ``(a, b)`` counts when ``cos(a, b) ≥ min_cos`` and ``b`` is among ``a``'s ``k``
    nearest neighbours or ``a`` among ``b``'s (a swap is possible in at least one direction;
    TextFooler's ``WordSwapEmbedding(max_candidates=50)`` + ``WordEmbeddingDistance(0.5)``).

    Args:
        vectors: the word vectors [N, d].
        nn_matrix: int [N, ≥ k + 1] neighbour indices, the word itself in column 0
            (:func:`robustbench_nlp.attacks.resources.nearest_neighbours`).
        pairs: int [P, 2] index pairs; each unordered pair is counted once.
        k: neighbours considered.
        min_cos: minimum cosine similarity.

    Returns:
        ``(share in %, pairs counted, unordered pairs)``.

    Raises:
        ValueError: ``nn_matrix`` has fewer than ``k + 1`` columns.
    """
    if nn_matrix.shape[1] < k + 1:
        raise ValueError(f"nn_matrix has {nn_matrix.shape[1]} columns, need {k + 1}")
    p = np.unique(np.sort(np.asarray(pairs, dtype=np.int64), axis=1), axis=0)
    p = p[p[:, 0] != p[:, 1]]
    if len(p) == 0:
        return float("nan"), 0, 0
    x = normalise(vectors)
    nbrs = np.asarray(nn_matrix)[:, 1:k + 1]
    a, b = p[:, 0], p[:, 1]
    cos = (x[a] * x[b]).sum(1)
    near = (nbrs[a] == b[:, None]).any(1) | (nbrs[b] == a[:, None]).any(1)
    hits = int((near & (cos >= min_cos)).sum())
    return 100.0 * hits / len(p), hits, len(p)
