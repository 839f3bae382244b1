"""BERT-Attack (Li et al., EMNLP 2020) as textattack's ``BERTAttackLi2020`` recipe builds it.

Components (``textattack/attack_recipes/bert_attack_li_2020.py``):

* transformation: ``WordSwapMaskedLM(method="bert-attack", max_candidates=8)`` (built by
  :func:`~robustbench_nlp.attacks.masked_lm.masked_lm_swap`: same candidates, faster) with the
  ``masked_lm`` option's model (:mod:`robustbench_nlp.attacks.masked_lm`);
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list),
  ``MaxWordsPerturbed(max_percent=0.4)``, ``UniversalSentenceEncoder(threshold=0.2,
  metric="cosine", compare_against_original=True, window_size=None)``;
* search: ``GreedyWordSwapWIR(wir_method="unk")``.

Offline USE is the numpy substitute of :mod:`robustbench_nlp.attacks.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.config import param
from robustbench_nlp.registry import ATTACKS

from .masked_lm import MaskedLMConfig, MaskedLMRecipe, masked_lm_swap
from .recipe import RecipeComponents

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task


@ATTACKS.register("bert-attack")
class BERTAttack(MaskedLMRecipe):
    """Masked-LM replacements of the most important words (``BERTAttackLi2020``)."""

    name = "bert-attack"
    recipe = "BERTAttackLi2020"
    textattack_resources = ("use",)
    description = ("BERT-Attack (Li et al. 2020): masked-LM (sub)word replacements, at most "
                   "40% of the words, USE cosine ≥ 0.2")

    @dataclass
    class Config(MaskedLMConfig):
        """Options of :class:`BERTAttack`."""

        max_candidates: int = param(8, "masked-LM candidates per word (recipe: 8)", min=1)
        max_percent: float = param(0.4, "most words perturbed, fraction (recipe: 0.4)",
                                   min=0, max=1, min_exclusive=True)
        use_threshold: float = param(0.2, "minimum cosine USE similarity to the original "
                                     "(recipe: 0.2)", min=0, max=1)

    def _use_kwargs(self) -> dict:
        return {"threshold": self.config.use_threshold, "metric": "cosine",
                "compare_against_original": True, "window_size": None,
                "skip_text_shorter_than_window": False}

    def planned_resources(self) -> dict:
        from . import resources as R

        use = R.USEm3Encoder(**self._use_kwargs())
        return {"masked_lm": self.masked_lm()[2],
                "sentence_encoder": R.sentence_encoder_info(use),
                "stopwords": R.nltk_stopwords_info()}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``BERTAttackLi2020.build``'s components (module docstring)."""
        from textattack.constraints.overlap import MaxWordsPerturbed
        from textattack.constraints.pre_transformation import (RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedyWordSwapWIR

        from . import resources as R

        c = self.config
        lm, lm_tok, lm_info = self.masked_lm()
        use, use_info = R.recipe_sentence_encoder(mode, **self._use_kwargs())
        return RecipeComponents(
            transformation=masked_lm_swap(method="bert-attack", masked_language_model=lm,
                                            tokenizer=lm_tok,
                                            max_candidates=int(c.max_candidates)),
            constraints=[RepeatModification(), StopwordModification(),
                         MaxWordsPerturbed(max_percent=float(c.max_percent)), use],
            search=GreedyWordSwapWIR(wir_method="unk"),
            resources={"masked_lm": lm_info, "sentence_encoder": use_info,
                       "stopwords": R.nltk_stopwords_info()})
