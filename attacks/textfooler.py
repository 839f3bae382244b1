"""TextFooler (Jin et al., AAAI 2020) as textattack's ``TextFoolerJin2019`` recipe builds it.

The attack is assembled component by component exactly as
``textattack/attack_recipes/textfooler_jin_2019.py`` does (``shared/REFERENCE.md``):

* goal: ``UntargetedClassification`` (optional query budget);
* search: ``GreedyWordSwapWIR(wir_method="delete")``;
* transformation: ``WordSwapEmbedding(max_candidates=50)``;
* constraints: ``RepeatModification``, ``StopwordModification`` with the recipe's own
  266-word list (read from the recipe's source, so it can never drift), the recipe's
  ``InputColumnModification(["premise", "hypothesis"], {"premise"})`` (a no-op on GLUE's
  column names: both segments of a pair may be modified, as with stock textattack; the
  ``attacked_column`` option freezes one, :mod:`robustbench_nlp.attacks.recipe`),
  ``WordEmbeddingDistance(min_cos_sim=0.5)``,
  ``PartOfSpeech(allow_verb_noun_swap=True)`` and the sentence encoder (angular similarity
  ≥ 0.840845057 over a 15-word window, compared with the previous text, skipped for texts
  shorter than the window).

Three of the recipe's resources must be downloaded (S3 / TF Hub / NLTK). ``resources``
chooses them: ``"textattack"`` uses textattack's own, ``"offline"`` the substitutes of
:mod:`robustbench_nlp.attacks.resources` (GloVe 50d on the counter-fitting vocabulary, counter-fitted
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
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustbench_nlp.config import param
from robustbench_nlp.registry import ATTACKS

from .recipe import (RESOURCE_MODES, RecipeComponents, RecipeConfig,  # noqa: F401
                     WordEmbeddingRecipe)

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task



def textfooler_stopwords() -> frozenset[str]:
    """TextFooler's 266 stop words, read from textattack's recipe source (``build``).

    Raises:
        RuntimeError: the recipe source no longer has a literal ``stopwords = set([...])``.
    """
    from robustbench_nlp.attacks.textattack_compat import import_textattack

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


@ATTACKS.register("textfooler")
class TextFooler(WordEmbeddingRecipe):
    """TextFooler word-substitution attack (textattack's ``TextFoolerJin2019`` recipe)."""

    name = "textfooler"
    recipe = "TextFoolerJin2019"
    textattack_resources = ("embedding", "use", "nltk_pos")
    #: runs stored before the polarity constraint existed did not apply it
    absent_options = {"preserve_polarity": False}
    description = ("TextFooler (Jin et al. 2020): greedy word-importance search, swaps with "
                   "embedding neighbours under POS, word-embedding and USE constraints")

    @dataclass
    class Config(RecipeConfig):
        """Options of :class:`TextFooler` (the number of examples is the caller's)."""

        max_candidates: int = param(50, "embedding neighbours tried per word (recipe: 50)",
                                    min=1)
        min_cos_sim: float = param(0.5, "minimum word-embedding cosine of a swap (recipe: 0.5)",
                                   min=0, max=1, min_exclusive=True)
        use_threshold: float = param(0.840845057, "minimum angular sentence-encoder "
                                     "similarity over a 15-word window", min=0, max=1)
        embedding: str = param("counterfitted-glove-50d-k1", "offline word embedding (a "
                               "name in robustbench_nlp.attacks.resources.EMBEDDINGS; "
                               "counterfitted-glove-50d = published counter-fitting "
                               "hyperparameters; glove-6b-50d = raw GloVe, whose neighbours "
                               "include antonyms)")

    def planned_resources(self) -> dict:
        """Names and fingerprints of the embedding, sentence encoder and POS tagger."""
        from . import resources as R

        if self.resolved_mode() == "offline":
            # the constructors load nothing (models are loaded on first use)
            use = R.USEm3Encoder(threshold=self.config.use_threshold)
            return {"embedding": self.embedding_record(),
                    "sentence_encoder": R.sentence_encoder_info(use),
                    "pos_tagger": R.SpacyPartOfSpeech(allow_verb_noun_swap=True).info()}
        return {"embedding": self.embedding_record(),
                "sentence_encoder": {"name": "UniversalSentenceEncoder",
                                     "model": "https://tfhub.dev/google/universal-sentence-"
                                              "encoder/3"},
                "pos_tagger": {"name": "PartOfSpeech", "tagger": "nltk", "tagset": "universal"}}

    def components(self, victim, task: "Task", mode: str) -> RecipeComponents:
        """``TextFoolerJin2019.build``'s components (module docstring)."""
        from textattack.constraints.pre_transformation import (
            InputColumnModification, RepeatModification, StopwordModification)
        from textattack.constraints.semantics import WordEmbeddingDistance
        from textattack.search_methods import GreedyWordSwapWIR
        from textattack.transformations import WordSwapEmbedding

        from . import resources as R

        c = self.config
        embedding, emb_info = R.recipe_word_embedding(mode, c.embedding, self._neighbours())
        pos, pos_info = R.recipe_part_of_speech(mode, allow_verb_noun_swap=True)
        use, use_info = R.recipe_sentence_encoder(
            mode, threshold=c.use_threshold, metric="angular", compare_against_original=False,
            window_size=15, skip_text_shorter_than_window=True)
        constraints = [
            RepeatModification(),
            StopwordModification(stopwords=set(textfooler_stopwords())),
            InputColumnModification(["premise", "hypothesis"], {"premise"}),
            WordEmbeddingDistance(embedding=embedding, min_cos_sim=float(c.min_cos_sim)),
            pos,
            use,
        ]
        return RecipeComponents(
            transformation=WordSwapEmbedding(max_candidates=int(c.max_candidates),
                                             embedding=embedding),
            constraints=constraints,
            search=GreedyWordSwapWIR(wir_method="delete"),
            resources={"embedding": emb_info, "sentence_encoder": use_info,
                       "pos_tagger": pos_info})
