"""Batched, dynamically padded inference and tokenisation shared by training and attacks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

Texts = Sequence[tuple[str, ...]]


def as_segments(texts: Sequence) -> list[tuple[str, ...]]:
    """Normalise a list of ``str`` or tuples of ``str`` to tuples of segments."""
    return [t if isinstance(t, tuple) else (tuple(t) if isinstance(t, list) else (t,)) for t in texts]


def encode(tokenizer, texts: Texts, max_length: int, flag_truncated: bool = True) -> list[dict]:
    """Tokenise segment tuples without padding.

    Args:
        tokenizer: a ``transformers`` tokenizer.
        texts: N strings or tuples of one or two segments (all of one kind).
        max_length: truncation length in tokens (longest segment is truncated first).
        flag_truncated: add ``truncated``; this tokenises a second time, untruncated,
            so the hot paths (prediction, the attack's queries) leave it off.

    Returns:
        N dicts with ``input_ids`` (and ``token_type_ids`` when the tokenizer makes them)
        as lists of ints, plus ``truncated`` (bool) when ``flag_truncated``.

    Raises:
        ValueError: the texts mix single segments and pairs, or have more than two segments.
    """
    texts = as_segments(texts)
    if not texts:
        return []
    widths = {len(t) for t in texts}
    if len(widths) != 1 or widths - {1, 2}:
        raise ValueError(f"texts must all be single segments or all pairs, got segment "
                         f"counts {sorted(widths)}")
    firsts = [t[0] for t in texts]
    seconds = [t[1] for t in texts] if len(texts[0]) > 1 else None
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    full = tokenizer(firsts, seconds, truncation=False)["input_ids"] if flag_truncated else None
    out = []
    for i in range(len(texts)):
        row = {"input_ids": enc["input_ids"][i]}
        if flag_truncated:
            row["truncated"] = len(full[i]) > max_length
        if "token_type_ids" in enc:
            row["token_type_ids"] = enc["token_type_ids"][i]
        out.append(row)
    return out


def collate(rows: list[dict], pad_id: int, device: torch.device | str = "cpu") -> dict:
    """Pad ``rows`` from :func:`encode` to the longest row (dynamic padding, right side).

    Returns:
        ``input_ids`` [B, L], ``attention_mask`` [B, L] and, when present,
        ``token_type_ids`` [B, L] (long tensors on ``device``), plus ``labels`` [B] if the
        rows carry a ``label``.
    """
    length = max(len(r["input_ids"]) for r in rows)
    b = len(rows)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    mask = torch.zeros((b, length), dtype=torch.long)
    has_tt = "token_type_ids" in rows[0]
    tt = torch.zeros((b, length), dtype=torch.long) if has_tt else None
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        mask[i, :n] = 1
        if has_tt:
            tt[i, :n] = torch.tensor(r["token_type_ids"])
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if has_tt:
        batch["token_type_ids"] = tt.to(device)
    if "label" in rows[0]:
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long).to(device)
    return batch


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: Texts, max_length: int = 128,
                   batch_size: int = 64) -> np.ndarray:
    """Class logits for ``texts`` in input order.

    Sorts by length so each batch pads to a similar length, runs ``model`` in eval mode
    without gradients, and restores the input order.

    Returns:
        float32 array [N, C].
    """
    rows = encode(tokenizer, texts, max_length, flag_truncated=False)
    return logits_of_rows(model, rows, tokenizer.pad_token_id, batch_size)


@torch.inference_mode()
def logits_of_rows(model, rows: list[dict], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """Class logits for tokenised ``rows`` (from :func:`encode`) in input order: sorted by
    length into dynamically padded batches (:func:`collate`), eval mode, no gradients.

    Returns:
        float32 array [N, C] (``[0, 0]`` for no rows).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    out: list[np.ndarray | None] = [None] * len(rows)
    try:
        for s in range(0, len(rows), batch_size):
            idx = order[s:s + batch_size]
            batch = collate([rows[i] for i in idx], pad_id, device)
            logits = model(**batch).float().cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = logits[j]
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(out).astype(np.float32)
