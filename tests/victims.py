"""Cheap victims for the attack tests: all-MiniLM-L6-v2 whose mean-pooled linear head alone
is trained on frozen features of a few SST-2 train sentences (seconds instead of minutes for
fine-tuning; an attack only needs a model that is right on most examples)."""

from __future__ import annotations

import torch


def linear_probe(tok, model, train_df, n: int, steps: int, max_length: int,
                 batch_size: int | None = None):
    """Train ``model``'s linear head (``model.head[1]``) with ``steps`` full-batch Adam steps
    (lr 1e-2) on the frozen mean-pooled features of ``n`` SST-2 train sentences sampled with
    seed 0; features are computed ``batch_size`` sentences at a time (all at once when
    ``None``). Returns ``(tok, model)`` in eval mode."""
    from robustbench_nlp.backbones import pool

    model.eval()
    sub = train_df.sample(n, random_state=0)
    step = batch_size or len(sub)
    feats = []
    with torch.inference_mode():
        for s in range(0, len(sub), step):
            enc = tok(list(sub.sentence[s:s + step]), padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            feats.append(pool(model.base_encoder(**enc).last_hidden_state,
                              enc["attention_mask"], "mean"))
    feats, y = torch.cat(feats), torch.tensor(sub.label.values)
    linear = model.head[1]
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear(feats), y).backward()
        opt.step()
    model.eval()
    return tok, model


def minilm_probe(train_df, n: int, steps: int, max_length: int, batch_size: int | None = None):
    """A fresh all-MiniLM-L6-v2 (``torch.manual_seed(0)`` before its head is built) trained by
    :func:`linear_probe`."""
    from robustbench_nlp.backbones import load_backbone

    torch.manual_seed(0)
    tok, model, _ = load_backbone("minilm", 2)
    return linear_probe(tok, model, train_df, n, steps, max_length, batch_size)


def tiny_config(vocab_size: int, layers: int = 2, hidden: int = 32):
    """A tiny BERT config (no dropout, so a train-mode and an eval-mode forward agree)."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=2, intermediate_size=2 * hidden,
                      max_position_embeddings=512, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def tiny_victim(train_df, n: int = 4000, epochs: int = 2, max_length: int = 64,
                text_columns: tuple[str, ...] = ("sentence",), hidden: int = 64):
    """(tok, model): a tiny BERT (:func:`tiny_config`, one layer, ``torch.manual_seed(0)``)
    with all-MiniLM-L6-v2's tokenizer (BERT's uncased vocabulary), trained end to end for
    ``epochs`` epochs (Adam, lr 2e-3, batches of 32) on ``n`` rows of ``train_df`` (sampled
    with seed 0; pairs when ``text_columns`` has two); a few seconds. Its forward passes
    cost a small fraction of MiniLM's, so the attack tests run every recipe against
    textattack's own quickly. Returned in eval mode."""
    from transformers import BertModel

    from robustbench_nlp.backbones import TextClassifier

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    model = TextClassifier(BertModel(tiny_config(tok.vocab_size, 1, hidden)), 2, "mean",
                           dropout=0.0)
    sub = train_df.sample(min(n, len(train_df)), random_state=0)
    cols = [list(sub[c].astype(str)) for c in text_columns]
    y = torch.tensor(sub.label.values)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(sub), generator=g).tolist()
        for s in range(0, len(order), 32):
            idx = order[s:s + 32]
            enc = tok(*[[c[i] for i in idx] for c in cols], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(**enc), y[idx]).backward()
            opt.step()
    model.eval()
    return tok, model


def tiny_masked_lm(folder, seed: int = 1):
    """Save a randomly initialised tiny ``BertForMaskedLM`` (:func:`tiny_config`,
    ``torch.manual_seed(seed)``) and all-MiniLM-L6-v2's tokenizer to ``folder``; returns the
    folder as a string (a ``masked_lm=`` value for BAE and BERT-Attack)."""
    from transformers import BertForMaskedLM

    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    BertForMaskedLM(tiny_config(tok.vocab_size)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def minilm_tokenizer():
    """all-MiniLM-L6-v2's tokenizer (BERT's uncased WordPiece vocabulary), from the offline
    package or the Hub (:func:`robustbench_nlp.backbones.resolve_model`)."""
    from transformers import AutoTokenizer

    from robustbench_nlp.backbones import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm")[0])
