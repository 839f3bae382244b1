"""Word-level diff of an original and an adversarial text, rendered as escaped HTML.

Texts are split on whitespace (GLUE texts are already tokenised with spaces around
punctuation) and aligned with :class:`difflib.SequenceMatcher`. Every word is passed through
:func:`html.escape` before it is put into markup, so a text holding HTML, a ``<script>`` or
markdown link syntax renders as literal text.
"""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass

#: inline styles (no stylesheet needed; survive HTML sanitizers that drop <style> blocks)
DEL_STYLE = ("background:#ffd7d5;color:#82071e;text-decoration:line-through;"
             "padding:0 2px;border-radius:3px")
INS_STYLE = "background:#ccffd8;color:#055d20;text-decoration:none;padding:0 2px;border-radius:3px"

OPS = ("equal", "delete", "insert")


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


def diff_html(original: str, adversarial: str) -> str:
    """The diff as one HTML fragment: removed words in ``<del>``, inserted ones in ``<ins>``.

    Every word is escaped with :func:`html.escape` (``quote=True``); the only markup in the
    result is the ``<del>``/``<ins>`` wrappers added here.
    """
    parts = []
    for t in word_diff(original, adversarial):
        w = html.escape(t.word, quote=True)
        if t.op == "delete":
            parts.append(f'<del class="rb-del" style="{DEL_STYLE}">{w}</del>')
        elif t.op == "insert":
            parts.append(f'<ins class="rb-ins" style="{INS_STYLE}">{w}</ins>')
        else:
            parts.append(w)
    return " ".join(parts)
