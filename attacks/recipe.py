"""One base class for attacks built from textattack's recipe components.

A textattack recipe is goal function + constraints + transformation + search
(``textattack.Attack``). :class:`TextAttackRecipe` owns everything that is the same for every
recipe, so that a recipe module only names its components and its resources
(:meth:`TextAttackRecipe.components`):

* the goal function: ``UntargetedClassification`` against the batched, cached
  :class:`~robustbench_nlp.attacks.wrapper.ClassifierWrapper`, with the run's query budget;
* which segments of a sentence-pair example may be modified (``attacked_column``);
* the optional polarity constraint (``preserve_polarity``,
  :mod:`robustbench_nlp.attacks.polarity`);
* the resource mode (``"textattack"``: the recipe's own downloaded resources; ``"offline"``:
  the substitutes of :mod:`robustbench_nlp.attacks.resources`; ``"auto"``: textattack's when
  all of them are present locally);
* running: one :class:`~robustbench_nlp.attacks.base.ExampleResult` per example in
  textattack's result semantics, with the per-example records the robustness curves need
  (:mod:`robustbench_nlp.curves`), and the random state re-seeded from the example's index
  before each example, so that recipes with random transformations (DeepWordBug, TextBugger)
  give the same result for an example whatever the order, shard or resumption it is
  attacked in.

Pair tasks: by default (``attacked_column="all"``) every segment may be modified, which is
what textattack's recipes do on GLUE's column names (their ``InputColumnModification`` only
freezes a column named ``premise``; GLUE's MRPC/RTE/QNLI columns are ``sentence1``/
``sentence2`` and ``question``/``sentence``); ``attacked_column=<column>`` freezes the other
segment (the rule TextFooler's paper applies to premise/hypothesis). Perturbed-word
percentages then divide by the modifiable words: all words of the pair by default, as
textattack's ``AttackResult`` does.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Iterator

import numpy as np
import pandas as pd

from robustbench_nlp.config import param, validate
from robustbench_nlp.errors import ConfigError

from .base import Attack, ExampleResult

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

RESOURCE_MODES = ("auto", "textattack", "offline")
#: ``attacked_column`` value letting every segment of a pair be modified (the default)
ALL_SEGMENTS = "all"


@dataclass
class RecipeConfig:
    """Options every textattack recipe has (a recipe's ``Config`` subclasses this)."""

    resources: str = param("auto", "attack resources: the recipe's downloaded ones "
                           "(textattack), the offline substitutes, or auto",
                           choices=RESOURCE_MODES)
    query_budget: int | None = param(None, "most victim queries per example (None = "
                                     "unlimited, as the recipe); exhausting it = failed", min=1)
    attacked_column: str | None = param(ALL_SEGMENTS, "pair tasks: 'all' lets every segment "
                                        "be modified (stock textattack on GLUE's columns); a "
                                        "column name freezes the other segment")
    preserve_polarity: bool = param(False, "reject swaps that replace a word of the Hu & "
                                    "Liu opinion lexicon by one of the opposite polarity "
                                    "(label preservation for sentiment tasks)")


@dataclass
class RecipeComponents:
    """What a recipe module builds (:meth:`TextAttackRecipe.components`).

    Attributes:
        transformation: a ``textattack.transformations.Transformation``.
        constraints: the recipe's constraints, in the recipe's order (pre-transformation
            ones included; the base adds the column and polarity constraints).
        search: a ``textattack.search_methods.SearchMethod``.
        resources: run record of the resources used (names, versions, fingerprints).
        attack_class: the ``textattack.Attack`` (sub)class the recipe instantiates
            (``None``: ``textattack.Attack``).
    """

    transformation: object
    constraints: list
    search: object
    resources: dict = field(default_factory=dict)
    attack_class: type | None = None


class TextAttackRecipe(Attack):
    """Base of the attacks that run a textattack recipe (TextFooler, PWWS, DeepWordBug, ...).

    Subclasses set ``name``, ``description``, ``recipe`` (the textattack recipe class name,
    e.g. ``"PWWSRen2019"``), a ``Config`` dataclass subclassing :class:`RecipeConfig`,
    ``textattack_resources`` (the kinds of downloaded resource the recipe needs, checked by
    :func:`robustbench_nlp.attacks.resources.textattack_resource_present`) and implement
    :meth:`components`.
    """

    Config: ClassVar[type] = RecipeConfig
    #: textattack's recipe class (``textattack.attack_recipes.<recipe>``)
    recipe: ClassVar[str] = ""
    #: downloaded resources of the stock recipe ("embedding", "use", "nltk_pos", "wordnet",
    #: "sbert"); "auto" picks textattack's resources only when all are present
    textattack_resources: ClassVar[tuple[str, ...]] = ()
    protocol_neutral = ("resources",)
    word_swaps = True

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
                from .resources import textattack_resource_present

                mode = ("textattack" if all(textattack_resource_present(k)
                                            for k in self.textattack_resources) else "offline")
            self._mode = mode
        return self._mode

    def attacked_column(self, task: "Task") -> str | None:
        """The only modifiable segment's column, or ``None`` when every segment may be
        modified (single-sentence tasks; ``attacked_column="all"``). ``None`` as the option's
        value (stored by runs made before ``"all"`` existed) means the task's designated
        segment, which was the default then."""
        col = self.config.attacked_column
        if not task.is_pair or col == ALL_SEGMENTS:
            return None
        return task.attacked_column if col is None else col

    def protocol_options(self, task: "Task") -> dict:
        """Every option but ``resources`` (the resolved mode is in the resources record),
        with ``attacked_column`` resolved (:meth:`attacked_column`)."""
        opts = super().protocol_options(task)
        opts["attacked_column"] = self.attacked_column(task)
        return opts

    def check_task(self, task: "Task") -> None:
        col = self.config.attacked_column
        if col not in (None, ALL_SEGMENTS) and col not in task.text_columns:
            raise ConfigError(f"{self.name}: attacked_column {col!r} is not a text column of "
                              f"{task.name} ('all' or one of {', '.join(task.text_columns)})")
        self.check_resources()
        if self.config.preserve_polarity:
            from .polarity import load_opinion_lexicon

            load_opinion_lexicon()  # a missing lexicon fails now, not after training

    def check_resources(self) -> None:
        """Raise :class:`~robustbench_nlp.errors.ConfigError` now (before any training)
        when a resource the attack needs is unavailable. Cheap: nothing large is loaded."""

    def resources(self) -> dict:
        """Names and fingerprints of the resources used (stored with the run): the record
        of the last :meth:`build`, else :meth:`planned_resources`."""
        if self._resources is not None:
            return dict(self._resources)
        return self._with_polarity({"mode": self.resolved_mode(), **self.planned_resources()})

    def planned_resources(self) -> dict:
        """The resource record before :meth:`build` (loading nothing large)."""
        return {}

    def _with_polarity(self, info: dict) -> dict:
        if self.config.preserve_polarity:
            from .polarity import load_opinion_lexicon

            info["polarity_lexicon"] = dict(load_opinion_lexicon().source)
        return info

    # ------------------------------------------------------------------ building
    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """The recipe's transformation, constraints, search and resource record.

        Args:
            victim: the :class:`~robustbench_nlp.attacks.wrapper.ClassifierWrapper`
                (gradient-ranked searches need it).
            task: the task being attacked.
            mode: ``"textattack"`` or ``"offline"`` (:meth:`resolved_mode`).
        """
        raise NotImplementedError

    def build(self, victim, task: "Task"):
        """Build the ``textattack.Attack`` against ``victim`` for ``task``: the recipe's
        components, the base's column and polarity constraints, and
        ``UntargetedClassification`` with the query budget."""
        from .textattack_compat import import_textattack

        ta = import_textattack()
        from textattack.constraints.pre_transformation import InputColumnModification
        from textattack.goal_functions import UntargetedClassification

        self.check_task(task)
        c = self.config
        parts = self.components(victim, task, self.resolved_mode())
        info = {"mode": self.resolved_mode(), **parts.resources}
        constraints = list(parts.constraints)
        columns = list(task.text_columns)
        attacked = self.attacked_column(task)
        if attacked is not None:
            constraints.append(InputColumnModification(
                columns, {col for col in columns if col != attacked}))
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
        self._resources = info
        cls = parts.attack_class or ta.Attack
        return cls(goal, constraints, parts.transformation, parts.search)

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
        modifiable words (textattack's word split; every segment's unless one segment is
        attacked). Before each example ``random`` and ``numpy.random`` are seeded with
        :func:`example_seed` of its index. ``extra`` holds ``attack_seconds``,
        ``modified_indices``, when the search reported it, the last swap's sentence-encoder
        ``similarity_score``, and, for the robustness curves of :mod:`robustbench_nlp.curves`
        (derived later without new queries):

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
        is unchanged. Should the trace not match the result, ``min_budget`` is ``None`` and
        ``success_budgets`` absent.
        """
        attack = self.build(victim, task)
        rows = examples.to_dict("records")
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc=self.name, unit="ex")
        for row in rows:
            yield self.attack_one(attack, task, row)

    def attack_one(self, attack, task: "Task", row: dict) -> ExampleResult:
        """Attack one example (a row of :meth:`run`'s ``examples``) with the built
        ``attack``; see :meth:`run`."""
        from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                               SuccessfulAttackResult)
        from textattack.goal_function_results import GoalFunctionResultStatus
        from textattack.shared import AttackedText

        from robustbench_nlp.curves import success_budgets

        goal, search = attack.goal_function, attack.search_method
        succeeded = GoalFunctionResultStatus.SUCCEEDED
        columns = list(task.text_columns)
        attacked = self.attacked_column(task)
        seg = columns.index(attacked) if attacked is not None else None
        text = OrderedDict((col, str(row[col])) for col in columns)
        original = AttackedText(text)
        gold = int(row["label"])
        index = int(row["index"]) if "index" in row else -1
        trace: list = []

        def get_results(attacked_text_list, check_skip=False, _inner=goal.get_results):
            before = goal.num_queries
            results, search_over = _inner(attacked_text_list, check_skip=check_skip)
            trace.append((before, [(float(r.score), r.goal_status == succeeded)
                                   for r in results]))
            return results, search_over

        saved = goal.__dict__.get("get_results"), search.get_goal_results
        # init_attack_example calls goal.get_results; the search calls the bound method
        # textattack.Attack stored as search.get_goal_results: wrap both
        goal.get_results = search.get_goal_results = get_results
        seed_example(index)
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
        return ExampleResult(
            index=index,
            original=tuple(text.values()),
            adversarial=segments(adv_text),
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


def example_seed(index: int) -> int:
    """The random seed of example ``index`` (its row index in the split; ``-1`` for rows
    without one): ``index mod 2**32``."""
    return int(index) % 2 ** 32


def seed_example(index: int) -> None:
    """Seed ``random`` and ``numpy.random`` (what textattack's random transformations draw
    from) with :func:`example_seed` of ``index``; called before every example."""
    s = example_seed(index)
    random.seed(s)
    np.random.seed(s)


def segments(attacked_text) -> tuple[str, ...]:
    """The segments of a textattack ``AttackedText`` as a tuple of strings."""
    t = attacked_text.tokenizer_input
    return (t,) if isinstance(t, str) else tuple(t)


class WordEmbeddingRecipe(TextAttackRecipe):
    """A recipe that swaps words for their embedding neighbours (TextFooler, TextBugger,
    A2T): its ``Config`` has ``max_candidates`` and ``embedding`` (the offline embedding's
    name in :data:`robustbench_nlp.attacks.resources.EMBEDDINGS`)."""

    def _neighbours(self) -> int:
        """Neighbours kept per word in the embedding cache: at least ``max_candidates``."""
        from .resources import DEFAULT_NEIGHBOURS

        return max(DEFAULT_NEIGHBOURS, int(self.config.max_candidates))

    def check_resources(self) -> None:
        """Offline: fail now, not after training, on an unknown embedding name or missing
        inputs (e.g. no data mirror for the counter-fitting constraints); hashes small
        files only."""
        if self.resolved_mode() == "offline":
            from . import resources as R

            R.embedding_fingerprint(self.config.embedding, self._neighbours())

    def embedding_record(self) -> dict:
        """The word embedding's run record before :meth:`build` (loads nothing large)."""
        from . import resources as R

        if self.resolved_mode() != "offline":
            return R.textattack_embedding_info()
        spec = R.EMBEDDINGS.get(self.config.embedding)
        return {"name": self.config.embedding,
                "fingerprint": R.embedding_fingerprint(self.config.embedding,
                                                       self._neighbours()) if spec else None,
                "neighbours": self._neighbours(),
                "description": spec.description if spec else None}
