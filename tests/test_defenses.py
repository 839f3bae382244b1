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
    d, model = make("peaft", minilm, epsilon=0.05, adv_steps=3, adv_lr=0.025)
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


def tiny_classifier():
    """A 1-layer random BERT (d = 16, no dropout) with the mean-pooled head: fast and
    deterministic."""
    from transformers import BertConfig, BertModel

    from robustbench_nlp.backbones import TextClassifier

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=64, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0))
    return TextClassifier(enc, 2, "mean", dropout=0.0)


TINY_CONTEXT = {"task": get_task("sst2"), "source": None}


def tiny_peaft(**overrides):
    """PEAFT (random-init soft prompt of 2 virtual tokens) on :func:`tiny_classifier`."""
    model = tiny_classifier()
    cls = DEFENSES.get("peaft")
    cfg = {"prompt_init": "random", "num_virtual_tokens": 2, **overrides}
    d = cls(build_config(cls.Config, {k: str(v) for k, v in cfg.items()}))
    d.setup(model, None, TINY_CONTEXT)
    model.train()
    return d, model


def tiny_batch(seed, b=3, length=6):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask,
            "labels": torch.randint(0, 2, (b,), generator=g)}


def ascend_prompt(model, batch, delta, prompt, alpha, eps):
    """One hand-written PGD step on the attack prompt a [k_a, d]: clamp(a + α·sign(∇_a L), ±ε)
    with L = CE(f(E(x) + δ; a), y), a shared by the batch's examples."""
    a = prompt.clone().requires_grad_()
    embeds = model.word_embeddings(batch["input_ids"]).detach()
    logits = model(inputs_embeds=embeds + delta, attention_mask=batch["attention_mask"],
                   prefix_embeds=a.expand(embeds.shape[0], -1, -1))
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, batch["labels"]), a)
    return (prompt + alpha * g.sign()).clamp(-eps, eps)


def test_peaft_attack_prompt_kept_between_batches():
    """The attack soft prompt a is drawn once and carried: the a after batch 2 is batch 2's
    ascent started from batch 1's a, exactly (K = 1, so one step per batch)."""
    d, model = tiny_peaft(attack_prompt_tokens=3, adv_steps=1, epsilon=1.0, adv_lr=0.25,
                          epsilon_init=0.01)
    eps, alpha = d.stats["epsilon_abs"], d.stats["adv_lr_abs"]
    b1, b2 = tiny_batch(1), tiny_batch(2)
    torch.manual_seed(5)
    for batch in (b1, b2):
        embeds = model.word_embeddings(batch["input_ids"]).detach()
        _, expanded = d.perturb(model, embeds, batch)
        assert expanded.shape == (3, 3, 16)
        assert torch.equal(expanded[2], d.attack_prompt)
        if batch is b1:
            a1 = d.attack_prompt.clone()
    a2 = d.attack_prompt.clone()
    # by hand: the same random draws in the same order (δ0 of batch 1, a0, δ0 of batch 2)
    torch.manual_seed(5)
    d1 = init_delta_l2(b1["attention_mask"], 16, 0.01).clamp(-eps, eps)
    a0 = init_delta_l2(torch.ones(1, 3, dtype=torch.long), 16, 0.01)[0].clamp(-eps, eps)
    d2 = init_delta_l2(b2["attention_mask"], 16, 0.01).clamp(-eps, eps)
    assert torch.all(a0.abs() < eps)  # a0 inside the ball: the steps below are not clamped
    hand1 = ascend_prompt(model, b1, d1, a0, alpha, eps)
    hand2 = ascend_prompt(model, b2, d2, hand1, alpha, eps)
    assert torch.equal(a1, hand1) and torch.equal(a2, hand2)
    # every coordinate moved by exactly α from the previous batch's a (none reached ±ε) ...
    assert torch.allclose((a2 - a1).abs(), torch.full_like(a1, alpha), rtol=1e-5, atol=0)
    # ... so a prompt redrawn for batch 2 (a fresh a0) would not give the kept one
    fresh = init_delta_l2(torch.ones(1, 3, dtype=torch.long), 16, 0.01)[0].clamp(-eps, eps)
    assert not torch.allclose(ascend_prompt(model, b2, d2, fresh, alpha, eps), a2)
    assert torch.all(a2.abs() <= eps)


def test_peaft_attack_prompt_used_by_step_and_reset_by_setup():
    """step(): L_adv's forward uses the a of its own ascent, which is the kept state; a new
    setup() (a new training run) starts without one; with k_a = 0 nothing is kept."""
    d, model = tiny_peaft(attack_prompt_tokens=2, adv_steps=2, adv_lambda=1.0)
    batch = tiny_batch(3)
    torch.manual_seed(0)
    stats = d.step(model, batch)
    kept = d.attack_prompt.clone()
    torch.manual_seed(0)
    d.attack_prompt = None
    embeds = model.word_embeddings(batch["input_ids"]).detach()
    delta, prompt = d.perturb(model, embeds, batch)
    assert torch.equal(prompt[0], kept)
    with torch.no_grad():
        loss_adv = torch.nn.functional.cross_entropy(
            model(inputs_embeds=embeds + delta, attention_mask=batch["attention_mask"],
                  prefix_embeds=prompt), batch["labels"])
    assert stats["loss_adv"] == pytest.approx(loss_adv.item(), rel=1e-6)
    d.setup(tiny_classifier(), None, TINY_CONTEXT)  # a new run drops the kept a
    assert d.attack_prompt is None
    d3, m3 = tiny_peaft()
    d3.step(m3, batch)
    assert d3.attack_prompt is None


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


def test_peaft_step_size_defaults_to_epsilon_over_k():
    """α left unset is ε/K (ε for K = 0): 0.1/2 = 0.05 at the defaults; an explicit α wins;
    K·α = ε for every K of the calibration grid."""
    cls = DEFENSES.get("peaft")
    assert build_config(cls.Config).adv_lr == 0.05
    for eps, k, alpha in ((0.4, 1, 0.4), (0.2, 2, 0.1), (0.3, 3, 0.1), (0.8, 0, 0.8)):
        cfg = build_config(cls.Config, {"epsilon": str(eps), "adv_steps": str(k)})
        assert cfg.adv_lr == pytest.approx(alpha, rel=1e-12)
    assert build_config(cls.Config, {"epsilon": "0.4", "adv_lr": "0.01"}).adv_lr == 0.01
