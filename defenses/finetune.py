"""Plain full fine-tuning: the undefended reference."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from robustbench_nlp.config import param
from robustbench_nlp.registry import DEFENSES

from .base import Defense, TrainConfig, inputs


@dataclass
class FinetuneConfig(TrainConfig):
    """Full fine-tuning budget (REFERENCE calibration: 2,000 SST-2 examples × 2 epochs at
    lr 3e-5 gave 80.6% dev accuracy with all-MiniLM-L6-v2)."""

    epochs: int = param(2, "training epochs", min=1)
    train_examples: int | None = param(2000, "training examples drawn (seeded) from the train "
                                       "split; None = the whole split", min=1)
    lr: float = param(3e-5, "learning rate of the backbone", min=0, min_exclusive=True)
    head_lr: float = param(1e-3, "learning rate of the classification head", min=0)
    weight_decay: float = param(0.01, "AdamW weight decay", min=0)


@DEFENSES.register("finetune")
class Finetune(Defense):
    """Full fine-tuning of backbone and head on clean data: L = CE(f_θ(x), y)."""

    name = "finetune"
    description = "plain full fine-tuning (undefended reference)"
    Config = FinetuneConfig

    def step(self, model, batch) -> dict[str, float]:
        loss = F.cross_entropy(model(**inputs(batch)), batch["labels"])
        loss.backward()
        return {"loss": loss.item()}
