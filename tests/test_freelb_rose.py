"""Defining properties of FreeLB and ROSE on the real all-MiniLM-L6-v2 backbone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustbench_nlp.config import build_config
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.perturbation import init_delta_l2
from robustbench_nlp.registry import DEFENSES
from robustbench_nlp.tasks import get_task


def make(name, minilm, task="sst2", context=None, **overrides):
    tok, model, info = minilm
    cls = DEFENSES.get(name)
    d = cls(build_config(cls.Config, overrides))
    d.setup(model, tok, {**info, "task": get_task(task), **(context or {})})
    return d, model


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_step(defense, model, opt, batch):
    opt.zero_grad(set_to_none=True)
    stats = defense.step(model, batch)
    opt.step()
    return stats


# -- FreeLB ---------------------------------------------------------------------------------

# The source's numbers: zhuchen03/FreeLB, huggingface-transformers/launch/run_glue.sh (commit
# eb23701), columns "adv_lr adv_mag anorm asteps" of each runexp row, verbatim:
#   runexp  SST-2  ...  albert-xxlarge-v2   1e-1    6e-1      0    2    1e-5 ...
#   runexp  MRPC   ...  albert-xxlarge-v2   3e-2       0      0    4    2e-5 ...
#   runexp  RTE    ...  albert-xxlarge-v2   1e-1      0       0    3    3e-5 ...
#   runexp  QNLI   ...  albert-xxlarge-v2   5e-2    1e-1      0    3    1e-5 ...
# asteps counts forward/backward passes per batch there (``for astep in range(adv_steps)`` in
# examples/run_glue_freelb.py), the convention of this module, so it is taken unchanged.
RUN_GLUE_SH = {"sst2": ("1e-1", "6e-1", "0", "2"), "mrpc": ("3e-2", "0", "0", "4"),
               "rte": ("1e-1", "0", "0", "3"), "qnli": ("5e-2", "1e-1", "0", "3")}


@pytest.mark.parametrize("task", sorted(RUN_GLUE_SH))
def test_freelb_task_defaults(task):
    from robustbench_nlp.defenses.freelb import TASK_SETTINGS

    lr, mag, norm, steps = RUN_GLUE_SH[task]
    expected = (float(lr), float(mag), float(norm), int(steps))
    cls = DEFENSES.get("freelb")
    s = cls(build_config(cls.Config)).resolve(task)
    assert (s["adv_lr"], s["adv_init_mag"], s["adv_max_norm"], s["adv_steps"]) == expected
    row = TASK_SETTINGS[task]
    glue = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "qnli": "QNLI"}[task]
    assert row.source == f"huggingface-transformers/launch/run_glue.sh: {glue} row"
    s = cls(build_config(cls.Config, {"adv_lr": "0.3"})).resolve(task)
    assert s["adv_lr"] == 0.3 and s["adv_steps"] == expected[3]
    with pytest.raises(ConfigError, match="no reference setting"):
        cls(build_config(cls.Config)).resolve("cola")


def test_freelb_mrpc_default_makes_four_passes(minilm, sst2_batch):
    """K counts passes (Hugging Face convention): the MRPC default (asteps 4, init_mag 0) runs
    4 forwards per batch, the first on δ0 = 0 (clean embeddings), i.e. 3 ascents; the fairseq
    MRPC row (ADV_STEP 3) would have been 1 + 3 = 4 passes too, not the 3 used before."""
    d, model = make("freelb", minilm, task="mrpc")
    calls = []
    hook = model.base_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        d.step(model, sst2_batch)
    finally:
        hook.remove()
    assert len(calls) == 4 and len(d.last_deltas) == 4
    assert torch.count_nonzero(d.last_deltas[0]) == 0
    assert all(torch.count_nonzero(x) > 0 for x in d.last_deltas[1:])


def test_freelb_delta0_formula():
    from robustbench_nlp.defenses.freelb import init_delta

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    d, mag = 16, 0.6
    for norm in ("l2", "linf"):
        delta = init_delta(mask, d, mag, norm)
        assert delta.shape == (2, 5, d) and torch.all(delta[0, 3:] == 0)
        for i, q in enumerate([3, 5]):
            bound = mag / math.sqrt(q * d) if norm == "l2" else mag
            real = delta[i, :q]
            assert real.abs().max() <= bound * (1 + 1e-6)
            assert real.abs().max() > 0.5 * bound  # uniform on [-bound, bound]
            if norm == "l2":  # whole-sequence norm ≤ init_mag
                assert real.norm() <= mag
        assert torch.all(init_delta(mask, d, 0.0, norm) == 0)
    torch.manual_seed(3)
    a = init_delta(mask, d, mag, "l2")
    torch.manual_seed(3)
    assert torch.equal(a, init_delta_l2(mask, d, mag))


@pytest.mark.parametrize("train,k", [(False, 3), (True, 2)])
def test_freelb_gradient_is_mean_of_step_gradients(train, k, minilm, sst2_batch):
    """∇θ after step() = (1/K) Σ_t ∇θ L(E(x)+δ_t); δ0 by the formula; δ_{t+1} = δ_t + α g/‖g‖.

    ``train=True`` also checks the dropout-mask reuse (same RNG state for each forward)."""
    alpha, mag = 0.1, 0.6
    d, model = make("freelb", minilm, adv_steps=k, adv_lr=alpha, adv_init_mag=mag,
                    adv_max_norm=0)
    model.train(train)
    opt = d.make_optimizer(model)
    opt.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    d.step(model, sst2_batch)
    acc = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert len(d.last_deltas) == k
    mask = sst2_batch["attention_mask"]
    torch.manual_seed(11)
    assert torch.equal(d.last_deltas[0], init_delta_l2(mask, 384, mag))
    rng = torch.get_rng_state()
    kw = {n: v for n, v in sst2_batch.items() if n not in ("labels", "input_ids")}
    total, dgrads = {}, []
    for delta in d.last_deltas:
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        delta = delta.clone().requires_grad_()
        embeds = model.word_embeddings(sst2_batch["input_ids"])
        loss = F.cross_entropy(model(inputs_embeds=embeds + delta, **kw), sst2_batch["labels"])
        (loss / k).backward()
        dgrads.append(delta.grad)
        for n, p in model.named_parameters():
            if p.grad is not None:
                total[n] = total.get(n, 0) + p.grad
    assert acc.keys() == total.keys()
    assert "encoder.embeddings.word_embeddings.weight" in acc  # E(x) recomputed each step
    for n in acc:
        assert torch.allclose(acc[n], total[n], rtol=1e-6, atol=1e-9), n
    for t in range(k - 1):
        g = dgrads[t]
        norm = g.reshape(g.shape[0], -1).norm(dim=1).view(-1, 1, 1)
        assert torch.allclose(d.last_deltas[t + 1], d.last_deltas[t] + alpha * g / norm,
                              rtol=1e-5, atol=1e-7)
    if train:  # the optimizer step changes the backbone, word embeddings included
        for n, p in model.named_parameters():
            p.grad = acc[n] if n in acc else None
        before = snapshot(model.base_encoder)
        opt.step()
        after = snapshot(model.base_encoder)
        changed = [n for n in before if not torch.equal(before[n], after[n])]
        assert len(changed) > 50 and "embeddings.word_embeddings.weight" in changed
        assert d.stats["delta_ratio"] > 0


def test_freelb_projection():
    from robustbench_nlp.defenses.freelb import ascent

    torch.manual_seed(0)
    delta, grad = torch.zeros(2, 4, 8), torch.randn(2, 4, 8)
    out = ascent(delta, grad, 1.0, 0.5, "l2")
    assert torch.allclose(out.reshape(2, -1).norm(dim=1), torch.tensor([0.5, 0.5]))
    out = ascent(delta, grad, 1.0, 0.0, "l2")
    assert torch.allclose(out.reshape(2, -1).norm(dim=1), torch.tensor([1.0, 1.0]))
    out = ascent(delta, grad, 1.0, 0.3, "linf")
    assert out.abs().max() == pytest.approx(0.3)


# -- ROSE -----------------------------------------------------------------------------------

def expected_kept(n, lower, upper):
    """Tensors kept by q(lower) ≤ s ≤ q(upper) (linear-interpolation quantiles, no ties)."""
    return math.floor(upper / 100 * (n - 1)) - math.ceil(lower / 100 * (n - 1)) + 1


def check_mask(d, model, before, after):
    """Unselected candidates bit-identical; selected (mask > 0) candidates changed."""
    params = dict(model.named_parameters())
    mask = d.optimizer.last_mask
    kept = 0
    for n in d.candidate_names:
        k = mask[id(params[n])]
        if k == 0:
            assert torch.equal(before[n], after[n]), f"unselected {n} changed"
        else:
            kept += 1
            assert not torch.equal(before[n], after[n]), f"selected {n} did not change"
    return kept


def test_rose_candidates_and_first_order_band(minilm, sst2_batch):
    lower, upper = 20, 80
    d, model = make("rose", minilm, mode="first", lower_percentile=lower,
                    upper_percentile=upper, mask_warmup_steps=0)
    # 6 blocks × (q, k, v, attention output, intermediate, output, 2 LayerNorm gains)
    assert len(d.candidate_names) == 48
    assert all(".layer." in n and n.endswith("weight") for n in d.candidate_names)
    opt = d.make_optimizer(model)
    model.train()
    before = snapshot(model)
    stats = train_step(d, model, opt, sst2_batch)
    after = snapshot(model)
    assert math.isfinite(stats["loss"]) and stats["kl"] > 0
    kept = check_mask(d, model, before, after)
    assert kept == expected_kept(48, lower, upper) == 28
    assert d.stats["selected_fraction"] == pytest.approx(kept / 48)
    # non-candidates (embeddings, biases, head) always train
    for n in ("encoder.embeddings.word_embeddings.weight", "head.1.weight",
              "encoder.encoder.layer.0.attention.self.query.bias"):
        assert not torch.equal(before[n], after[n])


def test_rose_second_order(minilm, sst2_batch):
    d, model = make("rose", minilm, mode="second", upper_percentile=60, mask_warmup_steps=0)
    opt = d.make_optimizer(model)
    model.train()
    train_step(d, model, opt, sst2_batch)
    assert d.stats["selected_fraction"] == 1.0  # no first moment yet: every tensor kept
    before = snapshot(model)
    train_step(d, model, opt, sst2_batch)
    kept = check_mask(d, model, before, snapshot(model))
    assert kept == expected_kept(48, 0, 60) == 29
    assert d.stats["selected_fraction"] == pytest.approx(29 / 48)


def test_rose_ensemble_soft_mask_after_warmup(minilm, sst2_batch):
    d, model = make("rose", minilm, upper_percentile=40, mask_warmup_steps=1)
    assert d.config.mode == "ensemble" and d.stats["mask_warmup_steps"] == 1
    opt = d.make_optimizer(model)
    model.train()
    before = snapshot(model)
    train_step(d, model, opt, sst2_batch)  # warm-up: everything trains
    assert d.stats["masking"] == 0.0 and d.stats["selected_fraction"] == 1.0
    after = snapshot(model)
    assert all(not torch.equal(before[n], after[n]) for n in d.candidate_names)
    train_step(d, model, opt, sst2_batch)
    values = set(d.optimizer.last_mask.values())
    assert d.stats["masking"] == 1.0 and values <= {0.0, 0.5, 1.0} and 0.0 in values
    check_mask(d, model, after, snapshot(model))


def test_rose_defaults_and_warmup(minilm):
    cls = DEFENSES.get("rose")
    d = cls(build_config(cls.Config))
    assert d.config.adam_beta2 == 0.98 and d.config.gamma == 0.5 and d.config.kl_dropout == 0.1
    assert d.resolve_upper("sst2") == 40 and d.resolve_upper("mrpc") == 80
    assert cls(build_config(cls.Config, {"mode": "second"})).resolve_upper("qnli") == 40
    # shared loop: ⌊0.06 · ⌈2000/16⌉ · 2⌋ = 15; with a 1,000-row train split ⌊0.06·126⌋ = 7
    assert d.resolve_warmup({}) == 15
    assert d.resolve_warmup({"train_size": 1000}) == 7
    with pytest.raises(ConfigError, match="mask_warmup_steps"):
        cls(build_config(cls.Config, {"train_examples": "none"})).resolve_warmup({})
    d, model = make("rose", minilm, task="rte", kl_dropout=0.2)
    assert d.stats["upper_percentile"] == 80
    assert model.head[0].p == 0.2
    assert model.base_encoder.encoder.layer[0].attention.self.dropout_prob == 0.2


def test_invalid_hyperparameters():
    freelb, rose = DEFENSES.get("freelb"), DEFENSES.get("rose")
    with pytest.raises(ConfigError, match="adv_lr: -1.0 is out of range"):
        build_config(freelb.Config, {"adv_lr": "-1"})
    with pytest.raises(ConfigError, match="norm_type"):
        build_config(freelb.Config, {"norm_type": "l1"})
    with pytest.raises(ConfigError, match="adv_steps"):
        build_config(freelb.Config, {"adv_steps": "0"})
    with pytest.raises(ConfigError, match="mode: 'third' is not one of"):
        build_config(rose.Config, {"mode": "third"})
    with pytest.raises(ConfigError, match="upper_percentile"):
        build_config(rose.Config, {"upper_percentile": "101"})
    with pytest.raises(ConfigError, match="lower_percentile"):
        build_config(rose.Config, {"lower_percentile": "70", "upper_percentile": "60"})
