"""ROSE: robust selective fine-tuning (Jiang et al., EMNLP 2022).

Reference: jiangllan/ROSE, ``robustSSANs/utils/optimization.py`` (``SparseAdamW``),
``robustSSANs/utils/mytrainer.py`` and ``robustSSANs/models/modeling_roberta.py``.
Full fine-tuning in which, at every optimizer step after the warm-up, only a *selection* of
the candidate weight tensors is updated; the others keep their values bit for bit.

* **candidates** — the reference rule ``"layer" in name and "weight" in name`` applied to the
  backbone's parameter names (case-sensitive): every weight tensor of the transformer blocks,
  the blocks' LayerNorm gains included; biases, the embeddings (``embeddings.LayerNorm`` does
  not match), the pooler and the classification head are never masked and always train.
  Candidates without a gradient in a step (e.g. an unused pooler) are ignored, as in the
  reference.
* **first order** (``mode=first``): two forward passes with dropout p (``kl_dropout``,
  applied to every dropout of backbone and head, as the reference sets both dropout
  probabilities of the config), CE = ½(CE₁ + CE₂), symmetric KL = (KL(p‖q) + KL(q‖p))/4
  summed over the batch; saliency of each candidate tensor = ‖∇KL‖₂ (before clipping); the
  mask keeps tensors whose saliency s satisfies q_lower ≤ s ≤ q_upper, with q the
  ``torch.quantile`` (linear interpolation) of the candidates' saliencies at
  ``lower_percentile``/100 and ``upper_percentile``/100. The parameter update uses ∇CE only.
* **second order** (``mode=second``): one ordinary forward, CE; saliency
  |0.1·‖g_t‖/‖m_{t-1}‖ − 1| with g_t the (clipped) CE gradient and m_{t-1} Adam's first
  moment before the update; the same percentile rule. On the first step (no moment yet) every
  candidate is kept.
* **ensemble** (``mode=ensemble``, the default): the reference combines the two *binary*
  masks without normalisation, mask = (1 − γ)·second + γ·first ∈ {0, γ, 1 − γ, 1}; the mask
  value multiplies the tensor's update (a soft mask): 0 = frozen, 0.5 = half step.
* **optimizer** (:class:`SparseAdamW`, reference ``SparseAdamW`` semantics): for a candidate
  with mask k the gradient is replaced by k·g + (1 − k)·m before the moment updates, the
  Adam step and the decoupled weight decay are multiplied by k; a tensor with k = 0 is not
  written at all (its moments still move as in the reference). Bias-corrected step
  lr·√(1−β₂ᵗ)/(1−β₁ᵗ), ε added to √v, weight decay applied after the step — the reference's
  (Hugging Face AdamW) update.
* **warm-up** — masks are applied only from optimizer step W + 1 on (the reference's
  ``state["step"] > num_warmup_steps``, where W is the LR warm-up). A defense does not see the
  training loop's step count, so W is resolved in :meth:`ROSE.setup`:
  ``mask_warmup_steps`` if set, else ⌊warmup_ratio · ⌈n / batch_size⌉ · epochs⌋ — exactly the
  shared loop's LR warm-up — with n = min(train_examples, ``context["train_size"]``) (n =
  train_examples when the runner does not pass ``train_size``; it is smaller than every task's
  train split at the default 2,000). The reference scripts pass no warm-up (W = 0).

Per-task upper percentiles (``upper_percentile=None``) are the paper README's RoBERTa-base
values (first / second / ensemble): QNLI 70/40/90, QQP 70/60/75, RTE 80/60/80,
SST-2 60/30/40. ROSE does not evaluate MRPC; MRPC uses RTE's values, the other small
sentence-pair task (3.7k vs 2.5k training pairs, same input format). Lower percentile 0,
γ = 0.5, β₂ = 0.98, ε = 1e-6, weight decay 0.01 (not on biases/LayerNorm) as the reference;
the budget (2,000 examples × 2 epochs, lr 3e-5, head lr 1e-3) is the project's full
fine-tuning budget instead of the reference's 10 epochs at lr 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_nlp.config import param
from robustbench_nlp.distributed import sum_across_processes
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.registry import DEFENSES

from .base import Defense, inputs
from .finetune import FULL_FINETUNING_BUDGETS, FinetuneConfig
from .freelb import decay_param_groups

MODES = ("first", "second", "ensemble")

#: upper percentile per mode and task (RoBERTa-base, ROSE README); MRPC = RTE (our choice)
UPPER_PERCENTILE: dict[str, dict[str, float]] = {
    "first": {"qnli": 70, "qqp": 70, "rte": 80, "sst2": 60, "mrpc": 80},
    "second": {"qnli": 40, "qqp": 60, "rte": 60, "sst2": 30, "mrpc": 60},
    "ensemble": {"qnli": 90, "qqp": 75, "rte": 80, "sst2": 40, "mrpc": 80},
}


def is_candidate(name: str) -> bool:
    """The reference's ``check_apply_sparse``: ``"layer"`` and ``"weight"`` in the name."""
    return "layer" in name and "weight" in name


def percentile_mask(saliency: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """1.0 where q(lower) ≤ s ≤ q(upper) (``torch.quantile``, linear interpolation), else 0.

    Args:
        saliency: one value per candidate tensor [n].
        lower, upper: fractions in [0, 1].

    With n distinct values this keeps ⌊upper·(n−1)⌋ − ⌈lower·(n−1)⌉ + 1 tensors.
    """
    s = saliency.detach().float()
    q = torch.quantile(s, torch.tensor([lower, upper], dtype=s.dtype, device=s.device))
    return ((s >= q[0]) & (s <= q[1])).float()


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability of ``model`` (``nn.Dropout`` modules and the float
    ``dropout_prob`` attribute that SDPA attention layers read) to ``p``."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        if isinstance(getattr(module, "dropout_prob", None), float):
            module.dropout_prob = p


class SparseAdamW(torch.optim.AdamW):
    """AdamW whose candidate tensors are updated through a per-step saliency mask (ROSE).

    The reference's ``SparseAdamW`` update (module docstring); with every mask 1 it is the
    Hugging Face AdamW step. :meth:`step` computes the second-order mask itself (it needs the
    clipped gradient and m_{t−1}); the first-order saliency is handed over by
    :meth:`ROSE.step` through :attr:`first_order_saliency` before each step.

    Args:
        params: parameter groups (each may set ``weight_decay``).
        candidates: the maskable tensors, in a fixed order.
        mode: ``first``, ``second`` or ``ensemble``.
        lower, upper: percentile bounds as fractions in [0, 1].
        gamma: γ of the ensemble mask (1 − γ)·second + γ·first.
        num_warmup_steps: W; masks apply from step W + 1 on.
        stats: dict updated after each step (``selected_fraction``, ``mask_mean``,
            ``masking``) — the defense's ``stats``.
        lr, betas, eps, weight_decay: as :class:`torch.optim.AdamW`.
    """

    def __init__(self, params, *, candidates: list[torch.Tensor], mode: str = "ensemble",
                 lower: float = 0.0, upper: float = 1.0, gamma: float = 0.5,
                 num_warmup_steps: int = 0, stats: dict | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        if mode not in MODES:
            raise ValueError(f"unknown ROSE mode {mode!r}")
        self.candidates = list(candidates)
        self.mode, self.lower, self.upper, self.gamma = mode, lower, upper, gamma
        self.num_warmup_steps = num_warmup_steps
        self.stats = stats if stats is not None else {}
        self.num_steps = 0
        #: id(tensor) → ‖∇KL‖ for the next step (first-order and ensemble modes)
        self.first_order_saliency: dict[int, torch.Tensor] | None = None
        #: id(tensor) → mask value applied at the last step (candidates only)
        self.last_mask: dict[int, float] = {}

    def _second_order_mask(self, cands: list[torch.Tensor]) -> torch.Tensor:
        if not all(len(self.state[p]) for p in cands):
            return torch.ones(len(cands))
        g = torch.stack([p.grad.detach().float().norm() for p in cands])
        m = torch.stack([self.state[p]["exp_avg"].float().norm() for p in cands])
        return percentile_mask((0.1 * g / m - 1.0).abs().cpu(), self.lower, self.upper)

    def _first_order_mask(self, cands: list[torch.Tensor]) -> torch.Tensor:
        sal = self.first_order_saliency
        self.first_order_saliency = None
        if sal is None or any(id(p) not in sal for p in cands):
            raise RuntimeError("SparseAdamW: no first-order saliency for this step; the "
                               "ROSE defense's step() must run before optimizer.step()")
        s = torch.stack([sal[id(p)].detach().float().cpu() for p in cands])
        return percentile_mask(s, self.lower, self.upper)

    def compute_mask(self) -> dict[int, float]:
        """The mask of this step for the candidates that have a gradient (id → value)."""
        cands = [p for p in self.candidates if p.grad is not None]
        if not cands:
            return {}
        if self.mode == "first":
            mask = self._first_order_mask(cands)
        elif self.mode == "second":
            mask = self._second_order_mask(cands)
        else:
            first = self._first_order_mask(cands)
            mask = (1 - self.gamma) * self._second_order_mask(cands) + self.gamma * first
        return {id(p): float(v) for p, v in zip(cands, mask.tolist())}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.num_steps += 1
        mask = self.compute_mask()
        active = self.num_steps > self.num_warmup_steps
        if not active:
            mask = {k: 1.0 for k in mask}
        self.last_mask = mask
        if mask:
            values = list(mask.values())
            self.stats["selected_fraction"] = sum(v > 0 for v in values) / len(values)
            self.stats["mask_mean"] = sum(values) / len(values)
        self.stats["masking"] = float(active)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                t = float(state["step"])
                k = mask.get(id(p), 1.0)
                if k != 1.0:  # reference: a masked gradient is replaced by the momentum
                    grad = grad * k + exp_avg * (1.0 - k)
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                if k == 0.0:
                    continue  # unselected: the tensor is not written (no step, no decay)
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                p.addcdiv_(exp_avg if k == 1.0 else exp_avg * k, denom, value=-step_size)
                if wd > 0:
                    p.add_(p if k == 1.0 else p * k, alpha=-lr * wd)
        return loss


@dataclass
class ROSEConfig(FinetuneConfig):
    """ROSE hyperparameters (reference values; budget of full fine-tuning)."""

    mode: str = param("ensemble", "mask: first (dropout-KL saliency), second (Adam-moment "
                      "saliency) or ensemble of both", choices=MODES)
    lower_percentile: float = param(0.0, "keep tensors with saliency ≥ this percentile of the "
                                    "candidates", min=0, max=100)
    upper_percentile: float | None = param(None, "keep tensors with saliency ≤ this percentile "
                                           "(None = the ROSE README's RoBERTa-base value for "
                                           "the task and mode)", min=0, max=100)
    gamma: float = param(0.5, "γ of the ensemble mask (1-γ)·second + γ·first", min=0, max=1)
    kl_dropout: float = param(0.1, "dropout probability of the two forward passes (first "
                              "order and ensemble)", min=0, max=1)
    adam_beta1: float = param(0.9, "Adam β₁", min=0, max=1)
    adam_beta2: float = param(0.98, "Adam β₂", min=0, max=1)
    adam_epsilon: float = param(1e-6, "Adam ε (added to √v)", min=0)
    mask_warmup_steps: int | None = param(None, "optimizer steps before masking starts (None = "
                                          "the shared loop's LR warm-up)", min=0)

    def check(self) -> None:
        if self.upper_percentile is not None and self.lower_percentile > self.upper_percentile:
            raise ConfigError(f"lower_percentile: {self.lower_percentile!r} is above "
                              f"upper_percentile {self.upper_percentile!r}")
        if not self.adam_beta1 < 1 or not self.adam_beta2 < 1:
            raise ConfigError("adam_beta1/adam_beta2 must be < 1")


@DEFENSES.register("rose")
class ROSE(Defense):
    """ROSE: full fine-tuning that updates only salient-and-robust weight tensors."""

    name = "rose"
    description = ("ROSE: selective full fine-tuning; per step only the encoder weight tensors "
                   "whose dropout-KL / Adam-moment saliency lies in a percentile band update "
                   "(Jiang et al., EMNLP 2022)")
    Config = ROSEConfig
    task_budgets = FULL_FINETUNING_BUDGETS

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.optimizer: SparseAdamW | None = None
        self.candidate_names: list[str] = []
        self.upper: float | None = None
        self.warmup_steps = 0

    @property
    def uses_first_order(self) -> bool:
        return self.config.mode in ("first", "ensemble")

    def resolve_upper(self, task_name: str | None) -> float:
        """``upper_percentile`` or the README value for ``task_name`` and the mode.

        Raises:
            ConfigError: no value for the task, or lower above upper.
        """
        cfg = self.config
        upper = cfg.upper_percentile
        if upper is None:
            upper = UPPER_PERCENTILE[cfg.mode].get(task_name or "")
            if upper is None:
                raise ConfigError(f"rose: no reference upper_percentile for task {task_name!r}; "
                                  "set upper_percentile explicitly")
        if cfg.lower_percentile > upper:
            raise ConfigError(f"lower_percentile: {cfg.lower_percentile!r} is above "
                              f"upper_percentile {upper!r}")
        return float(upper)

    def resolve_warmup(self, context: dict) -> int:
        """W: ``mask_warmup_steps`` or the shared loop's LR warm-up steps (module docstring).

        Raises:
            ConfigError: the number of training rows is unknown (``train_examples`` None and
                no ``train_size`` in ``context``) and ``mask_warmup_steps`` is not set.
        """
        cfg = self.config
        if cfg.mask_warmup_steps is not None:
            return int(cfg.mask_warmup_steps)
        sizes = [n for n in (cfg.train_examples, context.get("train_size")) if n is not None]
        if not sizes:
            raise ConfigError("rose: cannot derive the warm-up without the training-set size; "
                              "set mask_warmup_steps (or train_examples)")
        total = math.ceil(min(sizes) / cfg.batch_size) * cfg.epochs
        return int(cfg.warmup_ratio * total)

    def setup(self, model, tokenizer, context) -> None:
        super().setup(model, tokenizer, context)
        task = context.get("task")
        self.upper = self.resolve_upper(getattr(task, "name", None))
        self.warmup_steps = self.resolve_warmup(context)
        prefix = "encoder."  # TextClassifier.encoder is the backbone
        self.candidate_names = [n for n, p in model.named_parameters()
                                if n.startswith(prefix) and is_candidate(n[len(prefix):])
                                and p.requires_grad]
        if self.uses_first_order:
            set_dropout(model, self.config.kl_dropout)
        self.stats.update({"upper_percentile": self.upper,
                           "lower_percentile": float(self.config.lower_percentile),
                           "mask_warmup_steps": float(self.warmup_steps),
                           "candidate_tensors": float(len(self.candidate_names))})

    def param_groups(self, model) -> list[dict]:
        return decay_param_groups(model, self.config.lr, self.config.head_lr,
                                  self.config.weight_decay)

    def make_optimizer(self, model) -> SparseAdamW:
        cfg = self.config
        params = dict(model.named_parameters())
        self.optimizer = SparseAdamW(
            self.param_groups(model), candidates=[params[n] for n in self.candidate_names],
            mode=cfg.mode, lower=cfg.lower_percentile / 100, upper=(100.0 if self.upper is None else self.upper) / 100,
            gamma=cfg.gamma, num_warmup_steps=self.warmup_steps, stats=self.stats,
            lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
            weight_decay=cfg.weight_decay)
        return self.optimizer

    def step(self, model, batch) -> dict[str, float]:
        labels = batch["labels"]
        if not self.uses_first_order:
            loss = F.cross_entropy(model(**inputs(batch)), labels)
            loss.backward()
            return {"loss": loss.item()}
        logits1 = model(**inputs(batch))
        logits2 = model(**inputs(batch))
        ce = 0.5 * (F.cross_entropy(logits1, labels) + F.cross_entropy(logits2, labels))
        lp, lq = F.log_softmax(logits1, -1), F.log_softmax(logits2, -1)
        kl = (F.kl_div(lp, lq, reduction="sum", log_target=True)
              + F.kl_div(lq, lp, reduction="sum", log_target=True)) / 4.0
        if self.optimizer is not None:
            cands = self.optimizer.candidates
            grads = torch.autograd.grad(kl, cands, retain_graph=True, allow_unused=True)
            # KL is summed over the batch: in a multi-process run the batch's ∇KL is the sum
            # of the processes' (a no-op in one process)
            grads = sum_across_processes(list(grads))
            self.optimizer.first_order_saliency = {
                id(p): g.detach().norm() for p, g in zip(cands, grads) if g is not None}
        ce.backward()
        return {"loss": ce.item(), "kl": kl.item()}
