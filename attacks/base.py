"""The attack interface: an attack turns dev examples into per-example results.

Result types follow TextAttack (``textattack.attack_results``): *successful* (prediction
flipped), *failed* (no adversarial example found), *skipped* (the model was already wrong on
the clean input, so it is not attacked).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar, Iterator

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

RESULT_TYPES = ("successful", "failed", "skipped")


@dataclass
class ExampleResult:
    """The outcome of attacking one example.

    Attributes:
        index: row index of the example in its evaluation split.
        original: the clean segments (one, or two for sentence-pair tasks).
        adversarial: the perturbed segments (equal to ``original`` when nothing changed).
        attacked_segment: index into ``original`` of the segment the attack may modify, or
            ``None`` when every segment may be modified.
        gold: gold label id.
        pred_before: prediction on the clean input.
        pred_after: prediction on ``adversarial``.
        result: one of :data:`RESULT_TYPES`.
        queries: victim-model queries spent on this example (0 when skipped).
        num_words: words in the modifiable segment(s) (textattack's word split).
        perturbed_words: words changed.
        extra: attack-specific fields (e.g. AdvGLUE's matched source sentence).
    """

    index: int
    original: tuple[str, ...]
    adversarial: tuple[str, ...]
    attacked_segment: int | None
    gold: int
    pred_before: int
    pred_after: int
    result: str
    queries: int
    num_words: int
    perturbed_words: int
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.result not in RESULT_TYPES:
            raise ValueError(f"result must be one of {RESULT_TYPES}, got {self.result!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Attack(ABC):
    """Base class of attack plugins (registered in :data:`robustbench_nlp.registry.ATTACKS`).

    Subclasses set ``name``, ``description`` and ``Config`` (a dataclass of options), and
    implement :meth:`run`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type]
    #: True for an attack that searches with model queries (TextFooler). False for a fixed
    #: adversarial set (AdvGLUE): every example counts as attacked, so the run records no
    #: average queries and no clean accuracy on the attacked set (both would be artefacts).
    query_based: ClassVar[bool] = True
    #: True for an attack whose adversarial examples are word swaps of the original (counted
    #: for polarity-reversing swaps, the invalid-swap rate)
    word_swaps: ClassVar[bool] = False
    #: the stored rows determine the robustness curves (:mod:`robustbench_nlp.curves`);
    #: False for the ensemble
    derived_curves: ClassVar[bool] = True
    #: the split :meth:`examples` draws from (part of the attack protocol)
    example_split: ClassVar[str] = "validation"
    #: options that do not change what the attack does (where a resource is read from, ...):
    #: left out of the protocol (:meth:`protocol_options`)
    protocol_neutral: ClassVar[tuple[str, ...]] = ()
    #: the value an option had *before it existed*, for runs stored without it (e.g. a new
    #: constraint that older runs did not apply), so an older run keeps its protocol when
    #: the option's default changes
    absent_options: ClassVar[dict] = {}

    def __init__(self, config=None) -> None:
        self.config = config if config is not None else self.Config()

    def check_task(self, task: "Task") -> None:
        """Raise :class:`~robustbench_nlp.errors.ConfigError` if ``task`` is unsupported.

        Called before any training, so a bad combination fails fast.
        """

    def resources(self) -> dict:
        """Names/fingerprints of the resources this attack uses (stored with the run)."""
        return {}

    def protocol_options(self, task: "Task") -> dict:
        """The resolved options that shape this attack's results on ``task``: every config
        field except :attr:`protocol_neutral` (part of the attack protocol,
        :mod:`robustbench_nlp.attacks.protocol`). Subclasses resolve task-dependent defaults
        (e.g. the attacked segment of a pair task)."""
        return {k: v for k, v in asdict(self.config).items() if k not in self.protocol_neutral}

    @classmethod
    def rows_summary(cls, rows: list[dict], options: dict | None = None) -> dict | None:
        """An attack-specific summary of a run's stored example rows, kept in the run's
        ``metrics.robustness["attack"]`` (e.g. the ensemble's breakdown by recipe); ``None``
        (the default) for none. ``options`` is the run's resolved attack options
        (``config["attack"]``; ``None`` when not recorded)."""
        return None

    def examples(self, task: "Task", dev: pd.DataFrame, num_examples: int | None,
                 seed: int) -> pd.DataFrame:
        """Choose the examples to attack: the first ``num_examples`` rows of ``dev``
        (TextAttack's default order), keeping the original row index in ``index``."""
        df = dev.reset_index(drop=False).rename(columns={"index": "index"})
        return df if num_examples is None else df.head(num_examples)

    @abstractmethod
    def run(self, victim, task: "Task", examples: pd.DataFrame,
            progress: bool = True) -> Iterator[ExampleResult]:
        """Attack ``examples`` (columns ``index``, the task's text columns, ``label``).

        Args:
            victim: a :class:`robustbench_nlp.attacks.wrapper.ClassifierWrapper`.
            task: the task (text columns, attacked segment).
            examples: rows to attack, in order.
            progress: show a progress bar.

        Yields:
            one :class:`ExampleResult` per row, in order.
        """
