"""TextFooler (Jin et al., AAAI 2020) as textattack's ``TextFoolerJin2019`` recipe builds it.

The attack is assembled component by component exactly as
``textattack/attack_recipes/textfooler_jin_2019.py`` does (``shared/REFERENCE.md``):

* goal: ``UntargetedClassification`` (optional query budget);
* search: ``GreedyWordSwapWIR(wir_method="delete")``;
* transformation: ``WordSwapEmbedding(max_candidates=50)``;
* constraints: ``RepeatModification``, ``StopwordModification`` with the recipe's own
  266-word list (read from the recipe's source, so it can never drift), an
  ``InputColumnModification`` that leaves only the attacked segment modifiable (the recipe's
  premise/hypothesis rule, with our column names), ``WordEmbeddingDistance(min_cos_sim=0.5)``,
  ``PartOfSpeech(allow_verb_noun_swap=True)`` and the sentence encoder (angular similarity
  ≥ 0.840845057 over a 15-word window, compared with the previous text, skipped for texts
  shorter than the window).

Three of the recipe's resources must be downloaded (S3 / TF Hub / NLTK). ``resources``
chooses them: ``"textattack"`` uses textattack's own, ``"offline"`` the substitutes of
:mod:`robustbench_nlp.resources` (GloVe 50d on the counter-fitting vocabulary, counter-fitted
offline with the published procedure; USE multilingual v3 in numpy; spaCy tagging), ``"auto"`` textattack's when they are all present
locally (cached ``paragramcf``, ``tensorflow_hub``, NLTK's tagger data), else the offline
ones. :meth:`TextFooler.resources` names what was used; it is stored with every run.

Usage::

    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    attack = TextFooler(TextFooler.Config(query_budget=None))
    victim = ClassifierWrapper(model, tokenizer)
    rows = attack.examples(task, dev, num_examples=100, seed=0)
    results = list(attack.run(victim, task, rows))
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import logging
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import pandas as pd

from robustbench_nlp.config import param, validate
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.registry import ATTACKS

from .base import Attack, ExampleResult

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

RESOURCE_MODES = ("auto", "textattack", "offline")


def textfooler_stopwords() -> frozenset[str]:
    """TextFooler's 266 stop words, read from textattack's recipe source (``build``).

    Raises:
        RuntimeError: the recipe source no longer has a literal ``stopwords = set([...])``.
    """
    from robustbench_nlp.textattack_compat import import_textattack

    import_textattack()
    from textattack.attack_recipes import textfooler_jin_2019 as recipe

    tree = ast.parse(inspect.getsource(recipe))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == "stopwords" for t in node.targets)
                and node.value.args):
            words = ast.literal_eval(node.value.args[0])
            return frozenset(words)
    raise RuntimeError("could not find TextFooler's stop-word list in "
                       f"{recipe.__file__}")


def _textattack_resources_present() -> bool:
    """All of the recipe's own resources are available without a download."""
    from robustbench_nlp.textattack_compat import textattack_cache_dir

    if not (textattack_cache_dir() / "word_embeddings" / "paragramcf").is_dir():
        return False
    if importlib.util.find_spec("tensorflow_hub") is None:
        return False
    try:
        import nltk

        nltk.data.find("taggers/universal_tagset")
        try:
            nltk.data.find("taggers/averaged_perceptron_tagger_eng")
        except LookupError:
            nltk.data.find("taggers/averaged_perceptron_tagger")
    except LookupError:
        return False
    return True


@ATTACKS.register("textfooler")
class TextFooler(Attack):
    """TextFooler word-substitution attack (textattack's ``TextFoolerJin2019`` recipe)."""

    name = "textfooler"
    protocol_neutral = ("resources",)
    word_swaps = True
    #: runs stored before the polarity constraint existed did not apply it
    absent_options = {"preserve_polarity": False}
    description = ("TextFooler (Jin et al. 2020): greedy word-importance search, swaps with "
                   "embedding neighbours under POS, word-embedding and USE constraints")

    @dataclass
    class Config:
        """Options of :class:`TextFooler` (the number of examples is the caller's)."""

        resources: str = param("auto", "attack resources: the recipe's downloaded ones "
                               "(textattack), the offline substitutes, or auto",
                               choices=RESOURCE_MODES)
        query_budget: int | None = param(None, "most victim queries per example (None = "
                                         "unlimited, as the recipe); exhausting it = failed",
                                         min=1)
        max_candidates: int = param(50, "embedding neighbours tried per word (recipe: 50)",
                                    min=1)
        min_cos_sim: float = param(0.5, "minimum word-embedding cosine of a swap (recipe: 0.5)",
                                   min=0, max=1, min_exclusive=True)
        use_threshold: float = param(0.840845057, "minimum angular sentence-encoder "
                                     "similarity over a 15-word window", min=0, max=1)
        attacked_column: str | None = param(None, "pair tasks: the segment that may be "
                                            "modified (default: the task's)")
        embedding: str = param("counterfitted-glove-50d-k1", "offline word embedding (a "
                               "name in robustbench_nlp.resources.EMBEDDINGS; "
                               "counterfitted-glove-50d = published counter-fitting "
                               "hyperparameters; glove-6b-50d = raw GloVe, whose neighbours "
                               "include antonyms)")
        preserve_polarity: bool = param(False, "reject swaps that replace a word of the Hu & "
                                        "Liu opinion lexicon by one of the opposite polarity "
                                        "(label preservation for sentiment tasks)")

    def __init__(self, config=None) -> None:
        super().__init__(validate(config) if config is not None else None)
        self._mode: str | None = None
        self._resources: dict | None = None

    # ------------------------------------------------------------------ configuration
    def resolved_mode(self) -> str:
        """``"textattack"`` or ``"offline"`` (``"auto"`` resolved once)."""
        if self._mode is None:
            mode = self.config.resources
            if mode == "auto":
                mode = "textattack" if _textattack_resources_present() else "offline"
            self._mode = mode
        return self._mode

    def attacked_column(self, task: "Task") -> str | None:
        """The modifiable segment's column, or ``None`` when every segment is modifiable."""
        col = self.config.attacked_column
        if col is None:
            return task.attacked_column if task.is_pair else None
        return col

    def protocol_options(self, task: "Task") -> dict:
        """Every option but ``resources`` (the resolved mode is in the resources record),
        with ``attacked_column`` resolved to the task's default."""
        opts = super().protocol_options(task)
        opts["attacked_column"] = self.attacked_column(task)
        return opts

    def check_task(self, task: "Task") -> None:
        col = self.config.attacked_column
        if col is not None and col not in task.text_columns:
            raise ConfigError(f"textfooler: attacked_column {col!r} is not a text column of "
                              f"{task.name} ({', '.join(task.text_columns)})")
        if self.resolved_mode() == "offline":
            from robustbench_nlp import resources as R

            # fails now, not after training, on an unknown embedding name or missing inputs
            # (e.g. no data mirror for the counter-fitting constraints); hashes small files
            R.embedding_fingerprint(self.config.embedding, self._neighbours())
        if self.config.preserve_polarity:
            from .polarity import load_opinion_lexicon

            load_opinion_lexicon()  # a missing lexicon fails now, not after training

    def _neighbours(self) -> int:
        from robustbench_nlp.resources import DEFAULT_NEIGHBOURS

        return max(DEFAULT_NEIGHBOURS, int(self.config.max_candidates))

    def resources(self) -> dict:
        """Names and fingerprints of the embedding, sentence encoder and POS tagger."""
        if self._resources is not None:
            return dict(self._resources)
        mode = self.resolved_mode()
        if mode == "offline":
            from robustbench_nlp import resources as R

            spec = R.EMBEDDINGS.get(self.config.embedding)
            emb = {"name": self.config.embedding,
                   "fingerprint": R.embedding_fingerprint(self.config.embedding,
                                                          self._neighbours()) if spec else None,
                   "neighbours": self._neighbours(),
                   "description": spec.description if spec else None}
            # the constructors load nothing (models are loaded on first use)
            use = R.USEm3Encoder(threshold=self.config.use_threshold)
            return self._with_polarity(
                {"mode": mode, "embedding": emb,
                 "sentence_encoder": R.sentence_encoder_info(use),
                 "pos_tagger": R.SpacyPartOfSpeech(allow_verb_noun_swap=True).info()})
        return self._with_polarity(
            {"mode": mode, "embedding": _paragramcf_info(),
             "sentence_encoder": {"name": "UniversalSentenceEncoder",
                                  "model": "https://tfhub.dev/google/universal-sentence-encoder/3"},
             "pos_tagger": {"name": "PartOfSpeech", "tagger": "nltk", "tagset": "universal"}})

    def _with_polarity(self, info: dict) -> dict:
        """``info`` plus ``polarity_lexicon`` (the lexicon's source record: name, path,
        sha256 fingerprint) when ``preserve_polarity`` is on."""
        if self.config.preserve_polarity:
            from .polarity import load_opinion_lexicon

            info["polarity_lexicon"] = dict(load_opinion_lexicon().source)
        return info

    # ------------------------------------------------------------------ building
    def build(self, victim, task: "Task"):
        """Build the ``textattack.Attack`` against ``victim`` for ``task``.

        Args:
            victim: a :class:`~robustbench_nlp.attacks.wrapper.ClassifierWrapper`.
            task: the task (its text columns name the ``AttackedText`` segments).
        """
        from robustbench_nlp.textattack_compat import import_textattack

        ta = import_textattack()
        from textattack.constraints.pre_transformation import (
            InputColumnModification, RepeatModification, StopwordModification)
        from textattack.constraints.semantics import WordEmbeddingDistance
        from textattack.goal_functions import UntargetedClassification
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import WordSwapEmbedding

        self.check_task(task)
        c = self.config
        mode = self.resolved_mode()
        if mode == "offline":
            from robustbench_nlp import resources as R

            embedding, emb_info = R.load_word_embedding(c.embedding, self._neighbours())
            pos = R.SpacyPartOfSpeech(allow_verb_noun_swap=True)
            use = R.USEm3Encoder(threshold=c.use_threshold, metric="angular",
                                 compare_against_original=False, window_size=15,
                                 skip_text_shorter_than_window=True)
            info = {"mode": mode,
                    "embedding": {k: emb_info[k] for k in ("name", "fingerprint", "vocab_size",
                                                           "dim", "neighbours", "vocabulary",
                                                           "description", "counterfit")
                                  if k in emb_info},
                    "sentence_encoder": R.sentence_encoder_info(use),
                    "pos_tagger": pos.info()}
        else:
            from textattack.constraints.grammaticality import PartOfSpeech
            from textattack.constraints.semantics.sentence_encoders import (
                UniversalSentenceEncoder)
            from textattack.shared import WordEmbedding

            embedding = WordEmbedding.counterfitted_GLOVE_embedding()
            pos = PartOfSpeech(allow_verb_noun_swap=True)
            use = UniversalSentenceEncoder(threshold=c.use_threshold, metric="angular",
                                           compare_against_original=False, window_size=15,
                                           skip_text_shorter_than_window=True)
            from robustbench_nlp.resources import sentence_encoder_info

            info = {"mode": mode, "embedding": _paragramcf_info(),
                    "sentence_encoder": sentence_encoder_info(use),
                    "pos_tagger": {"name": "PartOfSpeech", "tagger": "nltk",
                                   "tagset": "universal", "allow_verb_noun_swap": True}}

        transformation = WordSwapEmbedding(max_candidates=int(c.max_candidates),
                                           embedding=embedding)
        columns = list(task.text_columns)
        attacked = self.attacked_column(task)
        frozen = {col for col in columns if attacked is not None and col != attacked}
        constraints = [
            RepeatModification(),
            StopwordModification(stopwords=set(textfooler_stopwords())),
            InputColumnModification(columns, frozen),
            WordEmbeddingDistance(embedding=embedding, min_cos_sim=float(c.min_cos_sim)),
            pos,
            use,
        ]
        if c.preserve_polarity:
            from .polarity import PolarityPreservation, load_opinion_lexicon

            lexicon = load_opinion_lexicon()
            constraints.append(PolarityPreservation(lexicon))
            info["polarity_lexicon"] = dict(lexicon.source)
        budget = float("inf") if c.query_budget is None else int(c.query_budget)
        ta_logger = logging.getLogger("textattack.shared.utils.install")
        level = ta_logger.level
        ta_logger.setLevel(logging.ERROR)  # "Unknown if model ... compatible" for our model
        try:
            with warnings.catch_warnings():  # textattack's validator calls logger.warn
                warnings.simplefilter("ignore", DeprecationWarning)
                goal = UntargetedClassification(victim, query_budget=budget,
                                                model_batch_size=max(256, victim.batch_size))
        finally:
            ta_logger.setLevel(level)
        search = GreedyWordSwapWIR(wir_method="delete")
        self._resources = info
        return ta.Attack(goal, constraints, transformation, search)

    # ------------------------------------------------------------------ running
    def run(self, victim, task: "Task", examples: pd.DataFrame,
            progress: bool = False) -> Iterator[ExampleResult]:
        """Attack each row of ``examples``; yields one :class:`ExampleResult` per row.

        ``progress`` shows a tqdm bar on stderr.

        Result semantics follow textattack: *skipped* when the clean prediction is already
        wrong (``queries`` 0, ``adversarial == original``); *successful* when the search
        flipped the prediction; *failed* otherwise, where ``adversarial`` is the search's
        final state (textattack's ``perturbed_result``: it keeps swaps that lowered the gold
        score, so it may differ from ``original`` while ``pred_after == gold``).
        ``perturbed_words`` counts textattack's ``modified_indices``; ``num_words`` counts the
        modifiable segment's words (textattack's word split). ``extra`` holds
        ``attack_seconds``, ``modified_indices``, when the search reported it, the last
        swap's sentence-encoder ``similarity_score``, and, for the robustness curves of
        :mod:`robustbench_nlp.curves` (derived later without new queries):

        * ``total_words``: textattack's word count over all segments
          (``len(AttackedText.words)``, what ``MaxWordsPerturbed`` counts), every example;
        * ``min_budget`` (attacked examples): the smallest query budget from which on the
          example is successful under every larger budget, ``None`` when it failed;
        * ``success_budgets`` (attacked examples): the closed ranges ``[lo, hi]`` (``hi``
          ``None``: unbounded) of query budgets under which the example is successful
          (:func:`robustbench_nlp.curves.success_budgets`). With ``query_budget`` B set, a
          budget b here means the attack under ``min(b, B)`` queries.

        Both come from a trace of the goal function's ``get_results`` calls (queries before
        each call; each candidate's score and success), logged by wrapping the calls for the
        duration of one example; the wrapper returns what the call returns, so the attack
        is unchanged. Should the trace not match the result (it cannot with
        ``GreedyWordSwapWIR``), ``min_budget`` is ``None`` and ``success_budgets`` absent.
        """
        from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                               SuccessfulAttackResult)
        from textattack.goal_function_results import GoalFunctionResultStatus
        from textattack.shared import AttackedText

        from robustbench_nlp.curves import success_budgets

        attack = self.build(victim, task)
        goal, search = attack.goal_function, attack.search_method
        succeeded = GoalFunctionResultStatus.SUCCEEDED

        def traced(trace: list, inner):
            """``inner`` (``goal.get_results``), appending to ``trace`` per call
            ``(queries_before, [(score, succeeded) per scored text])``."""

            def get_results(attacked_text_list, check_skip=False):
                before = goal.num_queries
                results, search_over = inner(attacked_text_list, check_skip=check_skip)
                trace.append((before, [(float(r.score), r.goal_status == succeeded)
                                       for r in results]))
                return results, search_over
            return get_results

        columns = list(task.text_columns)
        attacked = self.attacked_column(task)
        seg = columns.index(attacked) if attacked is not None else None
        rows = examples.to_dict("records")
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc="textfooler", unit="ex")
        for row in rows:
            text = OrderedDict((col, str(row[col])) for col in columns)
            original = AttackedText(text)
            gold = int(row["label"])
            trace: list = []
            saved = goal.__dict__.get("get_results"), search.get_goal_results
            # init_attack_example calls goal.get_results; the search calls the bound method
            # textattack.Attack stored as search.get_goal_results: wrap both
            goal.get_results = search.get_goal_results = traced(trace, goal.get_results)
            t0 = time.perf_counter()
            try:
                res = attack.attack(original, gold)
            finally:
                if saved[0] is None:
                    del goal.get_results
                else:
                    goal.get_results = saved[0]
                search.get_goal_results = saved[1]
            seconds = time.perf_counter() - t0
            if isinstance(res, SuccessfulAttackResult):
                kind = "successful"
            elif isinstance(res, SkippedAttackResult):
                kind = "skipped"
            elif isinstance(res, FailedAttackResult):
                kind = "failed"
            else:  # MaximizedAttackResult cannot occur with UntargetedClassification
                raise RuntimeError(f"unexpected textattack result {type(res).__name__}")
            adv_text = res.perturbed_result.attacked_text
            words = original.words_per_input
            num_words = len(words[seg]) if seg is not None else sum(len(w) for w in words)
            modified = sorted(int(i) for i in adv_text.attack_attrs.get("modified_indices", ()))
            if kind == "skipped":
                modified = []
            extra = {"attack_seconds": round(seconds, 3), "modified_indices": modified}
            sim = adv_text.attack_attrs.get("similarity_score")
            if sim is not None and kind != "skipped":
                extra["similarity_score"] = float(sim)
            extra["total_words"] = len(original.words)
            if kind != "skipped":
                try:
                    budgets = success_budgets(trace)
                except ValueError:
                    budgets = None
                tail = bool(budgets) and budgets[-1][1] is None
                q_end = trace[-1][0] + len(trace[-1][1]) if trace else None
                if budgets is None or tail != (kind == "successful") \
                        or q_end != int(res.num_queries):
                    extra["min_budget"] = None
                else:
                    extra["min_budget"] = budgets[-1][0] if tail else None
                    extra["success_budgets"] = budgets
            yield ExampleResult(
                index=int(row["index"]) if "index" in row else -1,
                original=tuple(text.values()),
                adversarial=_segments(adv_text),
                attacked_segment=seg,
                gold=gold,
                pred_before=int(res.original_result.output),
                pred_after=int(res.perturbed_result.output),
                result=kind,
                queries=0 if kind == "skipped" else int(res.num_queries),
                num_words=num_words,
                perturbed_words=len(modified),
                extra=extra,
            )


def _segments(attacked_text) -> tuple[str, ...]:
    t = attacked_text.tokenizer_input
    return (t,) if isinstance(t, str) else tuple(t)


def _paragramcf_info() -> dict:
    """Run-record description of textattack's counter-fitted embedding (file names+sizes)."""
    from robustbench_nlp.textattack_compat import textattack_cache_dir

    folder = textattack_cache_dir() / "word_embeddings" / "paragramcf"
    files = sorted((p.name, p.stat().st_size) for p in folder.glob("*") if p.is_file()) \
        if folder.is_dir() else []
    fp = hashlib.sha256(json.dumps(files).encode()).hexdigest() if files else None
    return {"name": "paragramcf", "source": "textattack S3 (counter-fitted paragram-sl999)",
            "fingerprint": fp}

