"""What BAE and BERT-Attack share: a masked language model proposing the swaps.

textattack's recipes load ``bert-base-uncased`` from the Hugging Face Hub
(``WordSwapMaskedLM(masked_language_model="bert-base-uncased")``). Here the model is the
``masked_lm`` option: a Hub id (the recipes' own by default; read from the local Hugging
Face cache when offline) or a local folder. A machine with neither fails before any training
with one line naming the missing model. The model's fingerprint (config and weight
checksum) is recorded with the run and its protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustbench_nlp.config import param

from .recipe import RecipeConfig, TextAttackRecipe
from .resources import RECIPE_MASKED_LM


@dataclass
class MaskedLMConfig(RecipeConfig):
    """Options of the masked-LM recipes."""

    masked_lm: str = param(RECIPE_MASKED_LM, "masked language model proposing swaps: a "
                           "Hub id or a local folder (recipes: bert-base-uncased)")


class MaskedLMRecipe(TextAttackRecipe):
    """Base of :class:`~robustbench_nlp.attacks.bae.BAE` and
    :class:`~robustbench_nlp.attacks.bert_attack.BERTAttack`: loads ``masked_lm``."""

    Config = MaskedLMConfig
    #: the model is recorded by fingerprint in the resources, not by path in the options
    protocol_neutral = ("resources", "masked_lm")

    def masked_lm(self):
        """``(model, tokenizer, info)`` of the ``masked_lm`` option
        (:func:`robustbench_nlp.attacks.resources.load_masked_lm`).

        Raises:
            ConfigError: the model cannot be loaded here.
        """
        from .resources import load_masked_lm

        return load_masked_lm(self.config.masked_lm)

    def check_resources(self) -> None:
        self.masked_lm()  # fails now (one line naming the model), not after training
