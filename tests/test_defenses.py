"""Defining properties of the defenses on the real all-MiniLM-L6-v2 backbone."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_nlp.config import build_config
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.perturbation import init_delta_l2
from robustbench_nlp.registry import DEFENSES
from robustbench_nlp.tasks import get_task


def make(name, minilm, **overrides):
    tok, model, info = minilm
    cls = DEFENSES.get(name)
    d = cls(build_config(cls.Config, overrides))
    d.setup(model, tok, {**info, "task": get_task("sst2")})
    return d, model


def one_step(defense, model, batch):
    opt = defense.make_optimizer(model)
    model.train()
    opt.zero_grad()
    stats = defense.step(model, batch)
    opt.step()
    return stats


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("name", ["peaft", "prompt-tuning"])
def test_prompt_defenses_freeze_backbone(name, minilm, sst2_batch):
    d, model = make(name, minilm)
    before = snapshot(model.base_encoder)
    prompt_before = model.encoder.get_prompt(1).detach().clone()
    head_before = model.head[1].weight.detach().clone()
    stats = one_step(d, model, sst2_batch)
    after = snapshot(model.base_encoder)
    assert before.keys() == after.keys() and len(before) > 50
    assert all(torch.equal(before[k], after[k]) for k in before), "a backbone weight changed"
    assert not torch.equal(prompt_before, model.encoder.get_prompt(1).detach())
    assert not torch.equal(head_before, model.head[1].weight.detach())
    # trainable = prompt (20 × 384) + head (384 × 2 + 2)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 20 * 384 + 770
    assert math.isfinite(stats["loss"])


def test_finetune_changes_backbone(minilm, sst2_batch):
    d, model = make("finetune", minilm)
    before = snapshot(model.base_encoder)
    one_step(d, model, sst2_batch)
    after = snapshot(model.base_encoder)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > 50


def test_delta0_formula():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    d, eps_init = 8, 0.6
    delta = init_delta_l2(mask, d, eps_init)
    assert delta.shape == (2, 5, 8)
    assert torch.all(delta[0, 3:] == 0)
    for i, q in enumerate([3, 5]):
        bound = eps_init / math.sqrt(q * d)
        real = delta[i, :q]
        assert real.abs().max() <= bound + 1e-7
        # uniform on [-bound, bound]: the extremes are approached
        assert real.abs().max() > 0.5 * bound
    assert torch.all(init_delta_l2(mask, d, 0.0) == 0)


def test_peaft_delta_inside_ball(minilm, sst2_batch):
    d, model = make("peaft", minilm, epsilon=0.05, adv_steps=3)
    model.train()
    embeds = model.word_embeddings(sst2_batch["input_ids"]).detach()
    delta, prompt = d.perturb(model, embeds, sst2_batch)
    eps = d.stats["epsilon_abs"]
    assert prompt is None
    assert delta.abs().max() <= eps + 1e-9
    assert torch.all(delta[sst2_batch["attention_mask"] == 0] == 0)
    # 3 sign steps of α = ε/2 from a tiny δ0 push many coordinates onto the ball's surface
    real = delta[sst2_batch["attention_mask"].bool()]
    assert real.abs().max() == pytest.approx(eps, rel=1e-5)
    assert (real.abs() > 0.99 * eps).float().mean() > 0.3


def test_peaft_attack_prompt(minilm, sst2_batch):
    d, model = make("peaft", minilm, attack_prompt_tokens=4)
    model.train()
    embeds = model.word_embeddings(sst2_batch["input_ids"]).detach()
    _, prompt = d.perturb(model, embeds, sst2_batch)
    assert prompt.shape == (4, 4, 384)
    stats = one_step(d, model, sst2_batch)
    assert math.isfinite(stats["loss_adv"])


def test_peaft_lambda0_equals_prompt_tuning(minilm, sst2_batch):
    from robustbench_nlp.backbones import load_backbone

    results = []
    for name, kw in (("peaft", {"adv_lambda": 0.0}), ("prompt-tuning", {})):
        torch.manual_seed(0)
        mm = load_backbone("minilm", 2)
        d, model = make(name, mm, **kw)
        torch.manual_seed(1)
        for _ in range(2):
            one_step(d, model, sst2_batch)
        results.append((model.encoder.get_prompt(1).detach(), model.head[1].weight.detach()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_invalid_hyperparameters():
    cls = DEFENSES.get("peaft")
    with pytest.raises(ConfigError, match="epsilon: -1.0 is out of range"):
        build_config(cls.Config, {"epsilon": "-1"})
    with pytest.raises(ConfigError, match="unknown parameter 'epsilonn'.*did you mean 'epsilon'"):
        build_config(cls.Config, {"epsilonn": "1"})
    with pytest.raises(ConfigError, match="adv_steps: expected int, got 'two'"):
        build_config(cls.Config, {"adv_steps": "two"})
    cfg = build_config(cls.Config, {"adv_steps": "3", "train_head": "false",
                                    "train_examples": "none"})
    assert cfg.adv_steps == 3 and cfg.train_head is False and cfg.train_examples is None
