"""DeepWordBug (Gao et al., 2018) as textattack's ``DeepWordBugGao2018`` recipe builds it.

Components (``textattack/attack_recipes/deepwordbug_gao_2018.py``):

* transformation: ``CompositeTransformation`` of neighbouring-character swap, random
  character substitution, deletion and insertion (``use_all_transformations=True``; else
  substitution alone);
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list),
  ``LevenshteinEditDistance(30)``;
* search: ``GreedyWordSwapWIR()`` (``"unk"`` word importance).

No downloaded resources besides NLTK's stop words. The character edits draw from
``numpy.random``, seeded per example (:func:`robustbench_nlp.attacks.recipe.seed_example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.config import param
from robustbench_nlp.registry import ATTACKS

from .recipe import RecipeComponents, RecipeConfig, TextAttackRecipe

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task


@ATTACKS.register("deepwordbug")
class DeepWordBug(TextAttackRecipe):
    """Character-level edits of the most important words (``DeepWordBugGao2018``)."""

    name = "deepwordbug"
    recipe = "DeepWordBugGao2018"
    description = ("DeepWordBug (Gao et al. 2018): character swaps, substitutions, deletions "
                   "and insertions under a Levenshtein budget of 30")

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`DeepWordBug`."""

        use_all_transformations: bool = param(True, "all four character edits (recipe: "
                                              "True); False: random substitution only")
        max_edit_distance: int = param(30, "most Levenshtein edits from the original "
                                       "(recipe: 30)", min=1)

    def planned_resources(self) -> dict:
        from .resources import nltk_stopwords_info

        return {"stopwords": nltk_stopwords_info()}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``DeepWordBugGao2018.build``'s components (module docstring)."""
        from textattack.constraints.overlap import LevenshteinEditDistance
        from textattack.constraints.pre_transformation import (RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import (CompositeTransformation,
                                                WordSwapNeighboringCharacterSwap,
                                                WordSwapRandomCharacterDeletion,
                                                WordSwapRandomCharacterInsertion,
                                                WordSwapRandomCharacterSubstitution)

        if self.config.use_all_transformations:
            transformation = CompositeTransformation([
                WordSwapNeighboringCharacterSwap(),
                WordSwapRandomCharacterSubstitution(),
                WordSwapRandomCharacterDeletion(),
                WordSwapRandomCharacterInsertion(),
            ])
        else:
            transformation = WordSwapRandomCharacterSubstitution()
        return RecipeComponents(
            transformation=transformation,
            constraints=[RepeatModification(), StopwordModification(),
                         LevenshteinEditDistance(int(self.config.max_edit_distance))],
            search=GreedyWordSwapWIR(),
            resources=self.planned_resources())
