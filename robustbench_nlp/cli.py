"""The ``rbnlp`` command line.

``rbnlp run``           train a defense, attack it, store and print the results
``rbnlp eval``          attack a trained checkpoint as it is (no training), store the results
``rbnlp export RUN_ID`` write a run's attacked examples as JSON lines, CSV, Parquet or a dataset
``rbnlp list KIND``     defenses, attacks, tasks or models, with their parameters
``rbnlp leaderboard``   the stored runs of one task × attack, one ranked table per protocol
``rbnlp rescore``       recompute stored runs' protocols, curves and invalid-swap rates
``rbnlp show RUN_ID``   one run's record and metrics
``rbnlp compare A B``   two runs of one protocol, example by example (McNemar, CIs)
``rbnlp merge RUN_ID``  finish a run attacked in shards (``rbnlp run --shard I/N``)
``rbnlp app``           the Streamlit leaderboard app on localhost
``rbnlp resources build``  build (or check) the cached offline attack resources
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from .errors import RBNLPError


def _fmt(v, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _ci(k, n) -> str:
    """`` [lo, hi]``: the Wilson 95% interval (percent) of ``k / n``; ``""`` without counts."""
    if k is None or not n:
        return ""
    from .stats import wilson_interval

    lo, hi = wilson_interval(int(k), int(n))
    return f" [{100 * lo:.2f}, {100 * hi:.2f}]"


def summary_table(m: dict, run: dict, extra: list[tuple[str, str]] | None = None) -> str:
    """The end-of-run table: one metric per line (``extra`` rows after the run's name)."""
    trainable = run.get("trainable")
    rows = [
        ("run id", run["run_id"]), ("task / defense / attack", run["what"]), *(extra or []),
        ("protocol", m.get("protocol_hash") or "-"),
        ("ACC (clean, full dev) [95% CI]", _fmt(m.get("acc")) + _ci(
            None if m.get("acc") is None or not m.get("eval_examples")
            else round(m["acc"] * m["eval_examples"] / 100), m.get("eval_examples"))),
        ("clean acc on attacked set", _fmt(m.get("attacked_clean_acc"))),
        ("AUA [95% CI]", _fmt(m.get("aua")) + _ci(m.get("failed"), m.get("attacked"))),
        ("AUA@10 / AUA@30 / curve area",
         " / ".join(_fmt(m.get(k)) for k in ("aua_at_10", "aua_at_30", "curve_area"))),
        ("PDR", _fmt(None if not m.get("attacked_clean_acc") or m.get("aua") is None
                     else 100 * (1 - m["aua"] / m["attacked_clean_acc"]))),
        ("AVG = (ACC+AUA)/2", _fmt(m.get("avg"))),
        ("attack success rate", _fmt(m.get("asr"))),
        ("attacked / successful / failed / skipped",
         f"{m.get('attacked')} / {m.get('successful')} / {m.get('failed')} / {m.get('skipped')}"),
        ("invalid swaps % (polarity-reversing)", _fmt(m.get("invalid_swap_rate"))),
        *_breakdown_rows(m),
        ("avg queries", _fmt(m.get("avg_queries"), 1)),
        ("avg perturbed words %", _fmt(m.get("avg_perturbed_pct"))),
        ("trainable parameters", f"{trainable:,}" if trainable is not None else "-"),
        ("peak training memory (MB)", _fmt(run.get("peak_mb"), 0)),
        ("train / attack time (s)", f"{_fmt(run['train_s'], 1)} / {_fmt(run['attack_s'], 1)}"),
        ("mean ‖δ‖/‖E(x)‖", _fmt(m.get("delta_ratio"), 4)),
        ("predicted classes % (dev)",
         ", ".join(f"{k} {v:.1f}" for k, v in (m.get("pred_distribution") or {}).items())),
    ]
    if run.get("evaluate_only"):  # nothing trained: no training rows
        drop = ("trainable parameters", "peak training memory (MB)", "mean ‖δ‖/‖E(x)‖")
        rows = [("attack time (s)", _fmt(run["attack_s"], 1)) if k.startswith("train / attack")
                else (k, v) for k, v in rows if k not in drop]
    if m.get("f1") is not None:
        rows.insert(4 + len(extra or []), ("F1 (clean, full dev)", _fmt(m["f1"])))
    if m.get("degenerate"):
        rows.append(("WARNING", "degenerate: majority predicted class exceeds its gold share "
                                "by > 15 points; AUA is not meaningful"))
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 40)
    return "\n".join([line] + [f"{k:<{w}}  {v}" for k, v in rows] + [line])


def _breakdown_rows(m: dict) -> list[tuple[str, str]]:
    """The ensemble's per-recipe rows of :func:`summary_table` (none for other attacks):
    each recipe's examples reached, broken, and mean queries, in the order tried."""
    own = (m.get("robustness") or {}).get("attack") or {}
    if "recipes" not in own:
        return []
    rows = [("worst case over", " → ".join(own["suite"]))]
    for n, s in own["recipes"].items():
        q = "-" if s["avg_queries"] is None else f"{s['avg_queries']:.1f}"
        rows.append((f"  {n}: broke / reached (avg queries)",
                     f"{s['broken']} / {s['attacked']} ({q})"))
    rows.append(("  robust to every recipe", str(own["robust"])))
    return rows


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM (``kill``, job schedulers) into ``KeyboardInterrupt("SIGTERM")`` while a
    run executes, so it stops like Ctrl-C: committed rows kept, run left resumable."""
    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args) -> int:
    from .config import parse_set_options
    from .db import open_store
    from .distributed import is_main_process, parse_shard
    from .runner import RunConfig, execute

    cfg = RunConfig(defense=args.defense, attack=args.attack, task=args.task, model=args.model,
                    pooling=args.pooling, seed=args.seed,
                    num_examples=None if args.num_examples == 0 else args.num_examples,
                    max_length=args.max_length, device=args.device, db=args.db,
                    runs_dir=args.runs_dir, data_dir=args.data_dir,
                    progress=not args.no_progress, workers=args.workers,
                    mixed_precision=args.mixed_precision,
                    gradient_checkpointing=args.gradient_checkpointing,
                    epoch_eval_examples=args.epoch_eval or None,
                    reuse_trained=not args.retrain,
                    defense_params=parse_set_options(args.set),
                    attack_params=parse_set_options(args.attack_set))
    if args.query_budget is not None:
        cfg.attack_params["query_budget"] = str(args.query_budget)
    shard = parse_shard(args.shard)
    if not is_main_process():  # accelerate launch: only the main process uses the database
        with _sigterm_as_interrupt():
            execute(cfg, resume=args.resume, shard=shard)
        return 0
    store = open_store(args.db)
    print(f"database: {store.safe_url}", flush=True)
    with _sigterm_as_interrupt():
        m = execute(cfg, resume=args.resume, store=store, echo=lambda s: print(s, flush=True),
                    continue_matching=not args.fresh, shard=shard)
    run = store.get_run(m["run_id"])
    if m.get("complete") is False:
        print(f"run {run.id}: shard {args.shard} stored; {m['missing']} examples of other "
              f"shards still missing (status {run.status})")
        return 0
    print(summary_table(m, {"run_id": run.id, "what": f"{run.task} / {run.defense} / {run.attack}",
                            "trainable": run.trainable_params or 0,
                            "peak_mb": run.peak_memory_mb,
                            "train_s": run.train_seconds, "attack_s": run.attack_seconds}))
    print(f"stored in {store.engine.url.render_as_string()} (run {run.id}); "
          f"artifacts in {run.artifact_dir}")
    return 0


def cmd_eval(args) -> int:
    from .config import parse_set_options
    from .db import open_store
    from .distributed import is_main_process
    from .evaluate import EvalConfig, evaluate_model
    from .leaderboard import source_text

    if not is_main_process():  # a multi-process launch: nothing to train, one process attacks
        return 0
    store = open_store(args.db)
    print(f"database: {store.safe_url}", flush=True)
    cfg = EvalConfig(model=args.model or "", task=args.task, attack=args.attack,
                     seed=args.seed,
                     num_examples=None if args.num_examples == 0 else args.num_examples,
                     max_length=args.max_length, device=args.device, db=args.db,
                     data_dir=args.data_dir, progress=not args.no_progress,
                     workers=args.workers, mixed_precision=args.mixed_precision,
                     revision=args.revision, label_map=args.label_map,
                     allow_new_head=args.allow_new_head, name=args.name,
                     paper_url=args.paper_url, reported_acc=args.reported_acc,
                     reported_aua=args.reported_aua,
                     attack_params=parse_set_options(args.attack_set))
    if args.query_budget is not None:
        cfg.attack_params["query_budget"] = str(args.query_budget)
    if not args.resume and not cfg.model:
        from .errors import ConfigError

        raise ConfigError("rbnlp eval needs --model FOLDER_OR_HUB_ID (or --resume RUN_ID)")
    with _sigterm_as_interrupt():
        m = evaluate_model(cfg, resume=args.resume, store=store,
                           echo=lambda s: print(s, flush=True), continue_matching=not args.fresh)
    run = store.get_run(m["run_id"])
    card = (run.backbone or {}).get("model_card") or {}
    extra = [("model", str(card.get("name"))), ("source", source_text(card.get("source"))),
             ("parameters", f"{card.get('parameters') or 0:,}"),
             ("labels (checkpoint → task)", str(card.get("labels")))]
    print(summary_table(m, {"run_id": run.id, "what": f"{run.task} / {run.defense} / {run.attack}",
                            "trainable": None, "peak_mb": None, "train_s": None,
                            "attack_s": run.attack_seconds, "evaluate_only": True}, extra))
    print(f"stored in {store.safe_url} (run {run.id})")
    return 0


def cmd_export(args) -> int:
    from .db import open_store
    from .export import export_run, format_of

    fmt = format_of(args.out, args.format)
    store = open_store(args.db)
    run = store.get_run(args.run_id)
    n = export_run(store, args.run_id, args.out, fmt, successful_only=args.successful_only)
    what = "successful adversarial examples" if args.successful_only else "attacked examples"
    note = "" if run.status == "finished" else f" (run not finished: status {run.status})"
    print(f"wrote {n} {what} of run {run.id} ({run.task} / {run.defense} / {run.attack}) to "
          f"{args.out} as {fmt}{note}")
    return 0


def cmd_merge(args) -> int:
    from .db import open_store
    from .runner import merge

    store = open_store(args.db)
    m = merge(store, args.run_id, data_dir=args.data_dir)
    run = store.get_run(args.run_id)
    print(summary_table(m, {"run_id": run.id, "what": f"{run.task} / {run.defense} / {run.attack}",
                            "trainable": run.trainable_params or 0,
                            "peak_mb": run.peak_memory_mb,
                            "train_s": run.train_seconds, "attack_s": run.attack_seconds}))
    return 0


def cmd_sweep(args) -> int:
    from .config import parse_set_options
    from .sweep import run_sweep, sweep_status

    echo = lambda s: print(s, flush=True)  # noqa: E731
    if args.status:
        sweep_status(args.config, db=args.db, echo=echo)
        return 0
    if args.launcher == "local":
        run_sweep(args.config, db=args.db, dry_run=args.dry_run, echo=echo)
        return 0
    from .slurm import SlurmOptions, submit_sweep

    opts = SlurmOptions(partition=args.partition, time_min=args.time, gpus=args.gpus,
                        cpus=args.cpus, mem_gb=args.mem, max_in_flight=args.max_in_flight,
                        logs_dir=args.logs_dir, sbatch=parse_set_options(args.sbatch),
                        wait=not args.no_wait, poll_s=args.poll)
    report = submit_sweep(args.config, db=args.db, runs_dir=args.runs_dir,
                          data_dir=args.data_dir, options=opts, dry_run=args.dry_run, echo=echo)
    # 1: a cell this driver submitted failed or was interrupted (cells held by another
    # driver's jobs are theirs to report)
    return 1 if not args.dry_run and not args.no_wait and any(
        r["job_id"] and r["state"] in ("failed", "interrupted") for r in report) else 0


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
            for task, budget in getattr(cls, "task_budgets", {}).items():
                values = (", ".join(f"{k}={v!r}" for k, v in budget.values.items())
                          or "the defaults above")
                print(f"    on {task}: {values}" + (f"  ({budget.evidence})" if budget.evidence else ""))
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


def show_summary(run, rows: list[dict] | None = None) -> str:
    """The readable part of ``rbnlp show``: the run's protocol, its intervals and robustness
    summaries, and the most frequent polarity-reversing swaps of its successful examples."""
    from .attacks.protocol import describe_protocol
    from .stats import wilson_interval

    from .evaluate import card_line

    m = run.metrics
    lines = [f"run {run.id}: {run.defense} on {run.task} ({run.model}, seed {run.seed}), "
             f"attack {run.attack}, status {run.status}"]
    card = card_line((run.backbone or {}).get("model_card"))
    if card:
        lines.append(card)
    if run.protocol:
        lines.append(f"protocol {run.protocol_hash}: {describe_protocol(run.protocol)}")
    else:
        lines.append("protocol: not recorded (`rbnlp rescore` records it)")
    if m is not None and m.acc is not None and m.eval_examples:
        lo, hi = wilson_interval(round(m.acc * m.eval_examples / 100), m.eval_examples)
        lines.append(f"ACC {m.acc:.2f} [95% CI {100 * lo:.2f}, {100 * hi:.2f}] on "
                     f"{m.eval_examples} dev examples")
    if m is not None and m.attacked:
        lo, hi = wilson_interval(m.failed, m.attacked)
        lines.append(f"AUA {m.aua:.2f} [95% CI {100 * lo:.2f}, {100 * hi:.2f}] over "
                     f"{m.attacked} attacked examples ({m.successful} successful, {m.failed} "
                     f"failed, {m.skipped} skipped)")
        if m.attacked_clean_acc:
            lines.append(f"PDR {100 * (1 - m.aua / m.attacked_clean_acc):.2f}")
    if m is not None and m.aua_at_30 is not None:
        lines.append(f"AUA@10 {m.aua_at_10:.2f}, AUA@30 {m.aua_at_30:.2f}, curve area "
                     f"{m.curve_area:.2f}")
    own = ((m.robustness or {}).get("attack") or {}) if m is not None else {}
    if "recipes" in own:
        from .attacks.ensemble import breakdown_text

        lines.append("worst case over " + " → ".join(own["suite"]) + ": "
                     + breakdown_text(own))
    inv = ((m.robustness or {}).get("invalid_swaps") or {}) if m is not None else {}
    if inv.get("error"):
        lines.append(f"invalid swaps: not computed ({inv['error']})")
    elif inv:
        rate = inv.get("invalid_swap_rate")
        lines.append(f"invalid swaps: {inv.get('invalid')} of {inv.get('successful')} "
                     f"successful examples hold a polarity-reversing swap"
                     + (f" ({rate:.2f}%)" if rate is not None else ""))
        top = inv.get("top_swaps") or []
        if top:
            lines.append("most frequent reversing swaps: " + ", ".join(
                f"{a}→{b} ×{n}" for a, b, n in top))
    return "\n".join(lines)


def cmd_show(args) -> int:
    import json

    from .db import open_store

    store = open_store(args.db)
    run = store.get_run(args.run_id)
    if args.format == "json":
        rec = {c.name: getattr(run, c.name) for c in run.__table__.columns}
        if run.metrics is not None:
            rec["metrics"] = {c.name: getattr(run.metrics, c.name)
                              for c in run.metrics.__table__.columns}
        print(json.dumps(rec, indent=2, default=str))
    else:
        print(show_summary(run))
        for line in job_lines(store, run.id):
            print(line)
    return 0


def job_lines(store, run_id: str) -> list[str]:
    """Lines naming the sweep cell of run ``run_id`` and the Slurm jobs that worked on it with
    their log files (``rbnlp sweep --launcher slurm``); none for a run made outside a sweep
    launcher."""
    from .db.claims import cells_of_run

    lines = []
    for cell in cells_of_run(store, run_id):
        lines.append(f"sweep {cell['sweep']} cell {cell['label']}: {cell['state']}")
        for job in cell["jobs"]:
            logs = ", ".join(job[k] for k in ("log_out", "log_err") if job.get(k))
            lines.append(f"slurm job {job.get('job_id')} ({job.get('state')}"
                         + (f" on {job['host']}" if job.get("host") else "") + ")"
                         + (f": logs {logs}" if logs else ""))
    return lines


def cmd_compare(args) -> int:
    from .compare import compare_runs, format_comparison
    from .db import open_store

    store = open_store(args.db)
    cmp = compare_runs(store, args.run_a, args.run_b, shared_indices=args.shared_indices)
    print(format_comparison(cmp, args.format))
    return 0


def cmd_resources(args) -> int:
    import time

    from .attacks import resources as R
    from .registry import ATTACKS

    if args.action == "list":
        for name, spec in R.EMBEDDINGS.items():
            try:
                path = R.embedding_cache_path(name)
                state = f"built: {path}" if (path / "info.json").is_file() else "not built"
            except RBNLPError as e:
                state = f"unavailable: {e}"
            print(f"{name}: {spec.description}\n    {state}")
        return 0
    names = args.embedding or [ATTACKS.get("textfooler").Config().embedding]
    for name in names:
        t0 = time.perf_counter()
        _, info = R.load_word_embedding(name, progress=not args.no_progress)
        print(f"{name}: {info['vocab_size']:,} words x {info['dim']} d, {info['neighbours']} "
              f"neighbours, fingerprint {info['fingerprint'][:16]}; ready in "
              f"{time.perf_counter() - t0:.1f} s; {info['cache_path']}", flush=True)
    return 0


def _check_names(task: str | None = None, attack: str | None = None) -> None:
    """The one-line errors of ``rbnlp run`` for an unknown task or attack name."""
    if task is not None:
        from .tasks import get_task

        get_task(task)
    if attack is not None:
        from .registry import ATTACKS

        ATTACKS.get(attack)


def leaderboard_markdown(tables, task: str, attack: str, show_runs: bool = False) -> str:
    """The markdown of ``rbnlp leaderboard``: one section per protocol, its ranked
    configurations, its degenerate block apart and (``show_runs``) each configuration's runs."""
    from .leaderboard import format_configurations, format_runs

    n_runs = sum(len(t.runs) for t in tables)
    out = [f"# {task} × {attack}: {n_runs} finished run{'s' if n_runs != 1 else ''}, "
           f"{len(tables)} protocol{'s' if len(tables) != 1 else ''}\n",
           "ACC and AUA: mean ± sample std over seeds; 95% CI: Wilson interval of all seeds' "
           "examples pooled. AUA@10 / AUA@30: AUA when at most 10% / 30% of the words may "
           "change; curve area: mean AUA over word caps 0-50%. PDR = 100 × (1 − AUA / "
           "clean accuracy on the attacked set). invalid swaps %: successful examples with "
           "a polarity-reversing word swap. runs: one per seed, pooled; repeats: later runs "
           "of a seed already pooled (listed, not pooled). Ranks order the means only: "
           "`rbnlp compare RUN_A RUN_B` tests a difference.\n"]
    for t in tables:
        label = "protocol not recorded" if not t.protocol_hash else f"protocol {t.protocol_hash}"
        out.append(f"## {label} ({len(t.runs)} runs)\n\n{t.description}\n")
        if len(t.ranked):
            out.append(format_configurations(t.ranked).to_markdown(index=False, disable_numparse=True) + "\n")
        else:
            out.append("(no non-degenerate run)\n")
        if len(t.degenerate):
            out.append("degenerate (the most-predicted class exceeds its gold share by more "
                       "than 15 points: AUA not meaningful; not ranked):\n")
            out.append(format_configurations(t.degenerate).drop(columns=["rank"])
                       .to_markdown(index=False, disable_numparse=True) + "\n")
        if show_runs:
            for _, c in t.configurations.iterrows():
                rows = t.runs_of(c["config"])
                out.append(f"runs of {c['defense']} {c['settings'] or '(defaults)'} "
                           f"[{c['config']}]:\n")
                out.append(format_runs(rows).to_markdown(index=False, disable_numparse=True) + "\n")
    return "\n".join(out)


def cmd_leaderboard(args) -> int:
    from .db import open_store
    from .leaderboard import (CONFIG_COLUMNS, format_paper, leaderboard, paper_rows,
                              protocol_tables)

    _check_names(args.task, args.attack)
    if args.paper:
        df = paper_rows(args.task, args.attack)
        if args.format == "csv":
            print(df.to_csv(index=False), end="")
        elif args.format == "json":
            print(df.to_json(orient="records", indent=2))
        else:
            print(format_paper(df).to_markdown(index=False, disable_numparse=True) if len(df)
                  else "(the paper reports no numbers here)")
        return 0
    store = open_store(args.db)
    runs = store.runs_frame()
    if args.matrix:
        return _print_matrix(runs, args.task, args.format, store.safe_url)
    board = leaderboard(task=args.task, attack=args.attack, runs=runs)
    tables = protocol_tables(board, runs)
    if args.format in ("csv", "json"):
        import pandas as pd

        if args.runs:
            df = board
        else:
            parts = [t.configurations.assign(protocol=t.protocol_hash) for t in tables]
            df = pd.concat(parts, ignore_index=True) if parts else \
                pd.DataFrame(columns=[*CONFIG_COLUMNS, "protocol"])
            df = df[["protocol", *CONFIG_COLUMNS]]
        print(df.to_csv(index=False) if args.format == "csv"
              else df.to_json(orient="records", indent=2), end="" if args.format == "csv"
              else "\n")
        return 0
    if not tables:
        print(f"(no finished runs of {args.task} × {args.attack} in {store.safe_url})\n")
    else:
        print(leaderboard_markdown(tables, args.task, args.attack, show_runs=args.runs))
    prows = paper_rows(args.task, args.attack)
    if len(prows):
        print("reported in paper (not measured here, not ranked with measured runs):\n")
        print(format_paper(prows).to_markdown(index=False, disable_numparse=True))
    return 0


def _print_matrix(runs, task: str, fmt: str, url: str) -> int:
    """``rbnlp leaderboard --matrix``: :func:`robustbench_nlp.leaderboard.attack_matrix`."""
    from .leaderboard import attack_matrix, format_matrix

    matrix, protocols = attack_matrix(runs, task)
    if fmt == "csv":
        print(matrix.to_csv(index=False), end="")
    elif fmt == "json":
        print(matrix.to_json(orient="records", indent=2))
    elif matrix.empty:
        print(f"(no finished runs of {task} in {url})")
    else:
        print(f"## {task}: mean AUA (%) per defense configuration and attack protocol "
              "(degenerate runs left out)\n")
        print(format_matrix(matrix).to_markdown(index=False, disable_numparse=True))
        print("\nprotocols: " + ", ".join(f"{c} = {h}" for c, h in protocols.items()))
        print("The ensemble attacks each example with every recipe of its suite (first "
              "success wins): its AUA is the worst case; the worst single-recipe AUA is an "
              "upper bound of it.")
    return 0


def cmd_rescore(args) -> int:
    from .db import open_store
    from .rescore import rescore

    store = open_store(args.db)
    n = rescore(store, args.run_id or None, echo=lambda s: print(s, flush=True))
    print(f"rescored {n} run{'s' if n != 1 else ''} in {store.safe_url}")
    return 0


def cmd_app(args) -> int:
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .app import SCRIPT
    from .db import open_store
    from .db.store import database_url
    from .errors import ConfigError

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    url = database_url(args.db)  # a URL, or a SQLite path ending in .db/.sqlite/.sqlite3
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"malformed database URL {url!r}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).is_file():
        raise ConfigError(f"database file {parsed.database!r} not found (store runs with "
                          "`rbnlp run` first, or pass --db)")
    open_store(url)  # fails here, in one line, on a wrong schema or an unreachable server
    cmd = [sys.executable, "-m", "streamlit", "run", str(SCRIPT), "--server.address",
           "localhost", "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer"]
    print(f"leaderboard app: http://localhost:{args.port} (database "
          f"{parsed.render_as_string()})", flush=True)
    # replace this process, so stopping `rbnlp app` stops the server
    os.execve(sys.executable, cmd, {**os.environ, "RBNLP_DB": url})
    return 0  # pragma: no cover - execve does not return


EVAL_HELP = """\
Attack a trained checkpoint as it is: no defense is trained. The checkpoint is loaded with
AutoModelForSequenceClassification and its own trained head (a folder holding a peft adapter,
adapter_config.json, loads onto its base model through peft), evaluated on the full dev split
(ACC), attacked, and stored and ranked like a trained run: defense "none", shown by
`rbnlp leaderboard`, `rbnlp show`, `rbnlp compare`, `rbnlp export`.

labels   the checkpoint's outputs map to the task's labels by their id2label names
         (case-insensitive); otherwise give --label-map 0=negative,1=positive. A different
         label count, an ambiguous mapping and a checkpoint whose head would be newly
         initialised (without --allow-new-head) stop with a one-line error before anything
         is stored.
card     a model card is stored with the run (runs.backbone["model_card"]): name, source
         (Hub id and revision, or the folder's sha256 fingerprint over file names, sizes and
         config/weight contents), --paper-url, --reported-acc/--reported-aua, parameters.
resume   every attacked example is committed as it is produced; --resume RUN_ID, or the
         same command again, continues an interrupted run (a folder must keep its
         fingerprint); --fresh starts a new one.

example  rbnlp eval --model ./my-sst2-model --task sst2 --attack textfooler --num-examples 100
"""


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
    r.add_argument("--epoch-eval", type=int, default=0, metavar="N",
                   help="after every epoch store ACC and AUA on the first N dev examples")
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
                   help="continue an interrupted run (re-running the same command also "
                   "continues the latest unfinished run with the same settings)")
    r.add_argument("--fresh", action="store_true",
                   help="start a new run even if an unfinished run with the same settings "
                   "exists")
    r.add_argument("--retrain", action="store_true",
                   help="train the defense even if an earlier run with the same training "
                   "settings (e.g. the same defense attacked by another recipe) has trained it")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--workers", type=int, default=1,
                   help="attack processes, each attacking a disjoint shard of the examples")
    r.add_argument("--mixed-precision", choices=("auto", "no", "bf16"), default="auto",
                   help="bfloat16 autocast: auto = on CUDA GPUs that support it (default), "
                   "bf16 = on any device, no = float32")
    r.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute backbone activations in the backward pass (less memory)")
    r.add_argument("--shard", metavar="I/N", default=None,
                   help="attack only shard I of N of the examples (rows I, I+N, ...); other "
                   "machines join with --resume RUN_ID --shard J/N and a shared --db")
    r.set_defaults(func=cmd_run)

    ev = sub.add_parser(
        "eval", help="attack a trained checkpoint as it is (no training), store the results",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=EVAL_HELP)
    ev.add_argument("--model", default=None, metavar="HUB_ID_OR_DIR",
                    help="the checkpoint: a save_pretrained folder of a *ForSequenceClassification "
                    "model, a folder holding a peft adapter (adapter_config.json), a Hub id")
    ev.add_argument("--task", default="sst2")
    ev.add_argument("--attack", default="textfooler")
    ev.add_argument("--label-map", default=None, metavar="ID=LABEL,...",
                    help="checkpoint output id → task label, e.g. 0=negative,1=positive "
                    "(default: match the checkpoint's id2label names, case-insensitive)")
    ev.add_argument("--allow-new-head", action="store_true",
                    help="accept a checkpoint without a trained classification head (its "
                    "head is then random: the run measures a random classifier)")
    ev.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    ev.add_argument("--name", default=None, help="model card name (default: the folder name "
                    "or Hub id)")
    ev.add_argument("--paper-url", default=None, help="model card: the paper or a link")
    ev.add_argument("--reported-acc", type=float, default=None,
                    help="model card: ACC its authors report (%%)")
    ev.add_argument("--reported-aua", type=float, default=None,
                    help="model card: AUA its authors report (%%)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--num-examples", type=int, default=100,
                    help="dev examples to attack (0 = all)")
    ev.add_argument("--query-budget", type=int, default=None,
                    help="max victim queries per attacked example")
    ev.add_argument("--attack-set", action="append", metavar="KEY=VALUE",
                    help="attack option (repeatable; rbnlp list attacks)")
    ev.add_argument("--max-length", type=int, default=None)
    ev.add_argument("--device", default=None)
    ev.add_argument("--mixed-precision", choices=("auto", "no", "bf16"), default="auto")
    ev.add_argument("--workers", type=int, default=1,
                    help="attack processes, each attacking a disjoint shard of the examples")
    ev.add_argument("--db", default=None, help="SQLAlchemy URL (default $RBNLP_DB or "
                    "sqlite:///rbnlp.db)")
    ev.add_argument("--data-dir", default=None, help="local GLUE mirror (default: found "
                    "automatically, else the Hugging Face Hub)")
    ev.add_argument("--resume", metavar="RUN_ID", default=None,
                    help="continue an interrupted evaluate-only run (re-running the same "
                    "command also continues the latest unfinished one)")
    ev.add_argument("--fresh", action="store_true",
                    help="start a new run even if an unfinished one with the same settings "
                    "exists")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="write a run's attacked examples (JSON lines, CSV, "
                        "Parquet or a Hugging Face dataset folder)")
    ex.add_argument("run_id", metavar="RUN_ID")
    ex.add_argument("--format", choices=("jsonl", "csv", "parquet", "hf"), default=None,
                    help="default: from the --out suffix (.jsonl, .csv, .parquet); hf writes "
                    "a datasets.Dataset folder (datasets.load_from_disk)")
    ex.add_argument("--out", required=True, metavar="PATH", help="output file (hf: folder)")
    ex.add_argument("--successful-only", action="store_true",
                    help="only the successful adversarial examples, as a training set: the "
                    "adversarial texts under the task's column names, label = gold")
    ex.add_argument("--db", default=None)
    ex.set_defaults(func=cmd_export)

    mg = sub.add_parser("merge", help="finish a run attacked in shards once every shard is in")
    mg.add_argument("run_id")
    mg.add_argument("--db", default=None)
    mg.add_argument("--data-dir", default=None)
    mg.set_defaults(func=cmd_merge)

    sw = sub.add_parser("sweep", help="run a grid of runs from a YAML file (skips finished "
                        "cells, resumes unfinished ones)")
    sw.add_argument("config", help="sweep YAML file (see robustbench_nlp/sweep.py)")
    sw.add_argument("--db", default=None)
    sw.add_argument("--dry-run", action="store_true", help="list the cells and an estimated time "
                    "(--launcher slurm: and each cell's job resources); run nothing")
    sw.add_argument("--status", action="store_true", help="print each cell's state, run id, "
                    "stored rows, Slurm job id and log files; run nothing")
    sw.add_argument("--launcher", choices=("local", "slurm"), default="local",
                    help="local: run the cells one after another here (default); slurm: submit "
                    "the unfinished cells as Slurm jobs through submitit")
    sl = sw.add_argument_group("Slurm (--launcher slurm)")
    sl.add_argument("--partition", default=None, help="Slurm partition (default: the "
                    "cluster's default)")
    sl.add_argument("--time", type=int, default=None, metavar="MIN",
                    help="time limit per cell in minutes (default: 3x its estimated time, "
                    "at least 60)")
    sl.add_argument("--gpus", type=int, default=None, help="GPUs per cell (default: 1 for a "
                    "cell that trains its defense, 0 for one that reuses a trained defense)")
    sl.add_argument("--cpus", type=int, default=None, help="CPUs per cell (default: 4 to "
                    "train, 2 to reuse)")
    sl.add_argument("--mem", type=float, default=None, metavar="GB", help="memory per cell "
                    "in GB (default: 32 for freelb and rose, 16 for other defenses, 8 to reuse)")
    sl.add_argument("--max-in-flight", type=int, default=16, metavar="N",
                    help="cells running at once (Slurm's array throttle; default 16)")
    sl.add_argument("--runs-dir", default="runs", help="runs folder shared by the jobs")
    sl.add_argument("--data-dir", default=None, help="GLUE mirror the jobs read (default: "
                    "found automatically)")
    sl.add_argument("--logs-dir", default="slurm-logs", help="folder of the jobs' submitit "
                    "files and logs, shared with the nodes (default slurm-logs/<sweep name>)")
    sl.add_argument("--sbatch", action="append", metavar="KEY=VALUE",
                    help="further sbatch option, e.g. account=lab, qos=high, constraint=a100 "
                    "(repeatable)")
    sl.add_argument("--no-wait", action="store_true", help="return once the jobs are "
                    "submitted (check on them with --status)")
    sl.add_argument("--poll", type=float, default=10.0, metavar="S",
                    help="seconds between looks at the queue while waiting (default 10)")
    sw.set_defaults(func=cmd_sweep)

    ls = sub.add_parser("list", help="list defenses, attacks, tasks or models")
    ls.add_argument("kind", choices=("defenses", "attacks", "tasks", "models"))
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="print one stored run")
    sh.add_argument("run_id")
    sh.add_argument("--db", default=None)
    sh.add_argument("--format", choices=("text", "json"), default="text",
                    help="text: protocol, intervals, curves, reversing swaps; json: the whole "
                    "stored record")
    sh.set_defaults(func=cmd_show)

    cp = sub.add_parser("compare", help="compare two finished runs of one protocol example by "
                        "example: AUAs with Wilson CIs, their difference with Newcombe's paired "
                        "CI, exact McNemar test")
    cp.add_argument("run_a", metavar="RUN_A")
    cp.add_argument("run_b", metavar="RUN_B")
    cp.add_argument("--db", default=None)
    cp.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    cp.add_argument("--shared-indices", action="store_true",
                    help="allow runs whose protocols differ only in the attacked example set "
                    "and compare them on the indices both attacked")
    cp.set_defaults(func=cmd_compare)

    lb = sub.add_parser("leaderboard", help="print the leaderboard of one task and attack")
    lb.add_argument("--task", default="sst2")
    lb.add_argument("--attack", default="textfooler")
    lb.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    lb.add_argument("--db", default=None)
    lb.add_argument("--paper", action="store_true",
                    help="print the paper's reported numbers (Tables 1-2) instead of runs")
    lb.add_argument("--runs", action="store_true",
                    help="also list every run of each configuration (csv/json: one row per "
                    "run instead of one per configuration)")
    lb.add_argument("--matrix", action="store_true",
                    help="defense × attack AUA of the task (every attack, the ensemble's "
                    "worst case beside the single recipes) instead of one attack's tables")
    lb.set_defaults(func=cmd_leaderboard)

    rc = sub.add_parser("rescore", help="recompute the protocol, robustness curves and "
                        "invalid-swap rate of stored runs from their example rows (no model, "
                        "no queries)")
    rc.add_argument("run_id", nargs="*", help="runs to rescore (default: every finished run)")
    rc.add_argument("--db", default=None)
    rc.set_defaults(func=cmd_rescore)

    ap = sub.add_parser("app", help="start the Streamlit leaderboard app on localhost")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default $RBNLP_DB or "
                    "sqlite:///rbnlp.db)")
    ap.add_argument("--port", type=int, default=8501)
    ap.set_defaults(func=cmd_app)

    rs = sub.add_parser("resources", help="build or list the cached offline attack resources "
                        "(word embeddings and their nearest neighbours)")
    rs.add_argument("action", choices=("build", "list"))
    rs.add_argument("--embedding", action="append", metavar="NAME",
                    help="embedding to build (repeatable; default: TextFooler's default)")
    rs.add_argument("--no-progress", action="store_true")
    rs.set_defaults(func=cmd_resources)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rbnlp`` console script. Errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RBNLPError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return 143 if str(e) == "SIGTERM" else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
