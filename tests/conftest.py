"""Shared fixtures: the real all-MiniLM-L6-v2 backbone and the local GLUE mirror."""

from __future__ import annotations

import os

import pytest
import torch

from robustbench_nlp.tasks import find_data_dir


@pytest.fixture(scope="session", autouse=True)
def _threads():
    """Two torch threads, or one per worker under pytest-xdist (``-n 2``: two workers on a
    2-core machine, where more threads than cores busy-wait)."""
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session", autouse=True)
def _textattack_offline():
    """Import textattack through :func:`import_textattack` before any test does ``from
    textattack ...`` itself: a bare first import would skip the offline set-up (NLTK's stop
    words, no downloads) and leave textattack half-imported for the whole session."""
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    import_textattack()


@pytest.fixture(scope="session")
def data_dir():
    d = find_data_dir()
    if d is None:
        pytest.skip("local GLUE mirror (../shared/data) not found")
    return d


@pytest.fixture
def minilm():
    """Fresh (tokenizer, TextClassifier, info) on all-MiniLM-L6-v2 with a 2-class head."""
    from robustbench_nlp.backbones import load_backbone

    torch.manual_seed(0)
    return load_backbone("minilm", 2)


@pytest.fixture
def sst2_batch(minilm):
    """A fixed labelled SST-2-like batch (collated, CPU)."""
    from robustbench_nlp.inference import collate, encode

    tok = minilm[0]
    texts = [("a gripping , beautifully acted film",), ("dull and lifeless",),
             ("the plot is thin but the cast is charming and the jokes land",), ("awful",)]
    rows = encode(tok, texts, 64)
    for r, y in zip(rows, [1, 0, 1, 0]):
        r["label"] = y
    return collate(rows, tok.pad_token_id)
