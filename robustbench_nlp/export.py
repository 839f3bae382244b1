"""Export a run's attacked examples (``rbnlp export``): JSON lines, CSV, Parquet or a
Hugging Face ``datasets.Dataset`` folder.

One row per stored example, in attack order, with the columns of :func:`example_frame`:
both segments of every text (original and adversarial, named after the task's text columns),
gold label, predictions before and after the attack, result, queries, word counts, the
attack recipe and the run's attack protocol (``runs.protocol``, or recomputed from the stored
rows with :func:`robustbench_nlp.attacks.protocol.run_protocol` when the run has none).

``successful_only`` keeps the successful adversarial examples as a training set: the
adversarial texts take the task's own column names (``sentence``, or ``sentence1`` /
``sentence2`` ...), ``label`` is the gold label (what the model should have predicted), and
the originals stay as ``original_<column>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .errors import ConfigError

FORMATS = ("jsonl", "csv", "parquet", "hf")
#: ``--out`` suffix → format, when ``--format`` is not given
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def run_protocol_record(store, run) -> tuple[dict, str]:
    """The run's protocol record and hash: the stored ones, else computed from its rows."""
    from .attacks.protocol import protocol_hash, run_protocol

    if run.protocol:
        return run.protocol, run.protocol_hash or protocol_hash(run.protocol)
    record = run_protocol(run.attack, run.task, (run.config or {}).get("attack"),
                          run.resources, [r["index"] for r in store.examples(run.id)])
    return record, protocol_hash(record)


def example_frame(store, run_id: str, successful_only: bool = False) -> pd.DataFrame:
    """The exported rows of run ``run_id``.

    Columns: ``run_id``, ``task``, ``recipe`` (the attack), ``idx`` (dev row index),
    ``original_<col>`` and ``adversarial_<col>`` for each of the task's text columns,
    ``attacked_segment``, ``gold``, ``gold_label`` (its name), ``pred_before``,
    ``pred_after``, ``result``, ``queries``, ``num_words``, ``perturbed_words``, ``extra``
    (the attack's own fields, JSON text), ``protocol_hash`` and ``protocol`` (the protocol
    record, JSON text). With ``successful_only``: successful rows only, ``adversarial_<col>``
    renamed ``<col>`` and ``gold`` renamed ``label``.

    Raises:
        ConfigError: no such run.
    """
    from .tasks import TASKS

    run = store.get_run(run_id)
    rows = store.examples(run_id)
    task = TASKS.get(run.task)
    width = max([len(r["original"]) for r in rows] or [len(task.text_columns) if task else 1])
    columns = list(task.text_columns) if task and len(task.text_columns) == width else \
        [f"segment{i}" for i in range(width)]
    names = list(task.label_names) if task else []
    record, phash = run_protocol_record(store, run)
    protocol = json.dumps(record, sort_keys=True)
    recs = []
    for r in rows:
        rec = {"run_id": run.id, "task": run.task, "recipe": run.attack, "idx": r["index"]}
        rec.update({f"original_{c}": str(t) for c, t in zip(columns, r["original"])})
        rec.update({f"adversarial_{c}": str(t) for c, t in zip(columns, r["adversarial"])})
        rec.update({"attacked_segment": r["attacked_segment"], "gold": r["gold"],
                    "gold_label": names[r["gold"]] if 0 <= r["gold"] < len(names) else "",
                    "pred_before": r["pred_before"], "pred_after": r["pred_after"],
                    "result": r["result"], "queries": r["queries"],
                    "num_words": r["num_words"], "perturbed_words": r["perturbed_words"],
                    "extra": json.dumps(r.get("extra") or {}, sort_keys=True),
                    "protocol_hash": phash, "protocol": protocol})
        recs.append(rec)
    order = ["run_id", "task", "recipe", "idx", *(f"original_{c}" for c in columns),
             *(f"adversarial_{c}" for c in columns), "attacked_segment", "gold", "gold_label",
             "pred_before", "pred_after", "result", "queries", "num_words", "perturbed_words",
             "extra", "protocol_hash", "protocol"]
    df = pd.DataFrame(recs, columns=order)
    for c in ("idx", "gold", "pred_before", "pred_after", "queries", "num_words",
              "perturbed_words"):
        df[c] = df[c].astype("int64")
    df["attacked_segment"] = df["attacked_segment"].astype("Int64")
    if successful_only:
        df = df[df["result"] == "successful"].reset_index(drop=True)
        df = df.rename(columns={"gold": "label", **{f"adversarial_{c}": c for c in columns}})
        first = [*columns, "label"]
        df = df[first + [c for c in df.columns if c not in first]]
    return df


def format_of(out: str | Path, fmt: str | None) -> str:
    """The export format: ``fmt``, else guessed from ``out``'s suffix.

    Raises:
        ConfigError: unknown format, or none given and the suffix says nothing.
    """
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(Path(out).suffix.lower())
        if fmt is None:
            raise ConfigError(f"cannot tell the export format from {str(out)!r}; pass --format "
                              f"({'|'.join(FORMATS)})")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")
    return fmt


def export_run(store, run_id: str, out: str | Path, fmt: str | None = None,
               successful_only: bool = False) -> int:
    """Write the rows of :func:`example_frame` to ``out``.

    Args:
        out: the file (``jsonl``: one JSON object a line; ``csv``: header + rows, read it
            back with ``pd.read_csv(out, keep_default_na=False)`` to keep empty texts;
            ``parquet``) or, for ``hf``, the folder ``datasets.Dataset.save_to_disk`` writes
            (``datasets.load_from_disk(out)``; ``label`` is a ``ClassLabel`` with the task's
            names when ``successful_only``).
        fmt: one of :data:`FORMATS` (default: from ``out``'s suffix).

    Returns:
        the number of rows written.

    Raises:
        ConfigError: unknown run or format, or ``out`` cannot be written.
    """
    fmt = format_of(out, fmt)
    df = example_frame(store, run_id, successful_only)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            df.to_json(out, orient="records", lines=True, force_ascii=False)
        elif fmt == "csv":
            df.to_csv(out, index=False)
        elif fmt == "parquet":
            df.to_parquet(out, index=False)
        else:
            _save_dataset(df, out, store.get_run(run_id).task, successful_only)
    except OSError as e:
        raise ConfigError(f"cannot write {str(out)!r}: {e.strerror or e}") from None
    return len(df)


def _save_dataset(df: pd.DataFrame, out: Path, task_name: str, successful_only: bool) -> None:
    import datasets

    from .tasks import TASKS

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_pandas(df, preserve_index=False)
        task = TASKS.get(task_name)
        if successful_only and task is not None:
            ds = ds.cast_column("label", datasets.ClassLabel(names=list(task.label_names)))
        ds.save_to_disk(str(out))
    finally:
        if shown:
            datasets.enable_progress_bars()
