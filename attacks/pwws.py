"""PWWS (Ren et al., ACL 2019) as textattack's ``PWWSRen2019`` recipe builds it.

Components (``textattack/attack_recipes/pwws_ren_2019.py``):

* transformation: ``WordSwapWordNet()`` (WordNet synonyms of each word, any part of speech);
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list);
* search: ``GreedyWordSwapWIR("weighted-saliency")`` (probability-weighted word saliency).

Resources: WordNet 3.0 and NLTK's stop words, read through NLTK: the data mirror's
``nltk_data`` (put first on NLTK's path) or NLTK's own downloads. Both modes read the same
corpus, so ``resources`` only changes the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.registry import ATTACKS

from .recipe import RecipeComponents, RecipeConfig, TextAttackRecipe

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task


@ATTACKS.register("pwws")
class PWWS(TextAttackRecipe):
    """Probability Weighted Word Saliency: WordNet synonym swaps (``PWWSRen2019``)."""

    name = "pwws"
    recipe = "PWWSRen2019"
    textattack_resources = ("wordnet",)
    description = ("PWWS (Ren et al. 2019): WordNet synonym swaps ordered by probability-"
                   "weighted word saliency")

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`PWWS` (the recipe has no parameters of its own)."""

    def check_resources(self) -> None:
        from .resources import wordnet_info

        wordnet_info()  # a missing WordNet fails now, not after training

    def planned_resources(self) -> dict:
        from .resources import nltk_stopwords_info, wordnet_info

        return {"wordnet": wordnet_info(), "stopwords": nltk_stopwords_info()}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``PWWSRen2019.build``'s components (module docstring)."""
        from textattack.constraints.pre_transformation import (RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import WordSwapWordNet

        from .textattack_compat import offline_constructors

        resources = self.planned_resources()
        with offline_constructors():
            transformation = WordSwapWordNet()
        return RecipeComponents(
            transformation=transformation,
            constraints=[RepeatModification(), StopwordModification()],
            search=GreedyWordSwapWIR("weighted-saliency"),
            resources=resources)
