"""Label preservation for sentiment tasks: the Hu & Liu opinion lexicon as a swap constraint.

A word-substitution attack on a sentiment classifier "succeeds" trivially when it replaces a
positive word by a negative one (or the reverse): the prediction flips because the gold label
did. This module finds such *reversing swaps* with the Hu & Liu (KDD 2004) opinion lexicon
(2,006 positive and 4,783 negative English words, NLTK's ``opinion_lexicon`` corpus):

* :func:`load_opinion_lexicon` reads the corpus from the data mirror
  (``<data dir>/nltk_data``, see :func:`robustbench_nlp.tasks.find_data_dir`) or from NLTK's
  own data path (``nltk.download('opinion_lexicon')``); :func:`polarity` looks a word up;
* :func:`reversing_swaps` lists the (original word, new word) pairs of an adversarial example
  whose polarities are opposite; :func:`invalid_swap_stats` turns stored example rows into the
  *invalid-swap rate* (percentage of successful examples holding at least one such swap);
* :class:`PolarityPreservation` is a textattack ``Constraint`` that rejects those swaps during
  the search (``TextFooler.Config.preserve_polarity``).

Words are textattack's word split (``words_from_text``) of all segments in order, the list
``AttackedText.words`` gives, so TextFooler's stored ``extra["modified_indices"]`` index it.
Three words (``envious``, ``enviously``, ``enviousness``) are in both lists; their polarity is 0.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from robustbench_nlp.errors import DataError

LEXICON_NAME = "hu-liu-opinion-lexicon"
_CORPUS = "opinion_lexicon"
_LOCK = threading.Lock()
_CLASS_LOCK = threading.Lock()
_CACHE: dict[str, "OpinionLexicon"] = {}


@dataclass(frozen=True)
class OpinionLexicon:
    """The Hu & Liu opinion lexicon (lower-case words).

    Attributes:
        positive: the positive words.
        negative: the negative words.
        source: run-record description: ``name`` (``"hu-liu-opinion-lexicon"``), ``path``
            (the mirror's zip file, or ``"nltk"`` when NLTK's own data path provided it),
            ``fingerprint`` (sha256 of the sorted word lists) and the two list sizes.
    """

    positive: frozenset[str]
    negative: frozenset[str]
    source: dict

    def polarity(self, word: str) -> int:
        """+1 for a positive word, -1 for a negative one, 0 otherwise (lower-cased lookup;
        the three words in both lists count as 0)."""
        w = word.lower()
        pos, neg = w in self.positive, w in self.negative
        return int(pos) - int(neg)


def lexicon_fingerprint(positive: Iterable[str], negative: Iterable[str]) -> str:
    """sha256 of the sorted positive and negative word lists (JSON)."""
    blob = json.dumps({"positive": sorted(positive), "negative": sorted(negative)},
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _find_corpus():
    """NLTK's pointer to the corpus root (folder or zip), or ``None``."""
    import nltk

    for name in (f"corpora/{_CORPUS}", f"corpora/{_CORPUS}.zip/{_CORPUS}/"):
        try:
            return nltk.data.find(name)
        except LookupError:
            continue
    return None


def _pointer_path(pointer) -> Path:
    zf = getattr(pointer, "zipfile", None)
    if zf is not None:
        return Path(zf.filename)
    return Path(str(getattr(pointer, "path", pointer)))


def load_opinion_lexicon(data_dir: str | Path | None = None) -> OpinionLexicon:
    """Load the Hu & Liu opinion lexicon (cached per process and data folder).

    ``<data_dir or find_data_dir()>/nltk_data`` is put first on NLTK's data path when that
    folder exists; otherwise NLTK's own path is searched (``nltk.download('opinion_lexicon')``).

    Raises:
        DataError: the corpus is nowhere on NLTK's data path, or it cannot be read.
    """
    import nltk

    if data_dir is None:
        from robustbench_nlp.tasks import find_data_dir

        data_dir = find_data_dir()
    mirror = Path(data_dir).expanduser().resolve() / "nltk_data" if data_dir else None
    if mirror is not None and not mirror.is_dir():
        mirror = None
    key = str(mirror) if mirror is not None else ""
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if mirror is not None and str(mirror) not in nltk.data.path:
            nltk.data.path.insert(0, str(mirror))
        pointer = _find_corpus()
        if pointer is None:
            raise DataError("opinion lexicon not found: NLTK corpus 'opinion_lexicon' (Hu & Liu) "
                            "is missing; run nltk.download('opinion_lexicon') or provide the "
                            "data mirror (shared/data with nltk_data/corpora/opinion_lexicon.zip"
                            ", or $RBNLP_DATA_DIR)")
        from nltk.corpus.reader import OpinionLexiconCorpusReader

        path = _pointer_path(pointer)
        try:
            # the reader nltk.corpus.opinion_lexicon builds, on the pointer found here
            reader = OpinionLexiconCorpusReader(pointer, r"(\w+)\-words\.txt",
                                                encoding="ISO-8859-2")
            positive = frozenset(w.lower() for w in reader.positive())
            negative = frozenset(w.lower() for w in reader.negative())
        except (OSError, ValueError, LookupError, zipfile.BadZipFile) as e:
            raise DataError(f"opinion lexicon at {str(path)!r} cannot be read: "
                            f"{type(e).__name__}: {e}") from None
        if not positive or not negative:
            raise DataError(f"opinion lexicon at {str(path)!r} has an empty word list")
        in_mirror = mirror is not None and path.resolve().is_relative_to(mirror)
        source = {"name": LEXICON_NAME,
                  "path": str(path.resolve()) if in_mirror else "nltk",
                  "fingerprint": lexicon_fingerprint(positive, negative),
                  "positive": len(positive), "negative": len(negative)}
        lex = OpinionLexicon(positive=positive, negative=negative, source=source)
        _CACHE[key] = lex
        return lex


def polarity(word: str, lexicon: OpinionLexicon | None = None) -> int:
    """+1 (positive), -1 (negative) or 0 (neither, or both) for ``word`` (lower-cased)."""
    return (lexicon or load_opinion_lexicon()).polarity(word)


# ---------------------------------------------------------------------------- swaps
def text_words(segments: Sequence[str] | str) -> list[str]:
    """textattack's words of ``segments`` (one string per text column), in order: the list
    ``AttackedText.words`` gives for the same columns."""
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    import_textattack()
    from textattack.shared.utils import words_from_text

    if isinstance(segments, str):
        segments = (segments,)
    return words_from_text("\n".join(str(s) for s in segments))


def _aligned_pairs(before: list[str], after: list[str]) -> list[tuple[int, int]]:
    """(i, j) word pairs of equal-length ``replace`` spans of a difflib alignment."""
    sm = difflib.SequenceMatcher(None, [w.lower() for w in before],
                                 [w.lower() for w in after], autojunk=False)
    pairs = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:
            pairs += list(zip(range(i1, i2), range(j1, j2)))
    return pairs


def reversing_swaps(original: Sequence[str] | str, adversarial: Sequence[str] | str,
                    modified_indices: Iterable[int] | None = None,
                    lexicon: OpinionLexicon | None = None) -> list[tuple[str, str]]:
    """The (original word, new word) pairs where a word of one polarity was replaced by one
    of the opposite polarity, in text order (words as they appear in the texts).

    Args:
        original, adversarial: the segments (one string per text column) before and after.
        modified_indices: indices into the word list of all segments (TextFooler's
            ``extra["modified_indices"]``). When ``None``, or when the two texts have
            different word counts, the words are aligned with ``difflib.SequenceMatcher`` and
            the words of equal-length ``replace`` spans are paired one to one.
        lexicon: default :func:`load_opinion_lexicon`.
    """
    lex = lexicon or load_opinion_lexicon()
    before, after = text_words(original), text_words(adversarial)
    if modified_indices is not None and len(before) == len(after):
        idx = sorted({int(i) for i in modified_indices if 0 <= int(i) < len(before)})
        pairs = [(i, i) for i in idx]
    else:
        pairs = _aligned_pairs(before, after)
    out = []
    for i, j in pairs:
        a, b = before[i], after[j]
        pa, pb = lex.polarity(a), lex.polarity(b)
        if pa * pb == -1:
            out.append((a, b))
    return out


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def invalid_swap_stats(rows: Iterable[dict], lexicon: OpinionLexicon | None = None) -> dict:
    """Invalid-swap rate of stored example rows.

    Args:
        rows: dicts with ``result``, ``original``, ``adversarial`` (lists of segments) and
            ``extra`` (its ``modified_indices`` are used when present); JSON strings are
            accepted for the last three, as a raw SQL query returns them.
        lexicon: default :func:`load_opinion_lexicon`.

    Returns:
        ``{"successful": S, "invalid": k, "invalid_swap_rate": 100*k/S (None when S == 0),
        "top_swaps": [[original, new, count], ...]}``: a successful example is invalid when it
        holds at least one reversing swap; ``top_swaps`` are the 10 most frequent reversing
        swaps over successful examples (lower-cased; ties by the words).
    """
    lex = lexicon or load_opinion_lexicon()
    successful = invalid = 0
    counts: Counter = Counter()
    for row in rows:
        if row.get("result") != "successful":
            continue
        successful += 1
        extra = _json(row.get("extra")) or {}
        swaps = reversing_swaps(_json(row["original"]), _json(row["adversarial"]),
                                extra.get("modified_indices"), lexicon=lex)
        if swaps:
            invalid += 1
            counts.update((a.lower(), b.lower()) for a, b in swaps)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {"successful": successful, "invalid": invalid,
            "invalid_swap_rate": 100.0 * invalid / successful if successful else None,
            "top_swaps": [[a, b, n] for (a, b), n in top]}


# ---------------------------------------------------------------------------- constraint
def _constraint_base():
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    import_textattack()
    from textattack.constraints import Constraint

    return Constraint


def _make_constraint_class():
    Constraint = _constraint_base()
    from textattack.shared.validators import transformation_consists_of_word_swaps

    class PolarityPreservation(Constraint):
        """Rejects a swap that replaces a word by one of the opposite polarity.

        A transformed text fails when any of its newly modified words
        (``attack_attrs["newly_modified_indices"]``) and the reference text's word at that
        position are both in the opinion lexicon with opposite polarities (positive for
        negative or negative for positive). Neutral words, and swaps between words of the same
        polarity, pass. Only word swaps are checked (``check_compatibility``).

        Args:
            lexicon: default :func:`load_opinion_lexicon` (loaded here, so a missing lexicon
                fails when the attack is built).
            compare_against_original: the reference is the original text (default) or the
                previous one.
        """

        def __init__(self, lexicon: OpinionLexicon | None = None,
                     compare_against_original: bool = True) -> None:
            super().__init__(compare_against_original)
            self.lexicon = lexicon or load_opinion_lexicon()
            self.lexicon_name = self.lexicon.source.get("name")
            self.lexicon_fingerprint = self.lexicon.source.get("fingerprint")

        def _reference_index(self, i: int, transformed_text, reference_text) -> int | None:
            if transformed_text.num_words == reference_text.num_words:
                return i
            # words were inserted or deleted: map back through the original index map
            # (indices of the original text; valid when the reference is the original)
            index_map = transformed_text.attack_attrs.get("original_index_map")
            if index_map is None or not self.compare_against_original:
                return None
            hits = [j for j, k in enumerate(index_map) if int(k) == i]
            return hits[0] if hits else None

        def _check_constraint(self, transformed_text, reference_text) -> bool:
            try:
                indices = transformed_text.attack_attrs["newly_modified_indices"]
            except KeyError:
                raise KeyError("cannot apply PolarityPreservation: transformed_text has no "
                               "'newly_modified_indices' attack_attr") from None
            new_words, ref_words = transformed_text.words, reference_text.words
            for i in indices:
                i = int(i)
                j = self._reference_index(i, transformed_text, reference_text)
                if j is None or not (0 <= i < len(new_words) and 0 <= j < len(ref_words)):
                    continue
                if self.lexicon.polarity(ref_words[j]) * self.lexicon.polarity(new_words[i]) == -1:
                    return False
            return True

        def check_compatibility(self, transformation) -> bool:
            return transformation_consists_of_word_swaps(transformation)

        def extra_repr_keys(self) -> list[str]:
            return ["lexicon_name", "lexicon_fingerprint"] + super().extra_repr_keys()

    PolarityPreservation.__module__ = __name__
    PolarityPreservation.__qualname__ = "PolarityPreservation"
    return PolarityPreservation


def __getattr__(name: str):
    """``PolarityPreservation`` is built on first access, so that importing this module for
    the lexicon alone does not import textattack."""
    if name == "PolarityPreservation":
        with _CLASS_LOCK:
            cls = globals().get("_POLARITY_CLASS")
            if cls is None:
                cls = _make_constraint_class()
                globals()["_POLARITY_CLASS"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
