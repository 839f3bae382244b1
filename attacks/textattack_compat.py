"""Import ``textattack`` 0.3.11 on a machine without internet access.

``import textattack`` has three side effects that matter offline (see
``textattack/shared/utils/install.py`` and ``textattack/augmentation/recipes.py``):

1. unless the marker file ``post_install_check_3`` exists in textattack's cache directory
   (``$TA_CACHE_DIR`` or ``~/.cache/textattack``), it calls ``nltk.download`` for six NLTK
   packages (and ``stanza.download("en")``). Offline each call fails without raising, after
   a network attempt, and textattack then writes the marker anyway;
2. ``textattack.augmentation.recipes`` builds ``StopwordModification()`` at import time, which
   reads NLTK's ``corpora/stopwords/english`` and raises ``LookupError`` when it is absent;
3. ``logging.config.dictConfig`` runs with ``disable_existing_loggers=True``, silently
   disabling every logger created before the import (ours included), and the module sets
   ``TOKENIZERS_PARALLELISM=True``.

:func:`import_textattack` works around all three, only when it is called (importing this
module imports nothing heavy):

* when NLTK cannot find a stopword corpus, it writes one under our cache directory
  (``$RBNLP_CACHE`` or ``~/.cache/robustbench_nlp``, subfolder ``nltk_data``) from
  scikit-learn's English list (spaCy's as a fallback) and *appends* that folder to
  ``nltk.data.path``, so a real NLTK installation always wins. Only textattack's
  augmentation defaults read this list; the TextFooler recipe passes its own stopwords;
* when the marker is missing and the machine is offline (``HF_HUB_OFFLINE`` /
  ``TRANSFORMERS_OFFLINE`` / ``RBNLP_OFFLINE`` set, or a 2-second connection probe to NLTK's
  download host fails), ``nltk.download`` is a no-op during the import; online users get the
  real downloads. textattack writes the marker itself either way, as it does offline without
  us;
* logger ``disabled`` flags and ``TOKENIZERS_PARALLELISM`` are restored after the import.

``TA_CACHE_DIR`` is never set: textattack would also point ``HF_HOME`` and
``XDG_CACHE_HOME`` at it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sys
import threading
from pathlib import Path

_LOCK = threading.Lock()
_NLTK_HOST = "raw.githubusercontent.com"
_OFFLINE_ENV = ("RBNLP_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def cache_dir() -> Path:
    """Our cache root: ``$RBNLP_CACHE`` or ``~/.cache/robustbench_nlp`` (created)."""
    root = Path(os.environ.get("RBNLP_CACHE") or Path.home() / ".cache" / "robustbench_nlp")
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def textattack_cache_dir() -> Path:
    """textattack's own cache directory, as ``textattack.shared.utils.install`` computes it."""
    return Path(os.environ.get("TA_CACHE_DIR", os.path.expanduser("~/.cache/textattack")))


def _english_stopwords() -> list[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as words
    except ImportError:  # pragma: no cover - sklearn is a dependency of textattack
        from spacy.lang.en.stop_words import STOP_WORDS as words
    return sorted(words)


def ensure_nltk_stopwords() -> Path | None:
    """Make ``nltk.corpus.stopwords.words("english")`` work.

    Returns:
        the ``nltk_data`` folder added to ``nltk.data.path``, or ``None`` when NLTK already
        finds a stopword corpus (nothing is changed then).
    """
    import nltk

    try:
        nltk.data.find("corpora/stopwords/english")
        return None
    except LookupError:
        pass
    root = cache_dir() / "nltk_data"
    target = root / "corpora" / "stopwords" / "english"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(_english_stopwords()) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return root


def add_mirror_nltk_data() -> Path | None:
    """Put the data mirror's ``nltk_data`` folder (WordNet, NLTK's stopwords, the opinion
    lexicon; :func:`robustbench_nlp.tasks.find_data_dir`) first on ``nltk.data.path``.

    Returns:
        the folder, or ``None`` when no mirror with an ``nltk_data`` folder is found (NLTK's
        own path is left as it is).
    """
    import nltk

    from robustbench_nlp.errors import DataError
    from robustbench_nlp.tasks import find_data_dir

    try:
        data_dir = find_data_dir()
    except DataError:  # a bad $RBNLP_DATA_DIR is reported where the data is read
        return None
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser().resolve() / "nltk_data"
    if not folder.is_dir():
        return None
    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    return folder


def is_offline(timeout: float = 2.0) -> bool:
    """True when an offline variable is set or NLTK's download host cannot be reached."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in _OFFLINE_ENV):
        return True
    try:
        with socket.create_connection((_NLTK_HOST, 443), timeout=timeout):
            return False
    except OSError:
        return True


@contextlib.contextmanager
def _no_nltk_download():
    import nltk

    real = nltk.download
    nltk.download = lambda *args, **kwargs: False
    stanza = None
    if importlib.util.find_spec("stanza") is not None:  # textattack also calls stanza.download
        import stanza
        real_stanza = stanza.download
        stanza.download = lambda *args, **kwargs: None
    try:
        yield
    finally:
        nltk.download = real
        if stanza is not None:
            stanza.download = real_stanza


@contextlib.contextmanager
def _preserve_logging_and_env():
    manager = logging.Logger.manager
    before = {name: lg.disabled for name, lg in list(manager.loggerDict.items())
              if isinstance(lg, logging.Logger)}
    tok_par = os.environ.get("TOKENIZERS_PARALLELISM")
    try:
        yield
    finally:
        for name, disabled in before.items():
            lg = manager.loggerDict.get(name)
            if isinstance(lg, logging.Logger):
                lg.disabled = disabled
        if tok_par is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = tok_par


def import_textattack():
    """Import and return the ``textattack`` module, working offline.

    Idempotent and thread-safe; a no-op (besides the import) when textattack's resources are
    already in place. See the module docstring for what it does.

    Raises:
        ImportError: textattack is not installed, or its import fails for another reason.
    """
    mod = sys.modules.get("textattack")
    if mod is not None and hasattr(mod, "Attack"):
        return mod
    with _LOCK:
        mod = sys.modules.get("textattack")
        if mod is not None and hasattr(mod, "Attack"):
            return mod
        add_mirror_nltk_data()
        ensure_nltk_stopwords()
        marker = textattack_cache_dir() / "post_install_check_3"
        suppress = not marker.exists() and is_offline()
        with _preserve_logging_and_env():
            with _no_nltk_download() if suppress else contextlib.nullcontext():
                import textattack
        return textattack


@contextlib.contextmanager
def offline_constructors():
    """Build textattack components that reach for files or downloads at construction.

    Two of textattack 0.3.11's transformations do so:

    * ``WordSwapWordNet()`` calls ``nltk.download("omw-1.4")`` (a network attempt and an
      error message offline; the English WordNet it reads needs no OMW). Inside this
      context, on an offline machine (:func:`is_offline`), ``nltk.download`` is a no-op.
    * ``WordSwapHomoglyphSwap()`` reads ``textattack/shared/intentional_homoglyphs.txt``,
      which the 0.3.11 wheel does not ship (``FileNotFoundError``). That list only feeds
      the differential-evolution search (``homos_intentional``); the word swaps recipes
      such as TextBugger make use the built-in ``homos`` table. Inside this context, when
      the file is missing, it reads as empty, so the transformation behaves as the recipe's.
    """
    import_textattack()
    from textattack.transformations.word_swaps import word_swap_homoglyph_swap as homoglyph

    real_open = open

    def open_or_empty(path, *args, **kwargs):
        if str(path).endswith("intentional_homoglyphs.txt") and not os.path.exists(path):
            import io

            return io.StringIO("")
        return real_open(path, *args, **kwargs)

    homoglyph.open = open_or_empty
    try:
        with _no_nltk_download() if is_offline() else contextlib.nullcontext():
            yield
    finally:
        del homoglyph.open
