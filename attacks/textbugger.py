"""TextBugger (Li et al., NDSS 2019) as textattack's ``TextBuggerLi2018`` recipe builds it.

Components (``textattack/attack_recipes/textbugger_li_2018.py``):

* transformation: ``CompositeTransformation`` of one random space insertion, one random
  character deletion, one neighbouring-character swap (each skipping the first and last
  character), homoglyph swaps, and ``WordSwapEmbedding(max_candidates=5)``;
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list),
  ``UniversalSentenceEncoder(threshold=0.8)`` (textattack's defaults: angular metric,
  compared with the original text, whole text, no window);
* search: ``GreedyWordSwapWIR(wir_method="delete")``.

Resources: the word embedding (textattack's counter-fitted paragram, or offline the
counter-fitted GloVe 50d of :mod:`robustbench_nlp.attacks.resources`) and USE (TF Hub, or
offline the numpy USE multilingual v3). The character bugs draw from ``random`` and
``numpy.random``, seeded per example (:func:`robustbench_nlp.attacks.recipe.seed_example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.config import param
from robustbench_nlp.registry import ATTACKS

from .recipe import RecipeComponents, RecipeConfig, WordEmbeddingRecipe

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

#: textattack's ``UniversalSentenceEncoder`` defaults where the recipe passes only a threshold
USE_DEFAULTS = {"metric": "angular", "compare_against_original": True, "window_size": None,
                "skip_text_shorter_than_window": False}


@ATTACKS.register("textbugger")
class TextBugger(WordEmbeddingRecipe):
    """Character and word bugs under a USE constraint (``TextBuggerLi2018``)."""

    name = "textbugger"
    recipe = "TextBuggerLi2018"
    textattack_resources = ("embedding", "use")
    description = ("TextBugger (Li et al. 2019): character bugs, homoglyphs and embedding "
                   "swaps under a USE similarity of 0.8")

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`TextBugger`."""

        max_candidates: int = param(5, "embedding neighbours tried per word (recipe: 5)",
                                    min=1)
        use_threshold: float = param(0.8, "minimum angular USE similarity to the original "
                                     "(recipe: 0.8)", min=0, max=1)
        embedding: str = param("counterfitted-glove-50d-k1", "offline word embedding (a "
                               "name in robustbench_nlp.attacks.resources.EMBEDDINGS)")

    def planned_resources(self) -> dict:
        from . import resources as R

        stop = R.nltk_stopwords_info()
        if self.resolved_mode() == "offline":
            use = R.USEm3Encoder(threshold=self.config.use_threshold, **USE_DEFAULTS)
            return {"embedding": self.embedding_record(),
                    "sentence_encoder": R.sentence_encoder_info(use), "stopwords": stop}
        return {"embedding": self.embedding_record(),
                "sentence_encoder": {"name": "UniversalSentenceEncoder",
                                     "model": "https://tfhub.dev/google/universal-sentence-"
                                              "encoder/3"},
                "stopwords": stop}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``TextBuggerLi2018.build``'s components (module docstring)."""
        from textattack.constraints.pre_transformation import (RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import (CompositeTransformation,
                                                WordSwapEmbedding, WordSwapHomoglyphSwap,
                                                WordSwapNeighboringCharacterSwap,
                                                WordSwapRandomCharacterDeletion,
                                                WordSwapRandomCharacterInsertion)

        from . import resources as R

        c = self.config
        embedding, emb_info = R.recipe_word_embedding(mode, c.embedding, self._neighbours())
        use, use_info = R.recipe_sentence_encoder(mode, threshold=c.use_threshold,
                                                  **USE_DEFAULTS)
        from .textattack_compat import offline_constructors

        with offline_constructors():
            homoglyphs = WordSwapHomoglyphSwap()
        transformation = CompositeTransformation([
            WordSwapRandomCharacterInsertion(random_one=True, letters_to_insert=" ",
                                             skip_first_char=True, skip_last_char=True),
            WordSwapRandomCharacterDeletion(random_one=True, skip_first_char=True,
                                            skip_last_char=True),
            WordSwapNeighboringCharacterSwap(random_one=True, skip_first_char=True,
                                             skip_last_char=True),
            homoglyphs,
            WordSwapEmbedding(max_candidates=int(c.max_candidates), embedding=embedding),
        ])
        return RecipeComponents(
            transformation=transformation,
            constraints=[RepeatModification(), StopwordModification(), use],
            search=GreedyWordSwapWIR(wir_method="delete"),
            resources={"embedding": emb_info, "sentence_encoder": use_info,
                       "stopwords": R.nltk_stopwords_info()})
