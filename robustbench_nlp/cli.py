"""The ``rbnlp`` command line.

``rbnlp run``           train a defense, attack it, store and print the results
``rbnlp list KIND``     defenses, attacks, tasks or models, with their parameters
``rbnlp leaderboard``   the stored runs of one task × attack, ranked by AUA
``rbnlp show RUN_ID``   one run's record and metrics
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import RBNLPError


def _fmt(v, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def summary_table(m: dict, run: dict) -> str:
    """The end-of-run table: one metric per line."""
    rows = [
        ("run id", run["run_id"]), ("task / defense / attack", run["what"]),
        ("ACC (clean, full dev)", _fmt(m.get("acc"))),
        ("clean acc on attacked set", _fmt(m.get("attacked_clean_acc"))),
        ("AUA", _fmt(m.get("aua"))), ("AVG = (ACC+AUA)/2", _fmt(m.get("avg"))),
        ("attack success rate", _fmt(m.get("asr"))),
        ("attacked / successful / failed / skipped",
         f"{m.get('attacked')} / {m.get('successful')} / {m.get('failed')} / {m.get('skipped')}"),
        ("avg queries", _fmt(m.get("avg_queries"), 1)),
        ("avg perturbed words %", _fmt(m.get("avg_perturbed_pct"))),
        ("trainable parameters", f"{run['trainable']:,}"),
        ("train / attack time (s)", f"{_fmt(run['train_s'], 1)} / {_fmt(run['attack_s'], 1)}"),
        ("mean ‖δ‖/‖E(x)‖", _fmt(m.get("delta_ratio"), 4)),
        ("predicted classes % (dev)",
         ", ".join(f"{k} {v:.1f}" for k, v in (m.get("pred_distribution") or {}).items())),
    ]
    if m.get("f1") is not None:
        rows.insert(3, ("F1 (clean, full dev)", _fmt(m["f1"])))
    if m.get("degenerate"):
        rows.append(("WARNING", "degenerate: majority predicted class exceeds its gold share "
                                "by > 15 points; AUA is not meaningful"))
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 40)
    return "\n".join([line] + [f"{k:<{w}}  {v}" for k, v in rows] + [line])


def cmd_run(args) -> int:
    from .config import parse_set_options
    from .db import open_store
    from .runner import RunConfig, execute

    cfg = RunConfig(defense=args.defense, attack=args.attack, task=args.task, model=args.model,
                    pooling=args.pooling, seed=args.seed,
                    num_examples=None if args.num_examples == 0 else args.num_examples,
                    max_length=args.max_length, device=args.device, db=args.db,
                    runs_dir=args.runs_dir, data_dir=args.data_dir,
                    progress=not args.no_progress,
                    defense_params=parse_set_options(args.set),
                    attack_params=parse_set_options(args.attack_set))
    if args.query_budget is not None:
        cfg.attack_params["query_budget"] = str(args.query_budget)
    store = open_store(args.db)
    m = execute(cfg, resume=args.resume, store=store, echo=lambda s: print(s, flush=True))
    run = store.get_run(m["run_id"])
    print(summary_table(m, {"run_id": run.id, "what": f"{run.task} / {run.defense} / {run.attack}",
                            "trainable": run.trainable_params or 0,
                            "train_s": run.train_seconds, "attack_s": run.attack_seconds}))
    print(f"stored in {store.engine.url.render_as_string()} (run {run.id}); "
          f"artifacts in {run.artifact_dir}")
    return 0


def cmd_list(args) -> int:
    from .backbones import ALIASES
    from .config import describe
    from .registry import ATTACKS, DEFENSES
    from .tasks import TASKS

    if args.kind in ("defenses", "attacks"):
        reg = DEFENSES if args.kind == "defenses" else ATTACKS
        for name, cls in reg.items():
            print(f"{name}: {cls.description}")
            for row in describe(cls.Config):
                rng = f" {row['range']}" if row["range"] else ""
                print(f"    {row['name']} = {row['default']!r}  ({row['type']}{rng}) {row['help']}")
    elif args.kind == "tasks":
        for t in TASKS.values():
            notes = "; ".join(n for n in (t.note("train"), t.note("validation")) if n)
            pair = f"pair, attacked segment {t.attacked_column}" if t.is_pair else "single sentence"
            print(f"{t.name}: {', '.join(t.text_columns)} ({pair}); labels "
                  f"{', '.join(f'{i}={n}' for i, n in enumerate(t.label_names))}; "
                  f"metrics {', '.join(t.metrics)}; AdvGLUE {'yes' if t.advglue else 'no'}"
                  + (f"; NOTE: {notes}" if notes else ""))
    else:
        for name, a in ALIASES.items():
            print(f"{name}: {a.hub_id} ({a.pooling} head; {a.note})")
    return 0


def cmd_show(args) -> int:
    import json

    from .db import open_store

    store = open_store(args.db)
    run = store.get_run(args.run_id)
    rec = {c.name: getattr(run, c.name) for c in run.__table__.columns}
    if run.metrics is not None:
        rec["metrics"] = {c.name: getattr(run.metrics, c.name)
                          for c in run.metrics.__table__.columns}
    print(json.dumps(rec, indent=2, default=str))
    return 0


def cmd_leaderboard(args) -> int:
    from .leaderboard import leaderboard

    df = leaderboard(args.db, task=args.task, attack=args.attack)
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
    elif args.format == "json":
        print(df.to_json(orient="records", indent=2))
    else:
        print(df.to_markdown(index=False) if len(df) else "(no finished runs)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rbnlp", description="Adversarial robustness benchmark "
                                "for NLP text classifiers.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="train a defense, attack it, store the results")
    r.add_argument("--defense", default="peaft")
    r.add_argument("--attack", default="textfooler")
    r.add_argument("--task", default="sst2")
    r.add_argument("--model", default="minilm",
                   help="alias (rbnlp list models), local directory or Hub id")
    r.add_argument("--pooling", choices=("mean", "cls", "last"), default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--num-examples", type=int, default=100,
                   help="dev examples to attack (0 = all)")
    r.add_argument("--query-budget", type=int, default=None,
                   help="max victim queries per attacked example")
    r.add_argument("--max-length", type=int, default=None)
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="defense hyperparameter (repeatable; rbnlp list defenses)")
    r.add_argument("--attack-set", action="append", metavar="KEY=VALUE",
                   help="attack option (repeatable; rbnlp list attacks)")
    r.add_argument("--device", default=None)
    r.add_argument("--db", default=None, help="SQLAlchemy URL (default $RBNLP_DB or "
                   "sqlite:///rbnlp.db)")
    r.add_argument("--runs-dir", default="runs")
    r.add_argument("--data-dir", default=None, help="local GLUE mirror (default: found "
                   "automatically, else the Hugging Face Hub)")
    r.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue an interrupted run")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list defenses, attacks, tasks or models")
    ls.add_argument("kind", choices=("defenses", "attacks", "tasks", "models"))
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="print one stored run")
    sh.add_argument("run_id")
    sh.add_argument("--db", default=None)
    sh.set_defaults(func=cmd_show)

    lb = sub.add_parser("leaderboard", help="print the leaderboard of one task and attack")
    lb.add_argument("--task", default="sst2")
    lb.add_argument("--attack", default="textfooler")
    lb.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    lb.add_argument("--db", default=None)
    lb.set_defaults(func=cmd_leaderboard)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rbnlp`` console script. Errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RBNLPError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
