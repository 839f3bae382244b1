"""Tests of the TextFooler attack, its victim wrapper and its offline resources.

The tests marked ``slow`` need the GloVe nearest-neighbour cache, which the first run builds
(about 100 s on two CPU cores; later runs load it in about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustbench_nlp.attacks.base import RESULT_TYPES, ExampleResult
from robustbench_nlp.errors import ConfigError


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def backbone():
    from robustbench_nlp.backbones import load_backbone

    torch.manual_seed(0)
    tok, model, _ = load_backbone("minilm", num_labels=2)
    model.eval()
    return tok, model


def _direct_probs(tok, model, text) -> np.ndarray:
    """Unbatched, unpadded forward of one text or pair."""
    args = [text] if isinstance(text, str) else list(text)
    enc = tok(*args, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**enc).double(), -1).numpy()[0]


TEXTS = [
    "bad",
    "it 's a charming and often affecting journey .",
    "the acting , costumes , music , cinematography and sound are all astounding given the "
    "production 's austere locales .",
    ("A man is sleeping.", "Nobody is asleep in the whole building tonight."),
    ("Short.", "x"),
    "unflinchingly bleak and desperate",
]


# ---------------------------------------------------------------------------- wrapper
def test_wrapper_matches_direct_forward(backbone):
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    tok, model = backbone
    w = ClassifierWrapper(model, tok, max_length=128, batch_size=2)
    probs = w(TEXTS)
    assert probs.shape == (len(TEXTS), 2) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    direct = np.stack([_direct_probs(tok, model, t) for t in TEXTS])
    assert np.abs(probs - direct).max() < 1e-5
    assert w.num_forward == len(TEXTS)
    # pairs may also come as lists; a bare string is one query
    np.testing.assert_allclose(w([list(TEXTS[3])])[0], probs[3])
    np.testing.assert_allclose(w(TEXTS[0])[0], probs[0])


def test_wrapper_cache_and_predict(backbone):
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    tok, model = backbone
    w = ClassifierWrapper(model, tok, cache_size=3)
    first = w(TEXTS[:3])
    again = w(list(reversed(TEXTS[:3])) + [TEXTS[0]])
    assert w.num_forward == 3 and w.num_queries == 7
    np.testing.assert_array_equal(again[::-1][1:], first)
    w(TEXTS[3:])
    assert len(w._cache) == 3
    np.testing.assert_array_equal(w.predict(TEXTS), w(TEXTS).argmax(1))
    assert w.predict([]).shape == (0,)


def test_wrapper_same_tokens_same_probabilities(backbone):
    """Texts the uncased tokenizer maps to the same ids are one input: one forward pass and
    bit-identical probabilities, even when the batch around them pads differently."""
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    tok, model = backbone
    w = ClassifierWrapper(model, tok, batch_size=2, cache_size=0)
    texts = ["During World War 2.", "a much longer sentence that pads its batch a lot more",
             "during world war 2.", "DURING WORLD WAR 2."]
    probs = w(texts)
    assert w.num_forward == 2 and w.num_queries == 4
    np.testing.assert_array_equal(probs[0], probs[2])
    np.testing.assert_array_equal(probs[0], probs[3])
    assert not np.array_equal(probs[0], probs[1])


def test_wrapper_accepts_peft_encoder(backbone):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.backbones import load_backbone

    tok, _ = backbone
    torch.manual_seed(1)
    _, model, _ = load_backbone("minilm", num_labels=2)
    model.encoder = get_peft_model(model.encoder, PromptTuningConfig(
        task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=4))
    assert model.uses_soft_prompt
    model.eval()
    w = ClassifierWrapper(model, tok, batch_size=4)
    probs = w(TEXTS)
    direct = np.stack([_direct_probs(tok, model, t) for t in TEXTS])
    assert np.abs(probs - direct).max() < 1e-5
    assert not model.training


# ---------------------------------------------------------------------------- textattack import
def test_import_textattack_offline_in_fresh_home(tmp_path):
    """A fresh HOME: textattack imports, our loggers stay enabled, HF_HOME is untouched."""
    code = (
        "import logging, os, json\n"
        "mine = logging.getLogger('robustbench_nlp.probe')\n"
        "from robustbench_nlp.attacks.textattack_compat import import_textattack, textattack_cache_dir\n"
        "import sys; assert 'textattack' not in sys.modules\n"
        "ta = import_textattack()\n"
        "import nltk\n"
        "print(json.dumps({'attack': hasattr(ta, 'Attack'), 'disabled': mine.disabled,\n"
        "  'hf_home': os.environ.get('HF_HOME'), 'tp': os.environ.get('TOKENIZERS_PARALLELISM'),\n"
        "  'marker': (textattack_cache_dir() / 'post_install_check_3').exists(),\n"
        "  'stopwords': len(nltk.corpus.stopwords.words('english'))}))\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HOME", "TOKENIZERS_PARALLELISM", "TA_CACHE_DIR")}
    env.update(HOME=str(tmp_path), RBNLP_CACHE=str(tmp_path / "rb"), RBNLP_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {"attack": True, "disabled": False, "hf_home": None, "tp": None,
                    "marker": True, "stopwords": info["stopwords"]}
    assert info["stopwords"] > 100
    assert "Error loading" not in out.stderr  # nltk.download was not attempted


# ---------------------------------------------------------------------------- resources
def test_sentence_encoder_angular_similarity():
    from textattack.constraints.semantics.sentence_encoders.sentence_encoder import (
        get_angular_sim)
    from textattack.shared import AttackedText

    from robustbench_nlp.attacks.resources import USEm3Encoder

    enc = USEm3Encoder()
    assert (enc.metric, enc.threshold, enc.window_size) == ("angular", 0.840845057, 15)
    assert enc.skip_text_shorter_than_window and not enc.compare_against_original
    e = torch.tensor(enc.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                                 "The stock market fell sharply today."]))
    sims = get_angular_sim(e[:1].repeat(2, 1), e[1:])
    assert sims[0] > sims[1] + 0.1
    cos = float(torch.nn.functional.cosine_similarity(e[0], e[1], dim=0))
    assert abs(float(sims[0]) - (1 - np.arccos(cos) / np.pi)) < 1e-5
    # textattack's scoring path: window around the swapped word, one encode call
    ref = AttackedText("the film is a charming and often affecting journey through the "
                       "lives of three friends who grow up together in a small town")
    near = ref.replace_word_at_index(4, "delightful")
    far = ref.replace_word_at_index(4, "bankrupt")
    for t in (near, far):
        t.attack_attrs["newly_modified_indices"] = {4}
    scores = enc._score_list(ref, [near, far])
    assert scores[0] > scores[1]
    assert abs(float(enc._sim_score(ref, near)) - float(scores[0])) < 1e-5


def test_spacy_pos_tags_nltk_universal():
    from robustbench_nlp.attacks.resources import SpacyPartOfSpeech

    pos = SpacyPartOfSpeech()
    assert pos.tag("The quick brown fox jumps over the lazy dog".split()) == [
        "DET", "ADJ", "ADJ", "NOUN", "VERB", "ADP", "DET", "ADJ", "NOUN"]
    # NLTK's universal map: modal -> VERB, proper noun -> NOUN, "not" -> ADV, "and" -> CONJ
    assert pos.tag("John can not believe that this movie is so good".split()) == [
        "NOUN", "VERB", "ADV", "VERB", "ADP", "DET", "NOUN", "VERB", "ADV", "ADJ"]
    assert pos.tag("she quickly gave him two old books and a red pen".split()) == [
        "PRON", "ADV", "VERB", "PRON", "NUM", "ADJ", "NOUN", "CONJ", "DET", "ADJ", "NOUN"]


def test_spacy_pos_constraint_filters_swaps():
    from textattack.shared import AttackedText

    from robustbench_nlp.attacks.resources import SpacyPartOfSpeech

    pos = SpacyPartOfSpeech(allow_verb_noun_swap=True)
    ref = AttackedText("The quick brown fox jumps over the lazy dog")
    ok = ref.replace_word_at_index(1, "fast")       # ADJ -> ADJ
    bad = ref.replace_word_at_index(1, "quickly")   # ADJ -> ADV
    noun_verb = ref.replace_word_at_index(8, "run")  # NOUN slot, allowed either way
    for t, i in ((ok, 1), (bad, 1), (noun_verb, 8)):
        t.attack_attrs["newly_modified_indices"] = {i}
    kept = pos._check_constraint_many([ok, bad, noun_verb], ref)
    assert ok in kept and bad not in kept and noun_verb in kept
    assert len(pos._pos_tag_cache) >= 3


def test_nearest_neighbours_exact():
    from robustbench_nlp.attacks.resources import nearest_neighbours

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    nn = nearest_neighbours(x, 7, chunk=64)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, -np.inf)
    assert nn.shape == (300, 8) and (nn[:, 0] == np.arange(300)).all()
    np.testing.assert_array_equal(nn[:, 1:], np.argsort(-s, axis=1, kind="stable")[:, :7])


def test_embedding_cache_builds_once_and_reloads(tmp_path):
    from robustbench_nlp.attacks import resources as R

    calls = []
    words = ["good", "great", "fine", "bad", "awful"]
    vecs = np.array([[1, 0.1], [1, 0.2], [0.9, 0.3], [-1, 0.1], [-1, 0.2]], np.float32)

    def load():
        calls.append(1)
        return words, vecs, {"vocabulary": "toy"}

    spec = R.register_embedding(R.EmbeddingSpec("toy-test", "toy", lambda: {"v": 1}, load))
    try:
        emb, info = R.load_word_embedding("toy-test", k=3, cache_root=tmp_path)
        emb2, info2 = R.load_word_embedding("toy-test", k=3, cache_root=tmp_path)
        assert len(calls) == 1 and info == info2
        assert info["fingerprint"] == R.embedding_fingerprint("toy-test", 3)
        assert R.embedding_fingerprint("toy-test", 4) != info["fingerprint"]
        assert [emb2.index2word(i) for i in emb2.nearest_neighbours(emb2.word2index("good"), 2)
                ] == ["great", "fine"]
        np.testing.assert_array_equal(emb.nn_matrix, emb2.nn_matrix)
        assert emb2.get_cos_sim("good", "bad") < 0
    finally:
        R.EMBEDDINGS.pop(spec.name, None)
    with pytest.raises(Exception, match="unknown word embedding"):
        R.load_word_embedding("no-such-embedding", cache_root=tmp_path)


@pytest.mark.slow
def test_glove_embedding_neighbours():
    import time

    from robustbench_nlp.attacks import resources as R

    emb, info = R.load_word_embedding("glove-6b-50d")
    assert info["name"] == "glove-6b-50d" and len(info["fingerprint"]) == 64
    assert 60_000 < info["vocab_size"] <= 80_000 and info["dim"] == 50
    assert emb.nn_matrix.shape[1] >= 51

    def nbrs(w, n=10):
        return {emb.index2word(i) for i in emb.nearest_neighbours(emb.word2index(w), n)}

    assert {"film", "movies"} <= nbrs("movie")
    assert {"horrible", "awful"} <= nbrs("terrible")
    assert {"hilarious", "amusing"} & nbrs("funny")
    assert "movie" not in nbrs("movie")
    # a second load in a fresh process reads the disk cache in seconds
    R._EMBEDDING_CACHE.clear()
    t0 = time.perf_counter()
    emb2, info2 = R.load_word_embedding("glove-6b-50d")
    assert time.perf_counter() - t0 < 15 and info2["fingerprint"] == info["fingerprint"]
    np.testing.assert_array_equal(emb2.nn_matrix[:100], emb.nn_matrix[:100])


# ---------------------------------------------------------------------------- attack
def test_textfooler_registered_and_configured():
    from robustbench_nlp.attacks.textfooler import TextFooler, textfooler_stopwords
    from robustbench_nlp.registry import ATTACKS
    from robustbench_nlp.tasks import get_task

    assert ATTACKS.get("textfooler") is TextFooler
    sw = textfooler_stopwords()
    assert len(sw) == 266 and {"a", "the", "not", "no", "won't"} <= sw and "good" not in sw
    with pytest.raises(ConfigError):
        TextFooler(TextFooler.Config(resources="cloud"))
    with pytest.raises(ConfigError):
        TextFooler(TextFooler.Config(query_budget=0))
    atk = TextFooler(TextFooler.Config(attacked_column="premise"))
    with pytest.raises(ConfigError, match="attacked_column"):
        atk.check_task(get_task("rte"))
    off = TextFooler(TextFooler.Config(resources="offline"))
    # default: every segment of a pair may be modified (stock textattack on GLUE's columns)
    assert off.config.attacked_column == "all"
    assert off.attacked_column(get_task("rte")) is None
    assert off.attacked_column(get_task("sst2")) is None
    # None, stored by runs made before "all" existed, means the task's segment
    legacy = TextFooler(TextFooler.Config(resources="offline", attacked_column=None))
    assert legacy.attacked_column(get_task("rte")) == "sentence2"
    assert legacy.attacked_column(get_task("sst2")) is None
    res = off.resources()
    assert res["mode"] == "offline" and res["embedding"]["name"] == "counterfitted-glove-50d-k1"
    assert len(res["embedding"]["fingerprint"]) == 64


def _probe_trained(backbone, n=256, steps=100):
    """Train only the linear head on frozen features of n SST-2 train sentences (seconds)."""
    from robustbench_nlp.tasks import load_split
    from victims import linear_probe

    train, _ = load_split("sst2", "train")
    return linear_probe(*backbone, train, n, steps, max_length=48)


def _check_consistent(results, rows, task, attacked_segment=None):
    assert len(results) == len(rows)
    counts = {k: sum(r.result == k for r in results) for k in RESULT_TYPES}
    assert sum(counts.values()) == len(rows)
    for r, row in zip(results, rows.to_dict("records")):
        assert isinstance(r, ExampleResult)
        assert r.index == row["index"] and r.gold == row["label"]
        assert r.original == tuple(row[c] for c in task.text_columns)
        assert len(r.adversarial) == len(r.original)
        assert r.attacked_segment == attacked_segment
        if r.result == "skipped":
            assert r.pred_before != r.gold and r.adversarial == r.original
            assert r.queries == 0 and r.perturbed_words == 0
        else:
            assert r.pred_before == r.gold and r.queries >= 1
        if r.result == "successful":
            assert r.pred_after != r.gold and r.adversarial != r.original
            assert 0 < r.perturbed_words <= r.num_words
        if r.result == "failed":
            assert r.pred_after == r.gold
        assert (r.perturbed_words > 0) == (r.adversarial != r.original)
        json.dumps(r.to_dict())
    return counts


@pytest.mark.slow
def test_textfooler_end_to_end_sst2(backbone):
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.tasks import get_task, load_split

    tok, model = _probe_trained(backbone)
    task = get_task("sst2")
    dev, _ = load_split(task, "validation")
    atk = TextFooler(TextFooler.Config(resources="offline"))
    rows = atk.examples(task, dev, 5, seed=0)
    victim = ClassifierWrapper(model, tok)
    results = list(atk.run(victim, task, rows))
    counts = _check_consistent(results, rows, task)
    assert counts["skipped"] < 5
    # predictions agree with the victim queried directly
    for r in results:
        assert r.pred_before == int(victim.predict([r.original[0]])[0])
        assert r.pred_after == int(victim.predict([r.adversarial[0]])[0])
    assert victim.num_forward > 0
    res = atk.resources()
    assert {"embedding", "sentence_encoder", "pos_tagger"} <= set(res)
    assert res["sentence_encoder"]["threshold"] == 0.840845057


@pytest.mark.slow
def test_textfooler_pair_task_modifies_only_attacked_segment(backbone):
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.tasks import get_task, load_split

    from textattack.shared import AttackedText

    tok, model = backbone
    task = get_task("rte")
    dev, _ = load_split(task, "validation")
    dev = dev[dev.sentence2.str.split().str.len() < 12]
    atk = TextFooler(TextFooler.Config(resources="offline", query_budget=150,
                                       attacked_column="sentence2"))
    rows = atk.examples(task, dev, 2, seed=0)
    victim = ClassifierWrapper(model, tok)
    results = list(atk.run(victim, task, rows))
    _check_consistent(results, rows, task, attacked_segment=1)
    for r in results:
        assert r.adversarial[0] == r.original[0]
        assert r.queries <= 150
        n0 = len(AttackedText(r.original[0]).words)
        assert all(i >= n0 for i in r.extra["modified_indices"])
        assert r.num_words == len(AttackedText(r.original[1]).words)
