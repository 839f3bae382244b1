"""Carriers: the parameter-efficient modules a frozen-backbone defense trains, built by ``peft``.

PEAFT puts its trainable parameters in a soft prompt; the same objective (and its λ = 0
counterpart, plain tuning) can train any other ``peft`` method instead. A *carrier* names one:

=========  =============================================  =====================================
carrier    peft config (task type FEATURE_EXTRACTION)     trainable tensors on the encoder side
=========  =============================================  =====================================
prompt     ``PromptTuningConfig`` (Lester et al. 2021)    k virtual input tokens [k, d]
prefix     ``PrefixTuningConfig`` (Li & Liang 2021)        a key/value prefix per layer
                                                          [k, 2·layers·d] (optionally through
                                                          an MLP, ``prefix_projection``)
ptuning    ``PromptEncoderConfig`` (Liu et al. 2021,      k virtual input tokens produced by an
           P-tuning)                                      MLP or LSTM prompt encoder
lora       ``LoraConfig`` (Hu et al. 2021)                rank-r updates B·A of the target
                                                          linear layers (query, value for BERT)
=========  =============================================  =====================================

The adapter always wraps ``TextClassifier.encoder``; the classifier's forward supplies virtual
tokens / prefixes itself (see :class:`robustbench_nlp.backbones.TextClassifier`), and LoRA
modifies the base modules in place, so every carrier runs through the same forward and keeps
``token_type_ids``. PGD (PEAFT's inner max) perturbs the input word embeddings in every case.
"""

from __future__ import annotations

from torch import nn

from robustbench_nlp.errors import ConfigError

#: carrier names, the paper's first
CARRIERS = ("prompt", "prefix", "ptuning", "lora")

#: learning rate of the carrier's parameters when ``lr`` is left unset. prompt, prefix and
#: ptuning: the calibration in ``shared/REFERENCE.md`` (all-MiniLM-L6-v2, mean-pooled head,
#: SST-2, 1 epoch: prompt 1e-1 → 81.3% with 8,000 examples; prefix 1e-2 → 79.2% and P-tuning
#: 3e-3 → 77.3% with 2,000). lora: Hu et al. 2021, Table 9 (RoBERTa-base, SST-2, r = 8), not
#: calibrated on this backbone.
DEFAULT_LR = {"prompt": 1e-1, "prefix": 1e-2, "ptuning": 3e-3, "lora": 5e-4}

#: the config fields that only one carrier reads (checked by :func:`check_carrier_fields`)
CARRIER_FIELDS = {
    "prompt": ("prompt_init", "prompt_init_text"),
    "prefix": ("prefix_projection",),
    "ptuning": ("encoder_reparameterization",),
    "lora": ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"),
}
#: fields shared by several carriers
SHARED_FIELDS = {"num_virtual_tokens": ("prompt", "prefix", "ptuning"),
                 "encoder_hidden_size": ("ptuning", "prefix")}


def check_carrier_fields(cfg, defaults) -> None:
    """Reject carrier-specific hyperparameters set away from their default for another carrier.

    Args:
        cfg: a config with a ``carrier`` field and the fields of :data:`CARRIER_FIELDS`.
        defaults: a default-constructed instance of the same config class.

    Raises:
        ConfigError: e.g. ``lora_r applies to carrier=lora only (carrier is 'prompt')``.
    """
    owners = {f: (c,) for c, fields in CARRIER_FIELDS.items() for f in fields}
    owners.update(SHARED_FIELDS)
    for name, carriers in owners.items():
        if cfg.carrier not in carriers and getattr(cfg, name) != getattr(defaults, name):
            only = " or ".join(f"carrier={c}" for c in carriers)
            raise ConfigError(f"{name} applies to {only} only (carrier is {cfg.carrier!r})")
    if cfg.carrier == "prefix" and cfg.encoder_hidden_size is not None \
            and not cfg.prefix_projection:
        raise ConfigError("encoder_hidden_size applies to carrier=prefix only with "
                          "prefix_projection=true")


def peft_config(cfg, context: dict):
    """The ``peft`` config of ``cfg.carrier`` (task type FEATURE_EXTRACTION).

    Args:
        cfg: a :class:`~defenses.prompt_tuning.SoftPromptConfig` (``carrier`` and its fields).
        context: backbone info (``source``: tokenizer path for text initialisation) and
            ``task`` (its ``prompt_text`` is the default initialisation text).

    Returns:
        a ``PromptTuningConfig``, ``PrefixTuningConfig``, ``PromptEncoderConfig`` or
        ``LoraConfig``.

    Raises:
        ConfigError: unknown carrier.
    """
    import peft

    task_type = peft.TaskType.FEATURE_EXTRACTION
    if cfg.carrier == "prompt":
        kwargs = {}
        if cfg.prompt_init == "text":
            text = cfg.prompt_init_text or context["task"].prompt_text
            kwargs = {"prompt_tuning_init_text": text,
                      "tokenizer_name_or_path": context["source"]}
        # token_dim: the word-embedding size, narrower than hidden_size (peft's default) on
        # backbones with an embedding projection (ELECTRA)
        return peft.PromptTuningConfig(
            task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens,
            prompt_tuning_init=peft.PromptTuningInit[cfg.prompt_init.upper()],
            token_dim=context.get("embedding_size"), **kwargs)
    if cfg.carrier == "prefix":
        kwargs = {"encoder_hidden_size": cfg.encoder_hidden_size} \
            if cfg.encoder_hidden_size else {}
        return peft.PrefixTuningConfig(task_type=task_type,
                                       num_virtual_tokens=cfg.num_virtual_tokens,
                                       prefix_projection=cfg.prefix_projection, **kwargs)
    if cfg.carrier == "ptuning":
        kwargs = {"encoder_hidden_size": cfg.encoder_hidden_size} \
            if cfg.encoder_hidden_size else {}
        return peft.PromptEncoderConfig(
            task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens,
            token_dim=context.get("embedding_size"),
            encoder_reparameterization_type=cfg.encoder_reparameterization.upper(), **kwargs)
    if cfg.carrier == "lora":
        targets = [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()]
        return peft.LoraConfig(task_type=task_type, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                               lora_dropout=cfg.lora_dropout, bias="none",
                               target_modules=targets or None)
    raise ConfigError(f"unknown carrier {cfg.carrier!r} (use one of {', '.join(CARRIERS)})")


def attach_carrier(model: nn.Module, cfg, context: dict) -> None:
    """Freeze the backbone and wrap ``model.encoder`` with the ``peft`` adapter of ``cfg``.

    After this, the only trainable tensors are the carrier's (the peft prompt encoder, or
    the ``lora_A``/``lora_B`` matrices) and, when ``cfg.train_head``, the head's.

    Args:
        model: the :class:`~robustbench_nlp.backbones.TextClassifier` (its ``encoder`` is
            replaced by a ``peft.PeftModel``).
        cfg: the defense config (:func:`peft_config`).
        context: see :func:`peft_config`.

    Raises:
        ConfigError: unknown carrier, or LoRA target modules absent from the backbone.
    """
    from peft import get_peft_model

    pcfg = peft_config(cfg, context)
    try:
        model.encoder = get_peft_model(model.encoder, pcfg)  # freezes the base model
    except ValueError as e:
        if cfg.carrier != "lora":
            raise
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"lora_target_modules={cfg.lora_target_modules!r}: {first}") from None
    for p in model.head.parameters():
        p.requires_grad_(cfg.train_head)


def carrier_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters of the attached carrier (head excluded), by name.

    Args:
        model: a :class:`~robustbench_nlp.backbones.TextClassifier` after
            :func:`attach_carrier`.
    """
    head = {id(p) for p in model.head.parameters()}
    return {n: p for n, p in model.encoder.named_parameters()
            if p.requires_grad and id(p) not in head}
