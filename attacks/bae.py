"""BAE (Garg & Ramakrishnan, EMNLP 2020) as textattack's ``BAEGarg2019`` recipe builds it
("BAE-R", replacement).

Components (``textattack/attack_recipes/bae_garg_2019.py``):

* transformation: ``WordSwapMaskedLM(method="bae", max_candidates=50, min_confidence=0.0)``
  (built by :func:`~robustbench_nlp.attacks.masked_lm.masked_lm_swap`: same candidates, faster)
  with the ``masked_lm`` option's model (:mod:`robustbench_nlp.attacks.masked_lm`);
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list),
  ``PartOfSpeech(allow_verb_noun_swap=True)``, ``UniversalSentenceEncoder(threshold=
  0.936338023, metric="cosine", compare_against_original=True, window_size=15,
  skip_text_shorter_than_window=True)``;
* search: ``GreedyWordSwapWIR(wir_method="delete")``.

Offline the POS tagger and USE are the substitutes of :mod:`robustbench_nlp.attacks.resources`.
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


@ATTACKS.register("bae")
class BAE(MaskedLMRecipe):
    """BERT-based adversarial examples: masked-LM replacements (``BAEGarg2019``)."""

    name = "bae"
    recipe = "BAEGarg2019"
    textattack_resources = ("use", "nltk_pos")
    description = ("BAE (Garg & Ramakrishnan 2020): masked-LM word replacements under POS "
                   "and USE (cosine 0.936) constraints")

    @dataclass
    class Config(MaskedLMConfig):
        """Options of :class:`BAE`."""

        max_candidates: int = param(50, "masked-LM candidates per word (recipe: 50)", min=1)
        use_threshold: float = param(0.936338023, "minimum cosine USE similarity over a "
                                     "15-word window (recipe: 0.936338023)", min=0, max=1)

    def planned_resources(self) -> dict:
        from . import resources as R

        use = R.USEm3Encoder(threshold=self.config.use_threshold, metric="cosine",
                             compare_against_original=True, window_size=15,
                             skip_text_shorter_than_window=True)
        pos = (R.SpacyPartOfSpeech(allow_verb_noun_swap=True).info()
               if self.resolved_mode() == "offline" else
               {"name": "PartOfSpeech", "tagger": "nltk", "tagset": "universal"})
        return {"masked_lm": self.masked_lm()[2], "sentence_encoder":
                R.sentence_encoder_info(use), "pos_tagger": pos,
                "stopwords": R.nltk_stopwords_info()}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``BAEGarg2019.build``'s components (module docstring)."""
        from textattack.constraints.pre_transformation import (RepeatModification,
                                                               StopwordModification)
        from textattack.search_methods import GreedyWordSwapWIR

        from . import resources as R

        c = self.config
        lm, lm_tok, lm_info = self.masked_lm()
        pos, pos_info = R.recipe_part_of_speech(mode, allow_verb_noun_swap=True)
        use, use_info = R.recipe_sentence_encoder(
            mode, threshold=c.use_threshold, metric="cosine", compare_against_original=True,
            window_size=15, skip_text_shorter_than_window=True)
        return RecipeComponents(
            transformation=masked_lm_swap(method="bae", masked_language_model=lm,
                                            tokenizer=lm_tok,
                                            max_candidates=int(c.max_candidates),
                                            min_confidence=0.0),
            constraints=[RepeatModification(), StopwordModification(), pos, use],
            search=GreedyWordSwapWIR(wir_method="delete"),
            resources={"masked_lm": lm_info, "sentence_encoder": use_info,
                       "pos_tagger": pos_info, "stopwords": R.nltk_stopwords_info()})
