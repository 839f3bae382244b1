"""GLUE tasks of the PEAFT paper (SST-2, MRPC, RTE, QNLI) and their data sources.

Each split loads as a :class:`pandas.DataFrame` with the task's text columns (Hub names,
e.g. ``sentence`` or ``sentence1``/``sentence2``) and an integer ``label`` column using the
Hugging Face Hub's ``nyu-mll/glue`` label ids.

Sources, in order:

1. the local mirror (``RBNLP_DATA_DIR``, or a ``shared/data`` folder found next to the
   working directory or the package checkout, see :func:`find_data_dir`), read with every
   parsing rule of its README (no CSV quoting, UTF-8 BOM, label strings mapped to ids);
2. the Hub: ``datasets.load_dataset("nyu-mll/glue", <task>)``.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DataError, UnknownNameError

HUB_DATASET = "nyu-mll/glue"
_MIRROR_MARKER = Path("glue") / "sst2" / "dev.tsv"


@dataclass(frozen=True)
class LocalFile:
    """How one local TSV maps onto the Hub schema.

    Attributes:
        path: path relative to the mirror root.
        columns: local column name → Hub column name (text columns and the label).
        label_map: label string → Hub id; integer labels are taken as ids.
        note: caveat recorded with runs that use this file (e.g. a subset).
    """

    path: str
    columns: dict[str, str]
    label_map: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Task:
    """A GLUE classification task.

    Attributes:
        name: short name used on the command line (``sst2``).
        text_columns: one column (single sentence) or two (sentence pair), Hub names.
        label_names: label names indexed by Hub id.
        local: split (``train`` / ``validation``) → :class:`LocalFile` in the mirror.
        metrics: metric names reported for the task (accuracy always; MRPC adds F1).
        attacked_column: for pair tasks, the segment TextFooler perturbs by default
            (textattack's premise/hypothesis convention: the second segment).
        advglue: key of the task in AdvGLUE's ``dev.json`` or ``None`` if AdvGLUE has none.
        prompt_text: natural-language task description that initialises text-initialised
            soft prompts (Lester et al. 2021's class-label / task-text initialisation).
        max_length: default truncation length in tokens (SST-2 sentences fit in 64).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]
    local: dict[str, LocalFile]
    metrics: tuple[str, ...] = ("accuracy",)
    attacked_column: str | None = None
    advglue: str | None = None
    prompt_text: str = ""
    max_length: int = 128

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    def note(self, split: str) -> str:
        f = self.local.get(split)
        return f.note if f else ""


_NLI = {"entailment": 0, "not_entailment": 1}

TASKS: dict[str, Task] = {
    "sst2": Task(
        name="sst2",
        text_columns=("sentence",),
        label_names=("negative", "positive"),
        local={
            "train": LocalFile("glue/sst2/train.tsv", {"sentence": "sentence", "label": "label"}),
            "validation": LocalFile("glue/sst2/dev.tsv", {"sentence": "sentence", "label": "label"}),
        },
        advglue="sst2",
        prompt_text="classify the sentiment of this movie review as positive or negative",
        max_length=64,
    ),
    "mrpc": Task(
        name="mrpc",
        text_columns=("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        local={
            s: LocalFile(f"glue/mrpc/{f}", {"#1 String": "sentence1", "#2 String": "sentence2",
                                            "Quality": "label"})
            for s, f in (("train", "train.tsv"), ("validation", "dev.tsv"))
        },
        metrics=("accuracy", "f1"),
        attacked_column="sentence2",
        prompt_text="decide whether the two sentences are paraphrases of each other",
    ),
    "rte": Task(
        name="rte",
        text_columns=("sentence1", "sentence2"),
        label_names=("entailment", "not_entailment"),
        local={
            s: LocalFile(f"glue/rte/{f}", {"sentence1": "sentence1", "sentence2": "sentence2",
                                           "label": "label"}, _NLI)
            for s, f in (("train", "train.tsv"), ("validation", "dev.tsv"))
        },
        attacked_column="sentence2",
        advglue="rte",
        prompt_text="decide whether the first sentence entails the second sentence",
    ),
    "qnli": Task(
        name="qnli",
        text_columns=("question", "sentence"),
        label_names=("entailment", "not_entailment"),
        local={
            "train": LocalFile(
                "glue/qnli/train_10pct.tsv",
                {"question": "question", "sentence": "sentence", "label": "label"}, _NLI,
                note="local QNLI train is a 10% subset (10,475 of 104,743 rows, seed 42)",
            ),
            "validation": LocalFile("glue/qnli/dev.tsv", {"question": "question",
                                                          "sentence": "sentence", "label": "label"},
                                    _NLI),
        },
        attacked_column="sentence",
        advglue="qnli",
        prompt_text="decide whether the sentence contains the answer to the question",
    ),
}

SPLITS = ("train", "validation")


def get_task(name: str) -> Task:
    """Return the :class:`Task` called ``name``.

    Raises:
        UnknownNameError: for an unknown task, with close matches.
    """
    try:
        return TASKS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(TASKS), n=2, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown task {name!r}{hint} (known: {', '.join(TASKS)})") from None


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate the local data mirror.

    Order: ``explicit``, then ``$RBNLP_DATA_DIR``, then a ``shared/data`` folder in the
    working directory, the package checkout, or any of their parents (the layout of a clone
    next to ``../shared``). Returns ``None`` when there is no mirror (use the Hub).

    Raises:
        DataError: when ``explicit`` or ``$RBNLP_DATA_DIR`` is given but is not a mirror.
    """
    given = explicit or os.environ.get("RBNLP_DATA_DIR")
    if given:
        p = Path(given).expanduser()
        if not (p / _MIRROR_MARKER).is_file():
            raise DataError(f"data directory {str(p)!r} is not a GLUE mirror "
                            f"(missing {_MIRROR_MARKER})")
        return p.resolve()
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for base in [start, *start.parents]:
            cand = base / "shared" / "data"
            if (cand / _MIRROR_MARKER).is_file():
                return cand.resolve()
    return None


def read_local_tsv(path: Path, spec: LocalFile, task: Task) -> pd.DataFrame:
    """Read one mirror TSV into the Hub schema.

    Follows the mirror README: ``quoting=QUOTE_NONE`` (quotes inside sentences otherwise
    merge rows), ``utf-8-sig`` (MRPC's byte-order mark), label strings mapped to Hub ids.

    Returns:
        DataFrame with ``task.text_columns`` (str, stripped) and ``label`` (int64).

    Raises:
        DataError: missing or empty file, missing column, a row with more fields than the
            header, non-UTF-8 bytes, unknown label (integer labels: ASCII digits only), or an
            empty / whitespace-only sentence; the message names the file (and row or line).
    """
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with warnings.catch_warnings():
            # index_col=False: a first data row with an extra field would otherwise silently
            # become the index (losing the sentence); pandas warns instead, made an error here
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig",
                             dtype=str, keep_default_na=False, index_col=False)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (expected a header row with "
                        f"{', '.join(map(repr, spec.columns))})") from None
    except pd.errors.ParserWarning:
        raise DataError(f"{path}: line 2 has more tab-separated fields than the header "
                        "(a tab inside a sentence?)") from None
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        detail = (f"line {m[2]} has {m[3]} tab-separated fields, the header {m[1]}"
                  if m else str(e).strip().splitlines()[-1])
        raise DataError(f"{path}: {detail} (a tab inside a sentence?)") from None
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))} "
                        f"(found {', '.join(map(repr, df.columns))})")
    df = df[list(spec.columns)].rename(columns=spec.columns)
    for col in task.text_columns:
        df[col] = df[col].str.strip()
        empty = df.index[df[col] == ""]
        if len(empty):
            raise DataError(f"{path}: empty {col!r} in data row {int(empty[0]) + 1}")
    df["label"] = _map_labels(df["label"], spec.label_map, task, path)
    return df.reset_index(drop=True)


def _map_labels(col: pd.Series, label_map: dict[str, int], task: Task, path: Path) -> pd.Series:
    out = []
    for i, raw in enumerate(col):
        v = raw.strip()
        if v in label_map:
            out.append(label_map[v])
        elif v.isascii() and v.isdigit() and int(v) < task.num_labels:
            out.append(int(v))
        else:
            raise DataError(f"{path}: unknown label {raw!r} in data row {i + 1} "
                            f"(expected one of {sorted(label_map) or list(range(task.num_labels))})")
    return pd.Series(out, index=col.index, dtype="int64")


def load_split(task: Task | str, split: str, data_dir: str | os.PathLike | None = None
               ) -> tuple[pd.DataFrame, str]:
    """Load a labelled split of ``task``.

    Args:
        task: a :class:`Task` or its name.
        split: ``train`` or ``validation`` (GLUE test splits carry no labels).
        data_dir: mirror root; default: :func:`find_data_dir`.

    Returns:
        ``(frame, source)``: the DataFrame (text columns + int ``label``) and a source
        string recorded with the run (``local:<path>`` or ``hub:nyu-mll/glue/<task>``).

    Raises:
        DataError: bad split or malformed local file.
        UnknownNameError: unknown task.
    """
    task = get_task(task) if isinstance(task, str) else task
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (use one of {', '.join(SPLITS)}; "
                        "GLUE test splits have no labels)")
    root = find_data_dir(data_dir)
    if root is not None:
        spec = task.local[split]
        return read_local_tsv(root / spec.path, spec, task), f"local:{root / spec.path}"
    import datasets  # Hub fallback

    ds = datasets.load_dataset(HUB_DATASET, task.name, split=split)
    df = ds.to_pandas()[[*task.text_columns, "label"]]
    return df.reset_index(drop=True), f"hub:{HUB_DATASET}/{task.name}/{split}"
