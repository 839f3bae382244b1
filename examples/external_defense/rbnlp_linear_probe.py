"""An external defense plugin: a linear probe (frozen backbone, only the head trains).

Installed as its own package, it registers through the ``robustbench_nlp.defenses``
entry-point group (see ``pyproject.toml`` beside this file); ``rbnlp run --defense
linear-probe`` then finds it without any change to robustbench_nlp.
"""

from dataclasses import dataclass

import torch.nn.functional as F

from robustbench_nlp.config import param
from robustbench_nlp.defenses import Defense, TrainConfig


@dataclass
class LinearProbeConfig(TrainConfig):
    train_examples: int | None = param(2000, "training examples", min=1)
    head_lr: float = param(1e-2, "learning rate of the linear head", min=0, min_exclusive=True)


class LinearProbe(Defense):
    """Logistic-regression probe on frozen features: L = CE(W·pool(f_θ(x)) + b, y)."""

    name = "linear-probe"
    description = "linear probe: frozen backbone, only the classification head trains"
    Config = LinearProbeConfig

    def setup(self, model, tokenizer, context) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)

    def step(self, model, batch) -> dict[str, float]:
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"})
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        return {"loss": loss.item()}
