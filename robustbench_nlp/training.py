"""The training loop shared by every defense, and clean evaluation."""

from __future__ import annotations

import math
import random
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .inference import collate, encode, predict_logits
from .tasks import Task


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def texts_of(df: pd.DataFrame, task: Task) -> list[tuple[str, ...]]:
    """The task's text segments of every row, as tuples."""
    return list(zip(*(df[c].tolist() for c in task.text_columns)))


def subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` rows drawn without replacement with ``seed`` (all rows when ``n`` is None or ≥ len)."""
    if n is None or n >= len(df):
        return df
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


def bucketed_batches(lengths: list[int], batch_size: int, rng: np.random.Generator,
                     bucket: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding than random batches).

    Shuffles all indices, sorts each chunk of ``bucket`` batches by length, cuts batches
    and shuffles the batch order. Every index appears exactly once.
    """
    idx = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for s in range(0, len(idx), chunk):
        part = idx[s:s + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def train(model: torch.nn.Module, defense, tokenizer, train_df: pd.DataFrame, task: Task, *,
          max_length: int, seed: int, device: torch.device,
          on_epoch_end: Callable[[int], None] | None = None, progress: bool = True,
          processes=None) -> dict:
    """Train ``model`` with ``defense`` on ``train_df``.

    One optimizer step per batch: ``zero_grad`` → :meth:`Defense.step` (forward/backward) →
    gradient clipping → ``optimizer.step`` → linear warm-up/decay schedule. In a
    multi-process launch (``processes``) every process takes its share of each batch and the
    gradients are averaged over the processes between the step and the clipping
    (:mod:`robustbench_nlp.distributed`), so all processes apply the same update.

    Args:
        model: the classifier, already prepared by ``defense.setup``.
        defense: the :class:`~defenses.base.Defense`; its config gives epochs, batch size,
            learning rates and ``train_examples``.
        tokenizer: the backbone's tokenizer.
        train_df: the task's train split (text columns + ``label``).
        task: the task.
        max_length: truncation length (tokens).
        seed: seeds the subsample and batch order.
        device: where the model lives.
        on_epoch_end: called with the epoch number (1-based) after each epoch.
        progress: show a tqdm bar (main process only).
        processes: a :class:`~robustbench_nlp.distributed.Processes` (default: one process).

    Returns:
        ``{"train_seconds", "steps", "train_examples", "final_loss", "truncated"}``.
    """
    from transformers import get_linear_schedule_with_warmup

    from .distributed import Processes, average_gradients, broadcast_parameters, local_part

    procs = processes or Processes(device=device)
    cfg = defense.config
    df = subsample(train_df, cfg.train_examples, seed)
    rows = encode(tokenizer, texts_of(df, task), max_length)
    for r, y in zip(rows, df["label"].tolist()):
        r["label"] = int(y)
    lengths = [len(r["input_ids"]) for r in rows]
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = defense.make_optimizer(model)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    broadcast_parameters(params, procs)
    rng = np.random.default_rng(seed)
    model.train()
    start = time.perf_counter()
    bar = tqdm(total=total, desc=f"train {defense.name}", disable=not progress or not procs.is_main,
               unit="step")
    ema = None
    for epoch in range(1, cfg.epochs + 1):
        for idx in bucketed_batches(lengths, cfg.batch_size, rng):
            mine = local_part(idx, procs)
            batch = collate([rows[i] for i in mine], tokenizer.pad_token_id, device)
            optimizer.zero_grad(set_to_none=True)
            stats = defense.step(model, batch)
            average_gradients(params, len(mine), len(idx), procs)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            ema = stats["loss"] if ema is None else 0.95 * ema + 0.05 * stats["loss"]
            bar.set_postfix(loss=f"{ema:.3f}", epoch=epoch)
            bar.update(1)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
            model.train()
    bar.close()
    model.eval()
    return {"train_seconds": time.perf_counter() - start, "steps": total,
            "train_examples": len(rows), "final_loss": ema,
            "truncated": int(sum(r["truncated"] for r in rows))}


def evaluate(model, tokenizer, df: pd.DataFrame, task: Task, max_length: int,
             batch_size: int = 64) -> dict:
    """Clean evaluation on ``df``.

    Returns:
        ``{"acc": %, "f1": % (binary, positive class 1; MRPC), "preds": int array [N],
        "pred_distribution": {label name: share %}}``.
    """
    logits = predict_logits(model, tokenizer, texts_of(df, task), max_length, batch_size)
    preds = logits.argmax(-1)
    gold = df["label"].to_numpy()
    out = {"acc": float((preds == gold).mean() * 100), "preds": preds}
    if "f1" in task.metrics:
        tp = int(((preds == 1) & (gold == 1)).sum())
        fp = int(((preds == 1) & (gold == 0)).sum())
        fn = int(((preds == 0) & (gold == 1)).sum())
        out["f1"] = 100.0 * 2 * tp / max(2 * tp + fp + fn, 1)
    out["pred_distribution"] = {name: float((preds == i).mean() * 100)
                                for i, name in enumerate(task.label_names)}
    return out
