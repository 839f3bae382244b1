"""AdvGLUE (Wang et al., NeurIPS 2021) as an attack: a fixed set of adversarial examples.

AdvGLUE's dev set holds adversarial versions of GLUE dev examples (word-level typos and
substitutions, sentence-level distractions and paraphrases, and human-written examples from
CheckList/ANLI-style templates). Nothing is searched against the defended model: "attacking"
means classifying each AdvGLUE example once. The benchmark's score is plain accuracy on those
examples, so each example maps onto the textattack result types as

* prediction on the AdvGLUE text == gold → ``"failed"`` (the attack did not fool the model),
* prediction on the AdvGLUE text != gold → ``"successful"``,
* never ``"skipped"``,

which makes the run's AUA (``failed / N``) exactly the AdvGLUE accuracy, its attack success
rate the AdvGLUE error rate, and its "clean accuracy on the attacked set" 100 by construction.
ACC stays the clean accuracy on the task's full GLUE dev split (the runner computes it as for
any attack), as in the PEAFT paper's Table 2.

AdvGLUE does not say which GLUE example each item was made from. :func:`match_sources` links
every AdvGLUE example to its most similar GLUE dev example of the same task with rapidfuzz
(``fuzz.ratio``, the normalised InDel similarity in 0-100, on lower-cased word tokens; the
segments of a pair are joined into one string, so the longer segment, the premise/sentence
that identifies the example, weighs most). The match is used as the per-example "original"
only when its similarity is at least :data:`DEFAULT_THRESHOLD` (62). Why 62, measured on the
release (``python scripts/advglue_matching.py``; full output in the README):

* similarities are bimodal: the human-written examples (no GLUE source) score 47-59, derived
  ones 62-100 (no SST-2 example between 57.7 and 62.2, no QNLI one between 59.0 and 63.8,
  no RTE one between 49.9 and 77.8);
* a chance match stays below 62: the best similarity an AdvGLUE example reaches with a dev
  example other than its best match (sharing no segment with it) is at most 59.1 (SST-2),
  51.9 (RTE) and 61.0 (QNLI, a short truncated example whose real source scores 65.7);
* at ≥ 62 the AdvGLUE label agrees with the matched GLUE label for 331 of 332 examples (the
  exception is a human-written QNLI label flip whose question is copied verbatim), below
  62 for 26 of 45, i.e. chance.

A wrong source would show a misleading diff while a missed one only shows none, so the
threshold sits above every chance similarity rather than in the middle of the gap. Some
examples made by appending distractions ("... and true is true", five times) to a truncated
source score below 62 and keep the AdvGLUE text as their "original" (no diff is shown).

Data: ``advglue/dev.json`` of the local mirror (see its README), or the Hub's
``AI-Secure/adv_glue`` (config ``adv_<task>``, split ``validation``) when there is no mirror.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from robustbench_nlp.config import param, validate
from robustbench_nlp.errors import ConfigError, DataError
from robustbench_nlp.registry import ATTACKS

from .base import Attack, ExampleResult

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

#: AdvGLUE dev file, relative to the data mirror root
ADVGLUE_FILE = Path("advglue") / "dev.json"
#: Hub dataset and its config per AdvGLUE task key (split ``validation``)
HUB_DATASET = "AI-Secure/adv_glue"
HUB_CONFIGS = {"sst2": "adv_sst2", "qqp": "adv_qqp", "mnli": "adv_mnli",
               "mnli-mm": "adv_mnli_mismatched", "qnli": "adv_qnli", "rte": "adv_rte"}
#: minimum match similarity (rapidfuzz ``fuzz.ratio``, 0-100) to use a GLUE source
DEFAULT_THRESHOLD = 62.0
#: joins the normalised segments of a pair before matching (no word character, so it can
#: never be part of a normalised segment)
SEGMENT_JOIN = " | "

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Matching form of a segment: lower-cased word tokens (``\\w+``) joined by one space.

    Removes the tokenisation differences between AdvGLUE (``"it 's"``, ``"( MSF )"``) and the
    raw GLUE files (``"it's"``, ``"(MSF)"``), and all punctuation.
    """
    return " ".join(_WORD.findall(text.lower()))


def words(text: str) -> list[str]:
    """Word tokens (``\\w+``, case kept) used for the per-example word diff."""
    return _WORD.findall(text)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def advglue_file(data_dir: str | Path | None = None) -> Path | None:
    """The local ``advglue/dev.json``, or ``None`` when no mirror has one (use the Hub).

    ``data_dir`` is a mirror root; default: :func:`robustbench_nlp.tasks.find_data_dir`.

    Raises:
        DataError: ``data_dir`` (or ``$RBNLP_DATA_DIR``) is given but is not a GLUE mirror.
    """
    from robustbench_nlp.tasks import find_data_dir

    root = find_data_dir(data_dir)
    if root is None or not (root / ADVGLUE_FILE).is_file():
        return None
    return root / ADVGLUE_FILE


def load_advglue(task: "Task", data_dir: str | Path | None = None
                 ) -> tuple[pd.DataFrame, str]:
    """Load the AdvGLUE dev examples of ``task``.

    Args:
        task: a task with an AdvGLUE split (``task.advglue`` is not ``None``).
        data_dir: mirror root holding ``advglue/dev.json`` (default: found automatically;
            without a mirror the Hub's ``AI-Secure/adv_glue`` is used).

    Returns:
        ``(frame, source)``: columns ``idx`` (AdvGLUE's own 0..n-1 numbering), the task's
        text columns (AdvGLUE's text, unchanged) and ``label`` (int64, the Hub's GLUE ids,
        which AdvGLUE shares for sst2, qnli and rte); ``source`` is ``local:<path>`` or
        ``hub:AI-Secure/adv_glue/<config>``.

    Raises:
        ConfigError: the task has no AdvGLUE split.
        DataError: the file lacks the task, a column, or has an empty text or bad label.
    """
    if task.advglue is None:
        raise ConfigError(f"task {task.name!r} has no AdvGLUE split")
    path = advglue_file(data_dir)
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not valid UTF-8 JSON ({e})") from None
        if task.advglue not in data:
            raise DataError(f"{path}: no {task.advglue!r} key (found: {', '.join(data)})")
        df = pd.DataFrame(data[task.advglue])
        source = f"local:{path}"
    else:  # Hub fallback
        import datasets

        config = HUB_CONFIGS[task.advglue]
        df = datasets.load_dataset(HUB_DATASET, config, split="validation").to_pandas()
        source = f"hub:{HUB_DATASET}/{config}"
        path = source
    cols = ["idx", *task.text_columns, "label"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: AdvGLUE {task.advglue} lacks column(s) "
                        f"{', '.join(map(repr, missing))}")
    df = df[cols].copy()
    for col in task.text_columns:
        df[col] = df[col].astype(str)
        empty = df.index[df[col].str.strip() == ""]
        if len(empty):
            raise DataError(f"{path}: empty {col!r} in AdvGLUE {task.advglue} item "
                            f"{int(empty[0])}")
    bad = df.index[~df["label"].isin(range(task.num_labels))]
    if len(bad):
        raw = df["label"].iloc[bad[0]]
        raw = raw.item() if hasattr(raw, "item") else raw
        raise DataError(f"{path}: label {raw!r} of AdvGLUE {task.advglue} "
                        f"item {int(bad[0])} is not in 0..{task.num_labels - 1}")
    df["idx"] = df["idx"].astype("int64")
    df["label"] = df["label"].astype("int64")
    if df["idx"].duplicated().any():
        raise DataError(f"{path}: duplicate idx in AdvGLUE {task.advglue}")
    return df.reset_index(drop=True), source


def match_sources(adv: pd.DataFrame, dev: pd.DataFrame, task: "Task") -> pd.DataFrame:
    """Find each AdvGLUE example's most similar GLUE dev example.

    Similarity is rapidfuzz's ``fuzz.ratio`` (normalised InDel similarity, 0-100) between
    :func:`normalize`-d texts, pair segments joined with :data:`SEGMENT_JOIN`; ties go to the
    first dev row. All pairs are scored (``process.cdist``: N_adv × N_dev, float32).

    Args:
        adv: AdvGLUE rows (the task's text columns).
        dev: GLUE dev rows (the task's text columns); its index labels are the dev indices.

    Returns:
        a frame aligned with ``adv``: ``source_index`` (dev index label of the best match),
        ``source_similarity`` (float, 0-100), ``source_segment_similarity`` (list of one
        ``fuzz.ratio`` per segment against the same match) and ``source_<column>`` (the
        matched dev text of each text column, unnormalised).
    """
    from rapidfuzz import fuzz, process

    cols = list(task.text_columns)
    if len(dev) == 0:
        raise DataError("cannot match AdvGLUE examples against an empty dev split")

    def joined(frame: pd.DataFrame) -> list[str]:
        return [SEGMENT_JOIN.join(normalize(str(t)) for t in row)
                for row in frame[cols].itertuples(index=False)]

    scores = process.cdist(joined(adv), joined(dev), scorer=fuzz.ratio, dtype=np.float32,
                           workers=1)
    best = scores.argmax(axis=1) if len(adv) else np.zeros(0, dtype=np.int64)
    out = pd.DataFrame(index=adv.index)
    out["source_index"] = [int(dev.index[j]) for j in best]
    out["source_similarity"] = [float(round(float(scores[i, j]), 2)) for i, j in enumerate(best)]
    out["source_segment_similarity"] = [
        [round(float(fuzz.ratio(normalize(str(adv[c].iloc[i])), normalize(str(dev[c].iloc[j])))),
               2) for c in cols]
        for i, j in enumerate(best)]
    for c in cols:
        out[f"source_{c}"] = [str(dev[c].iloc[j]) for j in best]
    return out


def word_diff(original: tuple[str, ...], adversarial: tuple[str, ...]
              ) -> tuple[list[int], int, int]:
    """Word-level comparison of two segment tuples.

    Returns:
        ``(changed, perturbed, num_words)``: indices of the segments whose :func:`words`
        differ; the word-level Levenshtein distance summed over segments (substituted,
        inserted and deleted words); and the word count it is relative to, the sum over the
        changed segments (all segments when none changed) of ``max(len(original words),
        len(adversarial words))``, so ``perturbed <= num_words``.
    """
    from rapidfuzz.distance import Levenshtein

    pairs = [(words(o), words(a)) for o, a in zip(original, adversarial)]
    changed = [k for k, (o, a) in enumerate(pairs) if o != a]
    perturbed = sum(Levenshtein.distance(o, a) for o, a in pairs)
    counted = changed or range(len(pairs))
    num_words = sum(max(len(pairs[k][0]), len(pairs[k][1])) for k in counted)
    return changed, int(perturbed), int(num_words)


@ATTACKS.register("advglue")
class AdvGLUE(Attack):
    """Evaluation on AdvGLUE's dev set (Wang et al. 2021): AUA = AdvGLUE accuracy."""

    name = "advglue"
    query_based = False  # a fixed set: no search, no queries
    example_split = "advglue-dev"
    protocol_neutral = ("data_dir",)  # where dev.json is read from; its sha256 is recorded
    description = ("AdvGLUE dev set (Wang et al. 2021): fixed adversarial examples, AUA = "
                   "accuracy on them; sst2, qnli, rte (no MRPC)")

    @dataclass
    class Config:
        """Options of :class:`AdvGLUE` (the run's ``--num-examples`` does not apply: AdvGLUE
        is a fixed evaluation set and is evaluated in full unless ``limit`` is set)."""

        threshold: float = param(DEFAULT_THRESHOLD, "minimum rapidfuzz similarity (0-100) of "
                                 "the best-matching GLUE dev example to use it as the "
                                 "example's original", min=0, max=100)
        limit: int | None = param(None, "evaluate only the first N AdvGLUE examples (None = "
                                  "all, the benchmark's definition)", min=1)
        data_dir: str | None = param(None, "mirror root holding advglue/dev.json (default: "
                                     "found like the GLUE mirror; none = the Hub)")

    def __init__(self, config=None) -> None:
        super().__init__(validate(config) if config is not None else None)

    def check_task(self, task: "Task") -> None:
        """Fail before any training on a task without an AdvGLUE split (MRPC).

        Raises:
            ConfigError: no AdvGLUE split, or ``config.data_dir`` has no ``advglue/dev.json``.
            DataError: ``config.data_dir`` is not a GLUE mirror.
        """
        if task.advglue is None:
            raise ConfigError(f"advglue: task {task.name!r} has no AdvGLUE split (AdvGLUE "
                              f"covers {', '.join(HUB_CONFIGS)}; use --attack textfooler)")
        if self.config.data_dir is not None and advglue_file(self.config.data_dir) is None:
            raise ConfigError(f"advglue: data_dir {self.config.data_dir!r} has no "
                              f"{ADVGLUE_FILE}")

    def resources(self) -> dict:
        """The AdvGLUE file (path and sha256, or the Hub id) and the matching rule."""
        import rapidfuzz

        path = advglue_file(self.config.data_dir)
        data = ({"source": f"local:{path}", "sha256": _file_sha256(path)} if path is not None
                else {"source": f"hub:{HUB_DATASET}"})
        return {"mode": "fixed-examples", "advglue": data,
                "matching": {"scorer": "rapidfuzz.fuzz.ratio", "rapidfuzz": rapidfuzz.__version__,
                             "text": "lower-cased \\w+ tokens, pair segments joined",
                             "against": "GLUE dev split of the task",
                             "threshold": self.config.threshold}}

    def examples(self, task: "Task", dev: pd.DataFrame, num_examples: int | None,
                 seed: int) -> pd.DataFrame:
        """All AdvGLUE dev examples of ``task`` (or the first ``config.limit``), with their
        GLUE matches; ``num_examples`` and ``seed`` are ignored (a fixed evaluation set).

        Returns:
            columns ``index`` (AdvGLUE ``idx``), the task's text columns (AdvGLUE text),
            ``label``, the columns of :func:`match_sources` and ``source_matched`` (bool:
            similarity ≥ ``config.threshold``).
        """
        self.check_task(task)
        adv, _ = load_advglue(task, self.config.data_dir)
        if self.config.limit is not None:
            adv = adv.head(self.config.limit)
        match = match_sources(adv, dev, task)
        out = pd.concat([adv.rename(columns={"idx": "index"}), match], axis=1)
        out["source_matched"] = out["source_similarity"] >= float(self.config.threshold)
        return out.reset_index(drop=True)

    def run(self, victim, task: "Task", examples: pd.DataFrame,
            progress: bool = False, chunk: int = 64) -> Iterator[ExampleResult]:
        """Classify each AdvGLUE example (and its matched GLUE source) once.

        Args:
            victim: a :class:`~robustbench_nlp.attacks.wrapper.ClassifierWrapper` (or any
                callable mapping a list of segment tuples to probabilities [N, C]).
            examples: rows from :meth:`examples`.
            progress: show a tqdm bar on stderr.
            chunk: examples classified per call (results are yielded chunk by chunk).

        Yields:
            one :class:`ExampleResult` per row: ``original`` = the matched GLUE source when
            ``source_matched`` else the AdvGLUE text; ``adversarial`` = the AdvGLUE text;
            ``pred_before`` = prediction on ``original``; ``pred_after`` = prediction on the
            AdvGLUE text; ``result`` = ``"failed"`` if ``pred_after == gold`` else
            ``"successful"``; ``queries`` = 2 with a source, else 1; ``perturbed_words`` /
            ``num_words`` from :func:`word_diff` against ``original``; ``attacked_segment``
            = the one changed segment of a matched pair, else ``None``; ``extra`` =
            ``source_index``, ``source_similarity``, ``source_matched`` and, for pairs,
            ``source_segment_similarity``.

        Raises:
            DataError: ``examples`` lacks the columns :meth:`examples` adds.
        """
        cols = list(task.text_columns)
        need = ["index", *cols, "label", "source_index", "source_similarity", "source_matched",
                *(f"source_{c}" for c in cols)]
        missing = [c for c in need if c not in examples.columns]
        if missing:
            raise DataError(f"advglue: examples lack column(s) {', '.join(missing)} "
                            "(build them with AdvGLUE.examples)")
        rows = examples.to_dict("records")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="advglue", unit="ex")
        try:
            for start in range(0, len(rows), max(1, int(chunk))):
                part = rows[start:start + max(1, int(chunk))]
                adv = [tuple(str(r[c]) for c in cols) for r in part]
                src = [tuple(str(r[f"source_{c}"]) for c in cols) for r in part]
                matched = [bool(r["source_matched"]) for r in part]
                queries = adv + [s for s, m in zip(src, matched) if m]
                preds = np.asarray(victim(queries)).argmax(axis=1)
                after, before_src = preds[:len(adv)], iter(preds[len(adv):])
                for r, a, s, m, p in zip(part, adv, src, matched, after):
                    yield self._result(task, r, a, s, m, int(p),
                                       int(next(before_src)) if m else int(p))
                if bar is not None:
                    bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def _result(task, row, adv, src, matched, pred_after, pred_before) -> ExampleResult:
        original = src if matched else adv
        changed, perturbed, num_words = word_diff(original, adv)
        gold = int(row["label"])
        extra = {"source_index": int(row["source_index"]),
                 "source_similarity": float(row["source_similarity"]),
                 "source_matched": bool(matched)}
        if task.is_pair and "source_segment_similarity" in row:
            extra["source_segment_similarity"] = [float(x) for x in
                                                  row["source_segment_similarity"]]
        return ExampleResult(
            index=int(row["index"]), original=original, adversarial=adv,
            attacked_segment=changed[0] if task.is_pair and len(changed) == 1 else None,
            gold=gold, pred_before=pred_before, pred_after=pred_after,
            result="failed" if pred_after == gold else "successful",
            queries=2 if matched else 1, num_words=num_words, perturbed_words=perturbed,
            extra=extra)
