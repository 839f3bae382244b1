"""The defense interface shared by every training-time defense.

A defense decides *which* parameters train (:meth:`Defense.setup`), *how* the optimizer treats
them (:meth:`Defense.make_optimizer`) and *what* loss one batch back-propagates
(:meth:`Defense.step`). The training loop (:mod:`robustbench_nlp.training`) is shared: it
zeroes gradients, calls :meth:`Defense.step`, clips and takes one optimizer step per batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustbench_nlp.config import param


@dataclass
class TrainConfig:
    """Training budget shared by all defenses (each defense sets its own defaults)."""

    epochs: int = param(1, "training epochs", min=1)
    batch_size: int = param(16, "examples per optimizer step", min=1)
    train_examples: int | None = param(8000, "training examples drawn (seeded) from the train "
                                       "split; None = the whole split", min=1)
    lr: float = param(3e-5, "learning rate of the defense's own parameters", min=0,
                      min_exclusive=True)
    head_lr: float = param(1e-2, "learning rate of the classification head", min=0)
    weight_decay: float = param(0.0, "AdamW weight decay", min=0)
    warmup_ratio: float = param(0.06, "fraction of steps with linear LR warm-up", min=0, max=1)
    max_grad_norm: float = param(1.0, "gradient clipping norm (0 = off)", min=0)


@dataclass(frozen=True)
class TaskBudget:
    """A defense's defaults on one task, overriding its ``Config`` defaults there.

    The training budget (``epochs``, ``train_examples``, learning rates) that is enough on
    SST-2 can leave a pair task's model predicting one class (issue #19). A defense lists
    the budgets it needs per task in :attr:`Defense.task_budgets`; a run on that task
    starts from them, and the user's ``--set`` options still win. The run records the
    resolved values (``config["defense"]``), so a budget change is a new training key.
    The shipped budgets were measured on the default backbone (all-MiniLM-L6-v2) and apply
    whatever ``--model`` is; another backbone may want its own ``--set lr=...``.

    Attributes:
        values: field name → default on this task (fields of the defense's ``Config``).
        evidence: the measurement the values rest on (probe command and numbers, or the
            docs section holding them).
    """

    values: dict[str, Any] = field(default_factory=dict)
    evidence: str = ""


class Defense(ABC):
    """Base class of defense plugins (registered in :data:`robustbench_nlp.registry.DEFENSES`).

    Subclasses set ``name``, ``description`` and ``Config`` (a dataclass derived from
    :class:`TrainConfig`) and implement :meth:`step`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = TrainConfig
    #: task name → :class:`TaskBudget`: per-task defaults over ``Config``'s (none = the same
    #: defaults on every task)
    task_budgets: ClassVar[dict[str, TaskBudget]] = {}

    @classmethod
    def task_defaults(cls, task: str | None) -> dict[str, Any]:
        """The ``Config`` defaults this defense uses on ``task`` instead of the dataclass
        defaults (``{}`` when it has none there); see :class:`TaskBudget`."""
        budget = cls.task_budgets.get(task or "")
        return dict(budget.values) if budget else {}

    def __init__(self, config=None) -> None:
        self.config = config if config is not None else self.Config()
        #: per-run statistics the defense wants stored (e.g. mean ‖δ‖/‖E‖)
        self.stats: dict[str, float] = {}

    # -- parameters ---------------------------------------------------------------------
    def setup(self, model: nn.Module, tokenizer, context: dict) -> None:
        """Prepare ``model`` in place (freeze, wrap with peft, ...). Default: train everything.

        Args:
            model: the :class:`~robustbench_nlp.backbones.TextClassifier`.
            tokenizer: its tokenizer.
            context: the backbone info of :func:`~robustbench_nlp.backbones.load_backbone`
                (``source``, ``pooling``, ...) plus ``task`` (the :class:`Task`).
        """
        for p in model.parameters():
            p.requires_grad_(True)

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups: the head at ``head_lr``, the rest at ``lr``."""
        head = [p for p in model.head.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = []
        if rest:
            groups.append({"params": rest, "lr": self.config.lr, "name": "defense"})
        if head:
            groups.append({"params": head, "lr": self.config.head_lr, "name": "head"})
        return groups

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW over :meth:`param_groups`."""
        return torch.optim.AdamW(self.param_groups(model), weight_decay=self.config.weight_decay)

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors that define the trained defense (saved as safetensors)."""
        return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                if p.requires_grad}

    # -- one batch ----------------------------------------------------------------------
    @abstractmethod
    def step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        """Forward and backward one batch; the caller steps the optimizer.

        Args:
            model: the :class:`~robustbench_nlp.backbones.TextClassifier` in train mode.
            batch: ``input_ids`` [B, L], ``attention_mask`` [B, L], optional
                ``token_type_ids`` [B, L], ``labels`` [B].

        Returns:
            scalar statistics of the step (e.g. ``{"loss": ...}``) for logging.
        """


def inputs(batch: dict) -> dict:
    """The model keyword arguments of a batch (everything but the labels)."""
    return {k: v for k, v in batch.items() if k != "labels"}


def count_trainable(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
