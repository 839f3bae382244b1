"""PEAFT and plain tuning over every peft carrier (prompt, prefix, P-tuning, LoRA) on the real
all-MiniLM-L6-v2 backbone (BERT: 6 layers, d = 384, 12 heads)."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_nlp.backbones import load_backbone, pool
from robustbench_nlp.config import build_config
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.registry import DEFENSES
from robustbench_nlp.tasks import get_task
from robustbench_nlp.defenses.carriers import CARRIERS, DEFAULT_LR, carrier_parameters

D, LAYERS, K, HEAD = 384, 6, 20, 384 * 2 + 2
#: trainable parameters of each carrier with its defaults, head included
EXPECTED_TRAINABLE = {
    "prompt": K * D + HEAD,                             # nn.Embedding(k, d)
    "prefix": K * 2 * LAYERS * D + HEAD,                # a key and a value per layer and token
    "ptuning": K * D + 3 * (D * D + D) + HEAD,          # embedding + 3-layer MLP d → d → d → d
    "lora": LAYERS * 2 * (8 * D + D * 8) + HEAD,        # r = 8 A and B on query and value
}
#: trainable tensors of each carrier (head excluded)
EXPECTED_TENSORS = {"prompt": 1, "prefix": 1, "ptuning": 7, "lora": LAYERS * 2 * 2}


def make(name, minilm, **overrides):
    tok, model, info = minilm
    cls = DEFENSES.get(name)
    d = cls(build_config(cls.Config, overrides))
    d.setup(model, tok, {**info, "task": get_task("sst2")})
    return d, model


def train_steps(defense, model, batch, n):
    opt = defense.make_optimizer(model)
    model.train()
    stats = None
    for _ in range(n):
        opt.zero_grad()
        stats = defense.step(model, batch)
        opt.step()
    return stats


def backbone_weights(model):
    """Every parameter of the transformers model that is not the carrier's (LoRA's A and B
    live inside the base modules and are excluded by identity)."""
    carrier = {id(p) for p in carrier_parameters(model).values()}
    return {n: p.detach().clone() for n, p in model.base_encoder.named_parameters()
            if id(p) not in carrier}


@pytest.mark.parametrize("name", ["peaft", "prompt-tuning"])
@pytest.mark.parametrize("carrier", CARRIERS)
def test_only_carrier_and_head_train(name, carrier, minilm, sst2_batch):
    d, model = make(name, minilm, carrier=carrier)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    carrier_params = carrier_parameters(model)
    assert trainable == {f"encoder.{n}" for n in carrier_params} | {"head.1.weight", "head.1.bias"}
    assert len(carrier_params) == EXPECTED_TENSORS[carrier]
    if carrier == "lora":
        assert all(".lora_A." in n or ".lora_B." in n for n in carrier_params)
        assert sum(".query." in n for n in carrier_params) == LAYERS * 2
    else:
        assert all(n.startswith("prompt_encoder.") for n in carrier_params)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == \
        EXPECTED_TRAINABLE[carrier]

    before = backbone_weights(model)
    carrier_before = {n: p.detach().clone() for n, p in carrier_params.items()}
    head_before = model.head[1].weight.detach().clone()
    # two steps: LoRA's B starts at zero, so A receives its first gradient in step 2
    stats = train_steps(d, model, sst2_batch, 2)
    after = backbone_weights(model)
    assert before.keys() == after.keys() and len(before) == 103  # 6 layers × 16 + 7
    assert all(torch.equal(before[k], after[k]) for k in before), "a backbone weight changed"
    unchanged = [n for n, p in carrier_parameters(model).items()
                 if torch.equal(carrier_before[n], p.detach())]
    assert unchanged == []
    assert not torch.equal(head_before, model.head[1].weight.detach())
    assert math.isfinite(stats["loss"])
    if name == "peaft":
        assert stats["loss_adv"] > 0 and 0 < stats["delta_ratio"] < 1


@pytest.mark.parametrize("carrier", CARRIERS)
def test_lambda0_equals_plain_counterpart(carrier, sst2_batch):
    results = []
    for name, kw in (("peaft", {"adv_lambda": 0.0}), ("prompt-tuning", {})):
        torch.manual_seed(0)
        mm = load_backbone("minilm", 2)
        d, model = make(name, mm, carrier=carrier, **kw)
        torch.manual_seed(1)
        train_steps(d, model, sst2_batch, 2)
        results.append(d.trainable_state(model))
    assert results[0].keys() == results[1].keys() and len(results[0]) > 2
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    # ... and an adversarial PEAFT run ends elsewhere from the same seed
    torch.manual_seed(0)
    d, model = make("peaft", load_backbone("minilm", 2), carrier=carrier)
    torch.manual_seed(1)
    train_steps(d, model, sst2_batch, 2)
    adv = d.trainable_state(model)
    assert not all(torch.equal(adv[k], results[1][k]) for k in adv)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_pgd_perturbs_input_embeddings(carrier, minilm, sst2_batch):
    d, model = make("peaft", minilm, carrier=carrier, epsilon=0.05, adv_steps=3, adv_lr=0.025)
    model.eval()  # no dropout: the ascent is deterministic and comparable
    mask = sst2_batch["attention_mask"]
    embeds = model.word_embeddings(sst2_batch["input_ids"]).detach()
    delta, prompt = d.perturb(model, embeds, sst2_batch)
    eps = d.stats["epsilon_abs"]
    assert prompt is None and delta.shape == embeds.shape
    assert delta.abs().max() <= eps + 1e-9
    assert torch.all(delta[mask == 0] == 0)
    assert (delta[mask.bool()].abs() > 0.99 * eps).float().mean() > 0.3
    kw = {k: v for k, v in sst2_batch.items() if k not in ("labels", "input_ids")}
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(inputs_embeds=embeds, **kw),
                                                  sst2_batch["labels"])
        adv = torch.nn.functional.cross_entropy(model(inputs_embeds=embeds + delta, **kw),
                                                sst2_batch["labels"])
    assert adv > clean  # the inner max ascends the loss through the carrier's forward


@pytest.mark.parametrize("carrier", ["prefix", "lora"])
def test_attack_prompt_with_other_carriers(carrier, minilm, sst2_batch):
    d, model = make("peaft", minilm, carrier=carrier, attack_prompt_tokens=3)
    model.train()
    embeds = model.word_embeddings(sst2_batch["input_ids"]).detach()
    _, prompt = d.perturb(model, embeds, sst2_batch)
    assert prompt.shape == (4, 3, D)
    stats = train_steps(d, model, sst2_batch, 1)
    assert math.isfinite(stats["loss_adv"])


@pytest.mark.parametrize("carrier", CARRIERS)
def test_forward_matches_peft_forward(carrier, minilm, sst2_batch):
    """TextClassifier's own handling of each adapter (virtual tokens, prefix cache + mask,
    LoRA in place) gives the logits of peft's PeftModelForFeatureExtraction.forward."""
    _, model = make("prompt-tuning", minilm, carrier=carrier)
    model.eval()
    mask = sst2_batch["attention_mask"]
    with torch.no_grad():
        ours = model(input_ids=sst2_batch["input_ids"], attention_mask=mask)
        hidden = model.encoder(input_ids=sst2_batch["input_ids"],
                               attention_mask=mask).last_hidden_state
        ref = model.head(pool(hidden[:, -mask.shape[1]:], mask, model.pooling))
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


@pytest.mark.parametrize("carrier", CARRIERS)
def test_token_type_ids_reach_the_backbone(carrier, minilm):
    """Sentence-pair segment ids are kept with every carrier (peft's forward drops them)."""
    from robustbench_nlp.inference import collate, encode

    tok = minilm[0]
    _, model = make("prompt-tuning", minilm, carrier=carrier)
    model.eval()
    batch = collate(encode(tok, [("a man plays guitar", "someone makes music")], 64),
                    tok.pad_token_id)
    assert batch["token_type_ids"].sum() == 4  # "someone makes music [SEP]"
    with torch.no_grad():
        with_types = model(**batch)
        zeros = model(**{**batch, "token_type_ids": torch.zeros_like(batch["token_type_ids"])})
    assert not torch.allclose(with_types, zeros, atol=1e-4)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_saved_defense_reloads(carrier, minilm, sst2_batch, tmp_path):
    from robustbench_nlp.runner import load_defense, save_defense

    d, model = make("peaft", minilm, carrier=carrier, adv_steps=1)
    train_steps(d, model, sst2_batch, 1)
    save_defense(tmp_path, d, model, {})
    torch.manual_seed(5)
    d2, fresh = make("peaft", load_backbone("minilm", 2), carrier=carrier, adv_steps=1)
    load_defense(tmp_path, fresh)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(**{k: v for k, v in sst2_batch.items() if k != "labels"}),
                           fresh(**{k: v for k, v in sst2_batch.items() if k != "labels"}))


def test_carrier_config():
    for name in ("peaft", "prompt-tuning"):
        cls = DEFENSES.get(name)
        for carrier in CARRIERS:
            assert build_config(cls.Config, {"carrier": carrier}).lr == DEFAULT_LR[carrier]
        assert build_config(cls.Config, {"carrier": "lora", "lr": "0.002"}).lr == 0.002
        assert build_config(cls.Config, {}).carrier == "prompt"
    cls = DEFENSES.get("peaft")
    with pytest.raises(ConfigError, match="carrier: 'adapter' is not one of prompt, prefix"):
        build_config(cls.Config, {"carrier": "adapter"})
    with pytest.raises(ConfigError, match=r"lora_r applies to carrier=lora only \(carrier is "
                                          r"'prompt'\)"):
        build_config(cls.Config, {"lora_r": "4"})
    with pytest.raises(ConfigError, match="num_virtual_tokens applies to carrier=prompt or "
                                          "carrier=prefix or carrier=ptuning only"):
        build_config(cls.Config, {"carrier": "lora", "num_virtual_tokens": "10"})
    with pytest.raises(ConfigError, match="prompt_init applies to carrier=prompt only"):
        build_config(cls.Config, {"carrier": "prefix", "prompt_init": "random"})
    with pytest.raises(ConfigError, match="encoder_hidden_size applies to carrier=prefix only "
                                          "with prefix_projection=true"):
        build_config(cls.Config, {"carrier": "prefix", "encoder_hidden_size": "64"})
    cfg = build_config(cls.Config, {"carrier": "lora", "lora_r": "4", "lora_alpha": "16",
                                    "lora_target_modules": "query, key"})
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (4, 16, "query, key")


def test_carrier_parameters_follow_the_config(minilm):
    _, model = make("prompt-tuning", minilm, carrier="lora", lora_r=4,
                    lora_target_modules="query,key,value")
    params = carrier_parameters(model)
    assert len(params) == LAYERS * 3 * 2
    assert sum(p.numel() for p in params.values()) == LAYERS * 3 * (4 * D + D * 4)
    lora_q = model.base_encoder.encoder.layer[0].attention.self.query
    assert lora_q.scaling["default"] == 8 / 4  # α / r


def test_unknown_lora_target(minilm):
    with pytest.raises(ConfigError, match="lora_target_modules='qkv'"):
        make("prompt-tuning", minilm, carrier="lora", lora_target_modules="qkv")


H = 32  # LSTM hidden size below: 2 bidirectional layers, then Linear(2h, 2h), Linear(2h, d)
LSTM_NUMEL = (K * D + 2 * (4 * H * (D + H + 2) + 4 * H * (2 * H + H + 2))
              + (2 * H * 2 * H + 2 * H) + (2 * H * D + D))


@pytest.mark.parametrize("carrier, overrides, tensors, numel", [
    ("ptuning", {"encoder_reparameterization": "lstm", "encoder_hidden_size": H}, 21,
     LSTM_NUMEL),
    ("ptuning", {"encoder_hidden_size": 64}, 7, K * D + (D * 64 + 64) + (64 * 64 + 64)
     + (64 * D + D)),
    ("prefix", {"prefix_projection": True, "encoder_hidden_size": 64}, 5,
     K * D + (D * 64 + 64) + (64 * 2 * LAYERS * D + 2 * LAYERS * D)),
    ("prefix", {"num_virtual_tokens": 5}, 1, 5 * 2 * LAYERS * D),
])
def test_carrier_options(carrier, overrides, tensors, numel, minilm, sst2_batch):
    d, model = make("prompt-tuning", minilm, carrier=carrier, **overrides)
    params = carrier_parameters(model)
    assert len(params) == tensors
    assert sum(p.numel() for p in params.values()) == numel
    stats = train_steps(d, model, sst2_batch, 1)
    assert math.isfinite(stats["loss"])


def test_leaderboard_shows_carrier_and_trainable_params(tmp_path):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.leaderboard import carrier_of, leaderboard

    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    runs = [("peaft", {"carrier": "lora", "num_virtual_tokens": 20}, 74498, 40.0),
            ("prompt-tuning", {"carrier": "prefix", "num_virtual_tokens": 20}, 92930, 30.0),
            ("finetune", {"lr": 3e-5}, 22713986, 20.0)]
    for defense, dcfg, trainable, aua in runs:
        rid = store.create_run(task="sst2", defense=defense, attack="textfooler",
                               model="minilm", seed=0, config={"defense": dcfg},
                               trainable_params=trainable)
        store.save_metrics(rid, acc=80.0, aua=aua, avg=(80.0 + aua) / 2)
        store.update_run(rid, status="finished")
    board = leaderboard(store=store)
    assert board[["defense", "carrier", "trainable params"]].values.tolist() == [
        ["peaft", "lora", 74498], ["prompt-tuning", "prefix", 92930],
        ["finetune", "", 22713986]]
    # soft-prompt runs recorded before the carrier existed
    assert carrier_of({"defense": {"num_virtual_tokens": 20}}) == "prompt"
    assert carrier_of({}) == "" and carrier_of(None) == ""
