"""The victim-model wrapper textattack queries: text in, class probabilities out.

textattack's own ``HuggingFaceModelWrapper`` pads every query to ``model_max_length`` (512 for
MiniLM, about 10x slower than dynamic padding on CPU) and asserts the model is a
``transformers.PreTrainedModel``, which rejects our :class:`TextClassifier` and any peft
``PeftModel`` (``shared/REFERENCE.md``). :class:`ClassifierWrapper` pads to the longest text of
each batch instead, sorts a call's texts by token length to reduce padding, and caches
repeated queries.

Texts that tokenise identically (``"War"`` and ``"war"`` for an uncased tokenizer) are one
model input, so they get one forward pass and the very same probabilities, as they do when
textattack's wrapper runs each text alone: without that, padding them into different
batches could make their scores differ in the last bits and turn a tie of the search into
a swap (a real difference from the stock recipe, found by the PWWS pair fidelity test).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
import torch

from robustbench_nlp.inference import encode, logits_of_rows
from robustbench_nlp.attacks.textattack_compat import import_textattack

_ta = import_textattack()


class ClassifierWrapper(_ta.models.wrappers.ModelWrapper):
    """Wrap a :class:`~robustbench_nlp.backbones.TextClassifier` and its tokenizer.

    Args:
        model: the classifier; ``model(input_ids=, attention_mask=, token_type_ids=)`` returns
            logits [B, C]. Its encoder may be a peft ``PeftModel``.
        tokenizer: the matching Hugging Face tokenizer.
        max_length: truncation length in tokens (pairs: ``longest_first``); ``None`` uses
            the tokenizer's ``model_max_length`` capped at 512.
        batch_size: texts per forward pass.
        cache_size: most queries kept in the probability cache (LRU); 0 disables it.

    Attributes:
        num_queries: texts received by :meth:`__call__` (cache hits included).
        num_forward: texts actually run through the model.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int | None = 128,
                 batch_size: int = 32, cache_size: int = 2 ** 16) -> None:
        self.model = model
        self.tokenizer = tokenizer
        if max_length is None:
            mml = getattr(tokenizer, "model_max_length", 512) or 512
            max_length = min(int(mml), 512)
        self.max_length = int(max_length)
        self.batch_size = max(1, int(batch_size))
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict = OrderedDict()  # token ids -> probabilities
        self._ids: OrderedDict = OrderedDict()  # text -> token ids
        self.num_queries = 0
        self.num_forward = 0

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (CPU for a parameterless model)."""
        try:
            return next(self.model.parameters()).device
        except StopIteration:  # pragma: no cover
            return torch.device("cpu")

    def reset_stats(self) -> None:
        """Zero the query counters (the cache is kept)."""
        self.num_queries = 0
        self.num_forward = 0

    def clear_cache(self) -> None:
        self._cache.clear()
        self._ids.clear()

    @staticmethod
    def _key(text) -> str | tuple[str, ...]:
        if isinstance(text, str):
            return text
        if isinstance(text, (tuple, list)) and all(isinstance(t, str) for t in text):
            return text[0] if len(text) == 1 else tuple(text)
        raise TypeError(f"expected a str or a tuple of str, got {type(text).__name__}")

    def _token_keys(self, keys: list) -> list[tuple]:
        """Token-id keys (input ids, token type ids) of text keys, through the text cache;
        single texts and pairs are tokenised separately."""
        out: dict = {}
        todo = []
        for k in dict.fromkeys(keys):
            if self.cache_size and k in self._ids:
                self._ids.move_to_end(k)
                out[k] = self._ids[k]
            else:
                todo.append(k)
        for group in ([k for k in todo if isinstance(k, str)],
                      [k for k in todo if not isinstance(k, str)]):
            if not group:
                continue
            if not isinstance(group[0], str) and any(len(t) != 2 for t in group):
                raise ValueError("text pairs must have exactly two segments")
            for k, row in zip(group, encode(self.tokenizer, group, self.max_length,
                                            flag_truncated=False)):
                out[k] = (tuple(row["input_ids"]), tuple(row.get("token_type_ids", ())))
                if self.cache_size:
                    self._ids[k] = out[k]
                    if len(self._ids) > self.cache_size:
                        self._ids.popitem(last=False)
        return [out[k] for k in keys]

    def _forward(self, token_keys: Sequence[tuple]) -> np.ndarray:
        """Probabilities (float64) for distinct token-id keys, input order:
        :func:`robustbench_nlp.inference.logits_of_rows` (length-sorted, dynamically padded
        batches), then a float64 softmax."""
        rows = [{"input_ids": list(ids), **({"token_type_ids": list(tt)} if tt else {})}
                for ids, tt in token_keys]
        logits = logits_of_rows(self.model, rows, self.tokenizer.pad_token_id,
                                batch_size=self.batch_size)
        self.num_forward += len(rows)
        return torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()

    def __call__(self, text_input_list: Iterable, **kwargs) -> np.ndarray:
        """Class probabilities for each input.

        Args:
            text_input_list: strings, or tuples of two strings for sentence-pair tasks
                (textattack's ``AttackedText.tokenizer_input``); a bare string counts as a
                one-element list (a bare tuple is read as a list of single texts).

        Returns:
            float64 array [N, C] of softmax probabilities, in input order (float64 so that
            textattack's "rows sum to 1 within 1e-6" check never re-applies a softmax).
            Inputs with the same token ids get identical rows.
        """
        if isinstance(text_input_list, str):
            text_input_list = [text_input_list]
        keys = [self._key(t) for t in text_input_list]
        self.num_queries += len(keys)
        if not keys:
            return np.zeros((0, 0), dtype=np.float64)
        tkeys = self._token_keys(keys)
        result: dict = {}
        missing = []
        for k in dict.fromkeys(tkeys):
            if self.cache_size and k in self._cache:
                self._cache.move_to_end(k)
                result[k] = self._cache[k]
            else:
                missing.append(k)
        if missing:
            for k, p in zip(missing, self._forward(missing)):
                result[k] = p
                if self.cache_size:
                    self._cache[k] = p
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return np.stack([result[k] for k in tkeys])

    def predict(self, texts: Iterable) -> np.ndarray:
        """Predicted label ids [N] for ``texts`` (same input forms as :meth:`__call__`)."""
        probs = self(list(texts))
        return probs.argmax(axis=1) if probs.size else np.zeros(0, dtype=np.int64)

    def _tokenize(self, inputs):
        """Token strings per input (textattack's ``ModelWrapper.tokenize``)."""
        out = []
        for t in inputs:
            k = self._key(t)
            ids = (self.tokenizer(k, truncation=True, max_length=self.max_length)["input_ids"]
                   if isinstance(k, str) else
                   self.tokenizer(k[0], k[1], truncation=True,
                                  max_length=self.max_length)["input_ids"])
            out.append(self.tokenizer.convert_ids_to_tokens(ids))
        return out

    def get_grad(self, text_input) -> dict:
        """Gradient of the loss at the model's own prediction with respect to the input word
        embeddings (textattack's ``ModelWrapper.get_grad``, used by
        ``GreedyWordSwapWIR(wir_method="gradient")``, e.g. A2T).

        Follows textattack's ``HuggingFaceModelWrapper.get_grad`` (cross-entropy against the
        argmax prediction, gradient taken at the output of the input-embedding layer), with
        two departures: the text is not padded to ``model_max_length`` (padding rows do not
        change the real tokens' gradients under the attention mask), and the model stays in
        eval mode (textattack switches to train mode, so dropout makes its word ranking
        random); the frozen embedding weights need no ``requires_grad``.

        Args:
            text_input: a string, or a tuple of two strings for sentence-pair tasks.

        Returns:
            ``{"ids": LongTensor [1, L], "gradient": float32 array [L, d]}`` for the L tokens
            of the tokenised input (special tokens included, no virtual tokens).
        """
        k = self._key(text_input)
        enc = (self.tokenizer(k, truncation=True, max_length=self.max_length,
                              return_tensors="pt") if isinstance(k, str) else
               self.tokenizer(k[0], k[1], truncation=True, max_length=self.max_length,
                              return_tensors="pt"))
        enc = {n: t.to(self.device) for n, t in enc.items()}
        embeddings = _input_embeddings(self.model)
        outputs: list[torch.Tensor] = []

        def hook(module, inputs, output):
            output = output.detach().requires_grad_(True)
            outputs.append(output)
            return output

        handle = embeddings.register_forward_hook(hook)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                logits = self.model(**enc)
                logits = getattr(logits, "logits", logits)
                loss = torch.nn.functional.cross_entropy(logits, logits.argmax(dim=1))
                (grad,) = torch.autograd.grad(loss, outputs[0])
        finally:
            handle.remove()
            self.model.train(was_training)
        return {"ids": enc["input_ids"].cpu(), "gradient": grad[0].float().cpu().numpy()}


def _input_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """The word-embedding module of ``model`` (a :class:`TextClassifier`, a peft model or a
    ``transformers`` model).

    Raises:
        TypeError: no ``get_input_embeddings`` is found.
    """
    for m in (model, getattr(model, "base_encoder", None), getattr(model, "encoder", None)):
        fn = getattr(m, "get_input_embeddings", None)
        if fn is not None:
            try:
                emb = fn()
            except (NotImplementedError, AttributeError):
                continue
            if emb is not None:
                return emb
    raise TypeError(f"cannot find the input embeddings of {type(model).__name__} "
                    "(no get_input_embeddings())")
