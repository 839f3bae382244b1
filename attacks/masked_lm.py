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

#: the masked language model of textattack's BAE and BERT-Attack recipes
RECIPE_MASKED_LM = "bert-base-uncased"


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


_FAST_SWAP: list = []


def masked_lm_swap(**kwargs):
    """textattack's ``WordSwapMaskedLM(**kwargs)`` with two of its loops made cheaper and
    their output unchanged (the recipe fidelity tests compare with the stock class):

    * BERT-Attack, a word of several sub-word tokens: textattack scores every combination of
      the top-k tokens per piece with a cross-entropy perplexity, then calls ``sorted(...)``
      without using its result, so the candidates are the first ``max_candidates``
      one-word combinations in ``itertools.product`` order. Here the same combinations are
      walked in the same order and the walk stops at ``max_candidates``, with no loss
      computed (``benchmarks/attack_speed.py``: most of BERT-Attack's time was this loop).
    * BAE: the ranked vocabulary is read as a Python list instead of one tensor element at a
      time.

    Returns:
        an instance of a ``WordSwapMaskedLM`` subclass (defined on first use, so importing
        this module does not import textattack).
    """
    if not _FAST_SWAP:
        import itertools

        import torch
        from textattack.shared import utils
        from textattack.transformations import WordSwapMaskedLM

        class FastWordSwapMaskedLM(WordSwapMaskedLM):
            def _bert_attack_replacement_words(self, current_text, index, id_preds,
                                               masked_lm_logits):
                tok = self._lm_tokenizer
                masked = current_text.replace_word_at_index(index, tok.mask_token)
                current_ids = self._encode_text(masked.text)["input_ids"].tolist()[0]
                word_tokens = tok.encode(current_text.words[index], add_special_tokens=False)
                if tok.mask_token_id not in current_ids:  # truncated past max_length
                    return []
                start = current_ids.index(tok.mask_token_id)
                positions = list(range(start, min(start + len(word_tokens), self.max_length)))
                model_type = self._language_model.config.model_type
                if not positions:
                    return []
                if len(positions) == 1:
                    words = []
                    for i in id_preds[positions[0]].tolist():
                        token = tok.convert_ids_to_tokens(i)
                        if utils.is_one_word(token) and not utils.check_if_subword(
                                token, model_type, index == 0):
                            words.append(token)
                    return words
                words = []
                for pieces in itertools.product(*[id_preds[p].tolist() for p in positions]):
                    word = "".join(tok.convert_ids_to_tokens(list(pieces))).replace("##", "")
                    if utils.is_one_word(word):
                        words.append(word)
                        if len(words) >= self.max_candidates:
                            break
                return words

            def _bae_replacement_words(self, current_text, indices_to_modify):
                tok = self._lm_tokenizer
                model_type = self._language_model.config.model_type
                masked_texts = [current_text.replace_word_at_index(i, tok.mask_token).text
                                for i in indices_to_modify]
                out = []
                for s in range(0, len(masked_texts), self.batch_size):
                    inputs = self._encode_text(masked_texts[s:s + self.batch_size])
                    ids = inputs["input_ids"].tolist()
                    with torch.no_grad():
                        preds = self._language_model(**inputs)[0]
                    for j in range(len(ids)):
                        if tok.mask_token_id not in ids[j]:  # truncated past max_length
                            out.append([])
                            continue
                        m = ids[j].index(tok.mask_token_id)
                        probs = torch.softmax(preds[j, m], dim=0)
                        ranked = torch.argsort(probs, descending=True).tolist()
                        p = probs.tolist()
                        # textattack compares the float32 probabilities with the threshold
                        # cast to float32
                        thr = float(torch.tensor(self.min_confidence, dtype=probs.dtype))
                        top = []
                        for i in ranked:
                            word = tok.convert_ids_to_tokens(i)
                            if utils.check_if_subword(word, model_type, m == 1):
                                word = utils.strip_BPE_artifacts(word, model_type)
                            if (p[i] >= thr and utils.is_one_word(word)
                                    and not utils.check_if_punctuations(word)):
                                top.append(word)
                            if len(top) >= self.max_candidates or p[i] < thr:
                                break
                        out.append(top)
                return out

        _FAST_SWAP.append(FastWordSwapMaskedLM)
    return _FAST_SWAP[0](**kwargs)
