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
