"""Plain soft prompt tuning (Lester et al., EMNLP 2021) through ``peft``.

The backbone is frozen; k virtual tokens (a ``peft`` ``PromptTuningConfig`` prompt, an
``nn.Embedding(k, d)``) are prepended to the input embeddings and trained with the
classification head. This is PEAFT with λ = 0 and the undefended reference for prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from robustbench_nlp.config import param
from robustbench_nlp.registry import DEFENSES

from .base import Defense, TrainConfig, inputs


@dataclass
class SoftPromptConfig(TrainConfig):
    """Soft-prompt hyperparameters; defaults from the calibration in ``shared/REFERENCE.md``
    (20 text-initialised virtual tokens, prompt lr 0.1, head lr 0.01, 8,000 SST-2 examples:
    81.3% dev accuracy with a mean-pooled all-MiniLM-L6-v2)."""

    num_virtual_tokens: int = param(20, "k, virtual tokens of the defense soft prompt", min=1)
    prompt_init: str = param("text", "prompt initialisation (peft PromptTuningInit)",
                             choices=("text", "random", "sample_vocab"))
    prompt_init_text: str = param("", "text whose token embeddings initialise the prompt "
                                  "(prompt_init=text); empty = the task's own prompt text")
    train_head: bool = param(True, "train the classification head (False freezes it)")
    lr: float = param(0.1, "learning rate of the soft prompt", min=0, min_exclusive=True)


def add_soft_prompt(model: nn.Module, cfg: SoftPromptConfig, context: dict) -> None:
    """Freeze the backbone and attach a peft prompt-tuning adapter to ``model.encoder``.

    The adapter is a ``peft.PeftModel`` (task type FEATURE_EXTRACTION) whose prompt
    embedding [k, d] is the only trainable backbone-side tensor;
    :class:`~robustbench_nlp.backbones.TextClassifier` prepends it to every input.
    """
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    kwargs = {}
    if cfg.prompt_init == "text":
        text = cfg.prompt_init_text or context["task"].prompt_text
        kwargs = {"prompt_tuning_init_text": text, "tokenizer_name_or_path": context["source"]}
    pcfg = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION,
                              num_virtual_tokens=cfg.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit[cfg.prompt_init.upper()],
                              **kwargs)
    model.encoder = get_peft_model(model.encoder, pcfg)  # freezes the base model
    for p in model.head.parameters():
        p.requires_grad_(cfg.train_head)


@DEFENSES.register("prompt-tuning")
class PromptTuning(Defense):
    """Plain soft prompt tuning: L = CE(f_{p,θ}(x), y), only the prompt p (and head) trained."""

    name = "prompt-tuning"
    description = "soft prompt tuning (Lester et al. 2021), frozen backbone, no adversarial term"
    Config = SoftPromptConfig

    def setup(self, model, tokenizer, context) -> None:
        add_soft_prompt(model, self.config, context)

    def step(self, model, batch) -> dict[str, float]:
        loss = F.cross_entropy(model(**inputs(batch)), batch["labels"])
        loss.backward()
        return {"loss": loss.item()}
