"""Property-based tests (hypothesis): arbitrary Unicode never crashes the data readers, the
metrics or the word-level diff, and each keeps its invariants."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustbench_nlp.errors import DataError
from robustbench_nlp.metrics import avg_score, summarize
from robustbench_nlp.tasks import LocalFile, get_task, read_local_tsv

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# A GLUE TSV field cannot hold a tab or a line break (quoting is off, README of the mirror);
# everything else in Unicode (surrogates cannot be UTF-8) is fair game.
FIELD = st.characters(exclude_categories=("Cs",), exclude_characters="\t\n\r")
SENTENCE = st.text(FIELD, max_size=30)
NONEMPTY = SENTENCE.filter(lambda s: s.strip() != "")
SST2 = get_task("sst2")
RTE = get_task("rte")
RTE_SPEC = LocalFile("x", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
                     {"entailment": 0, "not_entailment": 1})


def _read(data: bytes, spec: LocalFile, task):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "split.tsv"
        path.write_bytes(data)
        return read_local_tsv(path, spec, task)


# ------------------------------------------------------------------------- data readers
@SETTINGS
@given(st.lists(st.tuples(SENTENCE, st.integers(0, 1)), min_size=1, max_size=8))
def test_single_sentence_tsv_round_trips(rows):
    """Sentences written to an SST-2 TSV read back exactly (ends stripped), or the reader
    names the first empty / whitespace-only one."""
    data = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)
    empty = [i for i, (s, _) in enumerate(rows) if not s.strip()]
    if empty:
        with pytest.raises(DataError, match=f"empty 'sentence' in data row {empty[0] + 1}$"):
            _read(data.encode("utf-8"), SST2.local["train"], SST2)
        return
    df = _read(data.encode("utf-8"), SST2.local["train"], SST2)
    assert df["sentence"].tolist() == [s.strip() for s, _ in rows]
    assert df["label"].tolist() == [y for _, y in rows]


@SETTINGS
@given(st.lists(st.tuples(NONEMPTY, NONEMPTY, st.sampled_from(["entailment", "not_entailment"])),
                min_size=1, max_size=6), st.booleans())
def test_pair_tsv_round_trips_with_string_labels(rows, bom):
    """Sentence pairs with string labels (RTE), with or without a byte-order mark."""
    data = ("\ufeff" if bom else "") + "sentence1\tsentence2\tlabel\n" + \
        "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows)
    df = _read(data.encode("utf-8"), RTE_SPEC, RTE)
    assert df["sentence1"].tolist() == [a.strip() for a, _, _ in rows]
    assert df["sentence2"].tolist() == [b.strip() for _, b, _ in rows]
    assert df["label"].tolist() == [RTE_SPEC.label_map[y] for _, _, y in rows]


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_frame_or_a_data_error(data):
    """Whatever the bytes, the reader returns a well-formed frame or raises DataError."""
    try:
        df = _read(b"sentence\tlabel\n" + data, SST2.local["train"], SST2)
    except DataError as e:
        assert "\n" not in str(e)
        return
    assert list(df.columns) == ["sentence", "label"]
    assert all(isinstance(s, str) and s == s.strip() and s for s in df["sentence"])
    assert set(df["label"]) <= {0, 1}


# ---------------------------------------------------------------------------- metrics
RESULT = st.builds(
    lambda kind, queries, words, frac, text: {
        "result": kind, "queries": queries, "num_words": words,
        "perturbed_words": round(words * frac), "original": (text,), "adversarial": (text,)},
    st.sampled_from(["successful", "failed", "skipped"]), st.integers(0, 10_000),
    st.integers(0, 200), st.floats(0, 1), st.text(max_size=20))


@SETTINGS
@given(st.lists(RESULT, max_size=60), st.floats(0, 100))
def test_summary_invariants(results, acc):
    s = summarize(results)
    kinds = [r["result"] for r in results]
    assert (s.successful, s.failed, s.skipped) == (kinds.count("successful"),
                                                   kinds.count("failed"), kinds.count("skipped"))
    assert s.attacked == len(results) == s.successful + s.failed + s.skipped
    for pct in (s.attacked_clean_acc, s.aua, s.asr, s.avg_perturbed_pct):
        assert pct is None or 0.0 <= pct <= 100.0
    # clean accuracy on the attacked set splits into what survived and what was flipped
    if s.attacked:
        assert s.attacked_clean_acc == pytest.approx(s.aua + 100.0 * s.successful / s.attacked)
    # AUA = (100 - ASR) x clean accuracy on the attacked set / 100
    if s.asr is None:
        assert s.successful + s.failed == 0 and s.aua == 0.0
    else:
        assert s.aua == pytest.approx((100.0 - s.asr) * s.attacked_clean_acc / 100.0)
    assert (s.avg_queries is None) == (s.successful + s.failed == 0)
    assert (s.avg_perturbed_pct is None) == (s.successful == 0)
    avg = avg_score(acc, s.aua)
    assert min(acc, s.aua) <= avg <= max(acc, s.aua) and math.isfinite(avg)



# ------------------------------------------------------------------ word-level diff
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
# texts that share words, so that equal runs occur
WORDS = st.lists(st.sampled_from(["the", "film", "<b>", "&amp;", "é", "a\u00a0b", "[x](y)", "'"]),
                 max_size=12).map(" ".join)


@SETTINGS
@given(st.one_of(TEXT, WORDS), st.one_of(TEXT, WORDS))
def test_word_diff_reconstructs_both_texts(original, adversarial):
    from robustbench_nlp.textdiff import OPS, word_diff

    tokens = word_diff(original, adversarial)
    assert {t.op for t in tokens} <= set(OPS)
    assert [t.word for t in tokens if t.op != "insert"] == original.split()
    assert [t.word for t in tokens if t.op != "delete"] == adversarial.split()
    assert all(t.word and t.word.split() == [t.word] for t in tokens)
    if original.split() == adversarial.split():
        assert all(t.op == "equal" for t in tokens)


@SETTINGS
@given(st.one_of(TEXT, WORDS), st.one_of(TEXT, WORDS))
def test_diff_html_escapes_every_word(original, adversarial):
    """The only markup in the rendered diff is its own <del>/<ins> wrappers; the words,
    unescaped, are those of the diff."""
    import html
    import re

    from robustbench_nlp.textdiff import diff_html, word_diff

    out = diff_html(original, adversarial)
    bare = re.sub(r'<(del|ins) class="rb-(del|ins)" style="[^"<>]*">|</(del|ins)>', "", out)
    assert "<" not in bare and ">" not in bare
    words = [html.unescape(w) for w in bare.split(" ")] if bare else []
    assert words == [t.word for t in word_diff(original, adversarial)]
