"""Training-budget probe (issue #19): is a defense's default budget enough on a task?

Trains one defense on one task exactly as ``rbnlp run`` does (same plan, data, backbone,
defense setup and training loop) and after every epoch prints clean ACC on the full dev
split, the predicted-class shares and the degenerate flag
(:func:`robustbench_nlp.metrics.degenerate`), beside the task's majority-class ACC. Nothing
is attacked and nothing is stored: it is for choosing the per-task budgets, which are then
confirmed by real ``rbnlp run`` / ``rbnlp sweep`` runs. One JSON line per epoch goes to
``--out`` (appended) so a set of probes can be tabulated. The learning-rate schedule is the
one of the whole ``epochs`` budget, so epoch e of an E-epoch probe is not an e-epoch run.

``--eval-every S`` adds a check every S optimizer steps on a seeded sample of
``--eval-examples`` dev examples (``"step"`` in the JSON line; ``"epoch"`` is then the epoch
in progress), so a run that collapses to one class shows it long before the epoch ends and
can be stopped.

Usage::

    python scripts/budget_probe.py --defense finetune --task mrpc \
        --set train_examples=None --set epochs=5 [--seed 0] [--out probes.jsonl]
    python scripts/budget_probe.py --defense peaft --task qnli --set adv_lambda=0.1 \
        --eval-every 100 --eval-examples 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from robustbench_nlp.backbones import pick_device
    from robustbench_nlp.config import parse_set_options
    from robustbench_nlp.metrics import degenerate
    from robustbench_nlp.runner import RunConfig, build_model, load_data, plan
    from robustbench_nlp.training import evaluate, seed_everything, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defense", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--model", default=RunConfig.model)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="append one JSON line per epoch here")
    ap.add_argument("--eval-every", type=int, default=0, metavar="S",
                    help="also check every S optimizer steps (on --eval-examples dev examples)")
    ap.add_argument("--eval-examples", type=int, default=1000, metavar="N",
                    help="seeded dev sample of the --eval-every checks (default 1000)")
    args = ap.parse_args(argv)

    cfg = RunConfig(defense=args.defense, task=args.task, model=args.model, seed=args.seed,
                    progress=False, defense_params=parse_set_options(args.set))
    p = plan(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    frames, _ = load_data(p.task, cfg.data_dir)
    dev = frames["validation"]
    gold = {name: float((dev["label"] == i).mean() * 100)
            for i, name in enumerate(p.task.label_names)}
    majority = max(gold.values())
    tokenizer, model, _ = build_model(cfg, p, len(frames["train"]), device)
    start = time.perf_counter()
    sample = dev.sample(n=min(args.eval_examples, len(dev)), random_state=cfg.seed)
    progress = {"epoch": 1, "step": 0}

    def check(rows, step: int | None) -> None:
        model.eval()
        ev = evaluate(model, tokenizer, rows, p.task, p.max_length)
        model.train()
        shares = ev["pred_distribution"]
        rec = {"defense": args.defense, "task": args.task, "seed": args.seed,
               "set": args.set, "epoch": progress["epoch"],
               **({"step": step, "dev_examples": len(rows)} if step is not None else {}),
               "acc": round(ev["acc"], 2),
               "f1": round(ev["f1"], 2) if "f1" in ev else None,
               "pred_share": {k: round(v, 1) for k, v in shares.items()},
               "majority_acc": round(majority, 2),
               "degenerate": degenerate(shares, gold),
               "loss_ema": round(progress["loss"], 4) if "loss" in progress else None,
               "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def on_epoch(epoch: int) -> None:
        check(dev, None)
        progress["epoch"] = epoch + 1

    defense_step = p.defense.step

    def step(model_, batch):  # counts optimizer steps and runs the --eval-every checks
        if args.eval_every and progress["step"] and progress["step"] % args.eval_every == 0:
            check(sample, progress["step"])  # after `step` updates, before the next batch
        stats = defense_step(model_, batch)
        progress["step"] += 1
        loss = stats["loss"]
        progress["loss"] = (loss if "loss" not in progress
                            else 0.95 * progress["loss"] + 0.05 * loss)
        return stats

    p.defense.step = step
    train(model, p.defense, tokenizer, frames["train"], p.task, max_length=p.max_length,
          seed=cfg.seed, device=device, progress=False, on_epoch_end=on_epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
