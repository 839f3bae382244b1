"""An attack plugin from another package: textattack's Pruthi et al. (2019) typo attack.

``Pruthi2019`` (``textattack/attack_recipes/pruthi_2019.py``) swaps, deletes or inserts one
character, or hits a neighbouring QWERTY key, in at most one word of four letters or more,
with a greedy search. Built on :class:`robustbench_nlp.attacks.recipe.TextAttackRecipe`,
the plugin only names its components; the base does the goal function, the query budget,
the pair-task columns, per-example seeding and the stored rows. It registers through the
``robustbench_nlp.attacks`` entry-point group (``pyproject.toml``), so after
``pip install ./examples/external_attack`` it is listed by ``rbnlp list attacks`` and runs
with ``rbnlp run --attack typo``.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustbench_nlp.attacks.recipe import RecipeComponents, RecipeConfig, TextAttackRecipe
from robustbench_nlp.config import param


class TypoAttack(TextAttackRecipe):
    """One-word typo attack (textattack's ``Pruthi2019``)."""

    name = "typo"
    recipe = "Pruthi2019"
    description = "Pruthi et al. 2019: one character-level typo in at most max_words words"

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`TypoAttack`."""

        max_words: int = param(1, "most words with a typo (recipe: 1)", min=1)
        min_word_length: int = param(4, "only words this long get a typo (recipe: 4)", min=1)

    def components(self, victim, task, mode: str) -> RecipeComponents:
        from textattack.constraints.overlap import MaxWordsPerturbed
        from textattack.constraints.pre_transformation import (MinWordLength,
                                                               RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedySearch
        from textattack.transformations import (CompositeTransformation,
                                                WordSwapNeighboringCharacterSwap,
                                                WordSwapQWERTY,
                                                WordSwapRandomCharacterDeletion,
                                                WordSwapRandomCharacterInsertion)

        c = self.config
        transformation = CompositeTransformation([
            WordSwapNeighboringCharacterSwap(random_one=False, skip_first_char=True,
                                             skip_last_char=True),
            WordSwapRandomCharacterDeletion(random_one=False, skip_first_char=True,
                                            skip_last_char=True),
            WordSwapRandomCharacterInsertion(random_one=False, skip_first_char=True,
                                             skip_last_char=True),
            WordSwapQWERTY(random_one=False, skip_first_char=True, skip_last_char=True),
        ])
        constraints = [MinWordLength(min_length=int(c.min_word_length)), StopwordModification(),
                       MaxWordsPerturbed(max_num_words=int(c.max_words)), RepeatModification()]
        return RecipeComponents(transformation=transformation, constraints=constraints,
                                search=GreedySearch())
