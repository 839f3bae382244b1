"""textattack's own side of the fidelity tests and of ``benchmarks/attack_speed.py``.

* :func:`stock_attack`: textattack's ``<Recipe>.build(wrapper)`` (the recipe's own code) with
  its downloaded resources replaced by the offline ones ours uses (counter-fitted GloVe-50d,
  the numpy USE, spaCy's tagger, all-MiniLM-L6-v2 as A2T's sentence encoder, a given masked
  LM for BAE and BERT-Attack), patched into the recipe's namespace only while it builds.
* :func:`stock_wrapper`: a minimal textattack ``ModelWrapper`` running one unpadded text at a
  time without a cache (textattack's ``HuggingFaceModelWrapper`` rejects our
  ``TextClassifier``: it asserts a ``transformers.PreTrainedModel``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from unittest import mock

import numpy as np
import torch

#: textattack's recipe module and class of each recipe
STOCK = {"textfooler": ("textfooler_jin_2019", "TextFoolerJin2019"),
         "pwws": ("pwws_ren_2019", "PWWSRen2019"),
         "deepwordbug": ("deepwordbug_gao_2018", "DeepWordBugGao2018"),
         "textbugger": ("textbugger_li_2018", "TextBuggerLi2018"),
         "bae": ("bae_garg_2019", "BAEGarg2019"),
         "bert-attack": ("bert_attack_li_2020", "BERTAttackLi2020"),
         "a2t": ("a2t_yoo_2021", "A2TYoo2021")}


def stock_wrapper(model, tokenizer, max_length: int = 128):
    """Minimal textattack ``ModelWrapper``: one text per forward pass, no padding, no cache;
    float64 softmax probabilities. ``get_grad`` follows textattack's
    ``HuggingFaceModelWrapper.get_grad`` (train mode, padding to ``max_length``, a backward
    hook on the embedding layer, loss at the argmax prediction); the tiny victim has no
    dropout, so train mode changes nothing."""
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    ta = import_textattack()

    def encode(text, **kwargs):
        return (tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt",
                          **kwargs) if isinstance(text, str) else
                tokenizer(text[0], text[1], truncation=True, max_length=max_length,
                          return_tensors="pt", **kwargs))

    class StockWrapper(ta.models.wrappers.ModelWrapper):
        def __init__(self) -> None:
            self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
            self.calls = 0

        def __call__(self, text_input_list):
            out = []
            with torch.inference_mode():
                for text in text_input_list:
                    out.append(torch.softmax(model(**encode(text)).double(), -1)[0].numpy())
                    self.calls += 1
            return np.stack(out)

        def get_grad(self, text_input):
            model.train()
            emb = model.base_encoder.get_input_embeddings()
            grads = []
            hook = emb.register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
            emb.weight.requires_grad_(True)
            model.zero_grad()
            enc = encode(text_input, padding="max_length")
            logits = model(**enc)
            torch.nn.functional.cross_entropy(logits, logits.argmax(dim=1)).backward()
            hook.remove()
            model.eval()
            return {"ids": enc["input_ids"], "gradient": grads[0][0].numpy()}

        def _tokenize(self, inputs):
            return [tokenizer.convert_ids_to_tokens(encode(x)["input_ids"][0]) for x in inputs]

    return StockWrapper()


def _stock_sbert(model_name, **kw):
    from textattack.constraints.semantics.sentence_encoders import SBERT

    return SBERT(model_name=model_name, **kw)


def stock_attack(name: str, wrapper, masked_lm: str | None):
    """textattack's own ``<Recipe>.build(wrapper)`` with the offline resources ours uses
    (the monkeypatching of ``tests/test_recipes.py``)."""
    from textattack.shared import WordEmbedding

    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.textattack_compat import offline_constructors
    from robustbench_nlp.attacks.textbugger import USE_DEFAULTS

    module, cls = STOCK[name]
    recipe = importlib.import_module(f"textattack.attack_recipes.{module}")
    emb, _ = R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    with contextlib.ExitStack() as stack:
        patch = lambda *a: stack.enter_context(mock.patch.object(*a))  # noqa: E731
        patch(WordEmbedding, "counterfitted_GLOVE_embedding", staticmethod(lambda: emb))
        if hasattr(recipe, "UniversalSentenceEncoder"):
            patch(recipe, "UniversalSentenceEncoder",
                  lambda **kw: R.USEm3Encoder(**{**USE_DEFAULTS, **kw}))
        if hasattr(recipe, "PartOfSpeech"):
            patch(recipe, "PartOfSpeech", R.SpacyPartOfSpeech)
        if hasattr(recipe, "SBERT"):
            patch(recipe, "SBERT",
                  lambda model_name, **kw: _stock_sbert(R.offline_sbert_model(), **kw))
        if hasattr(recipe, "WordSwapMaskedLM") and masked_lm is not None:
            lm, lm_tok, _ = R.load_masked_lm(masked_lm)
            patch(recipe, "WordSwapMaskedLM", functools.partial(
                recipe.WordSwapMaskedLM, masked_language_model=lm, tokenizer=lm_tok))
        stack.enter_context(offline_constructors())
        return getattr(recipe, cls).build(wrapper)
