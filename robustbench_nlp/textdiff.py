"""Word-level diff of an original and an adversarial text, rendered as escaped HTML.

Texts are split on whitespace (GLUE texts are already tokenised with spaces around
punctuation) and aligned with :class:`difflib.SequenceMatcher`. Every word is passed through
:func:`html.escape` before it is put into markup, so a text holding HTML, a ``<script>`` or
markdown link syntax renders as literal text.

:func:`diff_html` can also *mark* given replaced words (``marked``: pairs of an original word
and the word that replaced it, e.g. the polarity-reversing swaps of
:func:`robustbench_nlp.attacks.polarity.reversing_swaps`): those ``<del>``/``<ins>`` get the
class ``rb-flip``, an amber outline and a ``title``; the words themselves are escaped as
every other word.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from typing import Iterable

#: inline styles (no stylesheet needed; survive HTML sanitizers that drop <style> blocks)
DEL_STYLE = ("background:#ffd7d5;color:#82071e;text-decoration:line-through;"
             "padding:0 2px;border-radius:3px")
INS_STYLE = "background:#ccffd8;color:#055d20;text-decoration:none;padding:0 2px;border-radius:3px"

#: added to the style of a marked word (:func:`diff_html` ``marked``)
FLIP_STYLE = "outline:2px solid #bf8700;outline-offset:1px;font-weight:600"
#: ``title`` (tooltip) of a marked word
FLIP_TITLE = "polarity-reversing swap"

OPS = ("equal", "delete", "insert")
# textattack's word characters (``words_from_text``): a whitespace token such as ``film,`` or
# ``good/bad`` holds the words ``film`` / ``good``, ``bad``
_WORD = re.compile(r"[\w'\-_*@]+")


@dataclass(frozen=True)
class Token:
    """One word of a diff.

    Attributes:
        op: ``"equal"`` (in both texts), ``"delete"`` (only in the original) or
            ``"insert"`` (only in the adversarial text).
        word: the word, unescaped.
    """

    op: str
    word: str


def word_diff(original: str, adversarial: str) -> list[Token]:
    """Align two texts word by word.

    A replaced span yields its deleted words followed by its inserted words.

    Args:
        original: the clean text.
        adversarial: the perturbed text.

    Returns:
        the tokens of both texts in reading order; joining the ``equal`` + ``delete`` words
        gives ``original.split()``, joining ``equal`` + ``insert`` gives
        ``adversarial.split()``.

    Raises:
        TypeError: when either text is not a ``str``.
    """
    for name, t in (("original", original), ("adversarial", adversarial)):
        if not isinstance(t, str):
            raise TypeError(f"{name} text must be str, got {type(t).__name__}")
    a, b = original.split(), adversarial.split()
    out: list[Token] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(Token("equal", w) for w in a[i1:i2])
            continue
        out.extend(Token("delete", w) for w in a[i1:i2])  # 'delete' or 'replace'
        out.extend(Token("insert", w) for w in b[j1:j2])  # 'insert' or 'replace'
    return out


def changed_words(original: str, adversarial: str) -> tuple[list[str], list[str]]:
    """``(removed, inserted)`` words of :func:`word_diff`, in reading order."""
    toks = word_diff(original, adversarial)
    return ([t.word for t in toks if t.op == "delete"],
            [t.word for t in toks if t.op == "insert"])


def _words(token: str) -> set[str]:
    """The lower-cased words of a whitespace token (textattack's word characters, leading
    ``'-_*@`` stripped)."""
    return {w.lstrip("'-_*@").casefold() for w in _WORD.findall(token)} - {""}


def _marked_tokens(tokens: list[Token], marked: Iterable[tuple[str, str]]) -> set[int]:
    """Positions in ``tokens`` of the deleted/inserted words that a pair of ``marked`` names:
    within one changed span (the deletes and inserts between two equal words), a deleted
    token holding a pair's original word is marked when an inserted token of the same span
    holds that pair's new word, and so is that inserted token."""
    pairs = {(str(a).casefold(), str(b).casefold()) for a, b in marked}
    if not pairs:
        return set()
    out: set[int] = set()
    span: list[int] = []
    for i in range(len(tokens) + 1):
        if i < len(tokens) and tokens[i].op != "equal":
            span.append(i)
            continue
        dels = [(j, _words(tokens[j].word)) for j in span if tokens[j].op == "delete"]
        inss = [(j, _words(tokens[j].word)) for j in span if tokens[j].op == "insert"]
        for a, b in pairs:
            da = [j for j, ws in dels if a in ws]
            ib = [j for j, ws in inss if b in ws]
            if da and ib:
                out.update(da)
                out.update(ib)
        span = []
    return out


def diff_html(original: str, adversarial: str,
              marked: Iterable[tuple[str, str]] | None = None) -> str:
    """The diff as one HTML fragment: removed words in ``<del>``, inserted ones in ``<ins>``.

    Args:
        original: the clean text.
        adversarial: the perturbed text.
        marked: optional ``(original word, new word)`` pairs to mark (compared
            case-insensitively with the words of the diff's tokens, so ``good`` marks the
            token ``good,``). Within a changed span, a removed word of a pair and the inserted
            word of the same pair get the class ``rb-flip``, :data:`FLIP_STYLE` and the title
            :data:`FLIP_TITLE`. Pairs that match no changed span mark nothing.

    Every word is escaped with :func:`html.escape` (``quote=True``); the only markup in the
    result is the ``<del>``/``<ins>`` wrappers added here (their attributes are constants).
    Without ``marked`` the result is the same as before marking existed.
    """
    tokens = word_diff(original, adversarial)
    flip = _marked_tokens(tokens, marked) if marked else set()
    parts = []
    for i, t in enumerate(tokens):
        w = html.escape(t.word, quote=True)
        if t.op == "equal":
            parts.append(w)
            continue
        tag, cls, style = (("del", "rb-del", DEL_STYLE) if t.op == "delete"
                           else ("ins", "rb-ins", INS_STYLE))
        if i in flip:
            parts.append(f'<{tag} class="{cls} rb-flip" style="{style};{FLIP_STYLE}" '
                         f'title="{FLIP_TITLE}">{w}</{tag}>')
        else:
            parts.append(f'<{tag} class="{cls}" style="{style}">{w}</{tag}>')
    return " ".join(parts)
