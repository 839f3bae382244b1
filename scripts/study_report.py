"""Write docs/results.md from a results database: the CPU-scale reproduction study.

Every number in the report is read from the database at the URL given (runs + metrics
tables) and the paper's own numbers from ``../shared/paper`` (Tables 1-2 CSVs); nothing is
typed in by hand. The runs it reads are those of::

    rbnlp sweep experiments/defaults.yaml             # every defense x task, seed 0 (issue #19)
    rbnlp sweep experiments/defenses.yaml             # 5 defenses x 4 tasks x 3 seeds, TextFooler
    rbnlp sweep experiments/defenses_advglue.yaml     # the same defenses on AdvGLUE
    rbnlp sweep experiments/defenses_ensemble.yaml    # ... under the attack suite's worst case
    rbnlp sweep experiments/sst2_lambda.yaml          # PEAFT λ sweep at the defaults
    rbnlp sweep experiments/epochs.yaml               # ACC/AUA after every epoch
    rbnlp sweep experiments/carriers.yaml             # the min-max objective on each carrier

(all with the same ``--db``), plus the PEAFT ε × K calibration from its own database
(``experiments/calibration.db``: ``experiments/peaft_calibration*.yaml``). A section whose
runs are missing says so instead of a table; the section "Sweeps: completion and compute"
counts, for every config in ``experiments/``, the cells finished and lists those still to
run. Where a cell has several finished runs, the tables use its earliest one, as
``rbnlp sweep`` does.

Usage::

    python scripts/study_report.py --db sqlite:///docs/study.db [--out docs/results.md]

With ``--out``, the two Figure-2 plots (``lambda.png``, ``epochs.png``) are written next to
the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from robustbench_nlp.metrics import DEGENERATE_MARGIN

#: the degeneracy flag in words, for the tables' notes (robustbench_nlp.metrics)
DEGENERATE_RULE = (f"the most-predicted class exceeds its gold share by more than "
                   f"{DEGENERATE_MARGIN:g} points")

METRICS = ["ACC", "AUA", "AVG", "ASR", "avg queries", "perturbed %"]
RENAME = {"acc": "ACC", "aua": "AUA", "avg": "AVG", "asr": "ASR", "avg_queries": "avg queries",
          "avg_perturbed_pct": "perturbed %", "trainable_params": "trainable",
          "train_seconds": "train s"}
DEFENSE_ORDER = ["finetune", "prompt-tuning", "peaft", "freelb", "rose"]
PAPER_NAME = {"peaft": "PEAFT", "freelb": "FreeLB", "rose": "ROSE"}
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
#: sweep configs whose runs live in the calibration database (experiments/calibration.db)
CALIBRATION_CONFIGS = ("peaft_calibration.yaml", "peaft_calibration_seeds.yaml")
#: what the robustness columns of the seed and grid tables mean
COLUMN_NOTE = ("`AUA 95% CI (pooled)`: Wilson interval of AUA with the seeds' attacked examples "
               "pooled. `AUA@30`: AUA when an attack may change at most 30% of the words, "
               "derived exactly from the stored examples (TextDefender's cap); `curve area`: "
               "mean AUA over word caps 0-50%; `invalid swaps %`: successful adversarial "
               "examples holding a polarity-reversing word swap (Hu & Liu opinion lexicon); "
               "each a mean over the seeds.")


def load_runs(url: str) -> pd.DataFrame:
    """Finished runs with their metrics, plus ``params`` (the ``--set`` options as a dict
    of strings), ``dcfg`` (the effective defense config) and ``epoch_eval``.

    Raises:
        robustbench_nlp.errors.RBNLPError: the database cannot be opened.
    """
    from robustbench_nlp.db import open_store

    df = open_store(url).runs_frame()
    if df.empty:
        return df
    df = df[df["status"] == "finished"].copy()
    df["params"] = [dict((c or {}).get("run", {}).get("defense_params") or {})
                    for c in df["config"]]
    df["dcfg"] = [dict((c or {}).get("defense") or {}) for c in df["config"]]
    df["epoch_eval"] = [(c or {}).get("run", {}).get("epoch_eval_examples") for c in df["config"]]
    return df.rename(columns=RENAME).sort_values("created_at")


def _top_class(r) -> tuple[str, float, float] | None:
    """The run's most-predicted class with its predicted and gold shares (%), or None when
    the run recorded no class shares."""
    pred, gold = r.get("pred_distribution") or {}, r.get("gold_distribution") or {}
    if not pred:
        return None
    top = max(pred, key=pred.get)
    return top, pred[top], gold.get(top, 0.0)


def _degenerate(r) -> str:
    """``"yes (98.0 / 68.4)"``: predicted / gold share of the most-predicted class, or "no"."""
    top = _top_class(r)
    if not bool(r.get("degenerate")) or top is None:
        return "no"
    return f"yes ({top[1]:.1f} / {top[2]:.1f})"


def _class_share(r) -> str:
    """``"'equivalent' 98.0% of predictions (gold 68.4%)"`` for a run's most-predicted class,
    or ``"class shares not recorded"``."""
    top = _top_class(r)
    if top is None:
        return "class shares not recorded"
    return f"'{top[0]}' {top[1]:.1f}% of predictions (gold {top[2]:.1f}%)"


def _params_are(df: pd.DataFrame, **want) -> pd.Series:
    return df["params"].apply(lambda p: p == {k: str(v) for k, v in want.items()})


def _fmt(x, nd=2) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.{nd}f}"


def _mean_pm(v: pd.Series) -> str:
    """``"82.00 ± 2.00"``: mean ± sample standard deviation (the mean alone for one value)."""
    mean, sd = _mean_sd(v)
    return f"{mean:.2f} ± {sd:.2f}" if len(v) > 1 else _fmt(mean)


def _pooled_ci(g: pd.DataFrame) -> str:
    """``"[0.85, 3.57]"``: the Wilson 95% interval of AUA with the runs' attacked examples
    pooled (robust = failed); ``–`` when a run lacks its counts."""
    from robustbench_nlp.stats import wilson_interval

    k, n = pd.to_numeric(g["failed"], errors="coerce"), pd.to_numeric(g["attacked"],
                                                                      errors="coerce")
    if k.isna().any() or n.isna().any() or n.sum() <= 0:
        return "–"
    lo, hi = wilson_interval(int(k.sum()), int(n.sum()))
    return f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def _robustness_cells(g: pd.DataFrame) -> dict:
    """Mean AUA@30, curve area and invalid-swap rate of the runs ``g`` (``–`` when not
    recorded: run ``rbnlp rescore``)."""
    out = {}
    for col, name in (("aua_at_30", "AUA@30"), ("curve_area", "curve area"),
                      ("invalid_swap_rate", "invalid swaps %")):
        v = pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(dtype=float)
        out[name] = _fmt(v.mean()) if len(v) and v.notna().all() else "–"
    return out


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)  # keep the formatted strings


def _paper(paper: pd.DataFrame | None, method: str, task: str, attack: str) -> str:
    if paper is None:
        return "–"
    rows = paper[(paper["method"] == method) & (paper["task"] == task)
                 & (paper["attack"] == attack) & (paper["backbone"] == "roberta-base")]
    if rows.empty:
        return "–"
    r = rows.iloc[0]
    return f"{r['ACC']} / {r['AUA']} / {r['AVG']}"  # as printed (may read OOM)


def _budget(defense: str, **override) -> str | None:
    """``"up to 8,000 training examples, 1 epoch"``: a defense's training budget at its
    defaults (with ``override``, e.g. ``train_examples=2000``), read from its config; None for
    a defense plugin that is not installed here."""
    from robustbench_nlp.errors import RBNLPError
    from robustbench_nlp.runner import RunConfig, make_defense

    try:
        c = make_defense(RunConfig(defense=defense, defense_params={
            k: str(v) for k, v in override.items()})).config
    except RBNLPError:
        return None
    size = ("the whole training split" if c.train_examples is None
            else f"up to {c.train_examples:,} training examples")
    return f"{size}, {c.epochs} epoch{'' if c.epochs == 1 else 's'}"


def budget_text(**override) -> str:
    """The five defenses' training budgets (see :func:`_budget`), grouped:
    ``"PEAFT and prompt tuning: up to 8,000 training examples, 1 epoch; ..."``."""
    names = {"finetune": "finetune", "prompt-tuning": "prompt tuning", **PAPER_NAME}
    groups: dict[str, list[str]] = {}
    for d in DEFENSE_ORDER:
        b = _budget(d, **override)
        if b is not None:
            groups.setdefault(b, []).append(names[d])
    return "; ".join(f"{ds[0] if len(ds) == 1 else ', '.join(ds[:-1]) + ' and ' + ds[-1]}: {b}"
                     for b, ds in groups.items())


def epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, epoch) of the runs with ``--epoch-eval`` on SST-2: defense, run id,
    epoch, ACC, AUA, ASR (floats)."""
    rows = []
    sel = df[df["epoch_eval"].notna() & (df["task"] == "sst2")] if len(df) else df
    for _, r in sel.iterrows():
        for e in (r["train_stats"] or {}).get("epochs") or []:
            rows.append({"defense": r["defense"], "run id": r["id"], "epoch": e.get("epoch"),
                         "ACC": e.get("acc"), "AUA": e.get("aua"), "ASR": e.get("asr")})
    return pd.DataFrame(rows, columns=["defense", "run id", "epoch", "ACC", "AUA", "ASR"])


TASKS = ("sst2", "mrpc", "rte", "qnli")


def _default_defense(df: pd.DataFrame, vary: tuple[str, ...] = ()) -> pd.Series:
    """Whether each run's resolved defense config equals its defense's defaults on the run's
    task (per-task budgets included), except for the hyperparameters in ``vary`` (so a run with ``--set train_examples=2000`` counts when
    2,000 is that defense's default)."""
    import dataclasses

    from robustbench_nlp.errors import RBNLPError
    from robustbench_nlp.runner import RunConfig, make_defense

    def strings(c: dict) -> dict:
        return {k: str(v) for k, v in c.items() if k not in vary}

    def is_default(defense: str, task: str, dcfg: dict) -> bool:
        try:
            default = dataclasses.asdict(make_defense(RunConfig(defense=defense,
                                                                task=task)).config)
        except RBNLPError:  # a defense plugin not installed here
            return False
        return strings(dcfg) == strings(default)

    return pd.Series([is_default(d, t, c) for d, t, c in
                      zip(df["defense"], df["task"], df["dcfg"])], index=df.index, dtype=bool)


def grid_runs(df: pd.DataFrame, attack: str) -> pd.DataFrame:
    """The runs of experiments/defenses.yaml (TextFooler) or defenses_advglue.yaml (AdvGLUE):
    every default (resolved), 100 attacked examples, one per (defense, task, seed)."""
    if df.empty:
        return df
    sel = df[(df["attack"] == attack) & _default_defense(df) & df["epoch_eval"].isna()
             & (df["num_examples"] == 100) & (df["model"] == "minilm")]
    return sel.drop_duplicates(["defense", "task", "seed"], keep="first")


GRID_HEAD = {
    "textfooler": ("## All defenses × tasks at the default budgets, TextFooler (Table 1)",
                   "`rbnlp sweep experiments/defenses.yaml`: every default ({budget}; the "
                   "per-task budgets of docs/defenses.md on MRPC, RTE and QNLI), TextFooler's "
                   "default protocol on 100 attacked dev examples, seeds 0, 1, 2; `seeds` counts "
                   "the finished ones. Mean ± sample standard deviation over them."),
    "advglue": ("## All defenses × tasks at the default budgets, AdvGLUE (Table 2)",
                "`rbnlp sweep experiments/defenses_advglue.yaml`: the defenses trained by the "
                "TextFooler cells (reused, same training settings), on every AdvGLUE dev example "
                "of the task (AdvGLUE has no MRPC set); AUA = accuracy on them, ACC = clean "
                "GLUE dev accuracy."),
    "ensemble": ("## All defenses × tasks at the default budgets, worst case over the attack "
                 "suite",
                 "`rbnlp sweep experiments/defenses_ensemble.yaml`: the defenses trained by the "
                 "TextFooler cells (reused), the same 100 dev examples attacked by each recipe "
                 "of `--attack ensemble` in turn (DeepWordBug, TextBugger, A2T, TextFooler, "
                 "PWWS) until one succeeds; an example counts as robust only if every recipe "
                 "fails. `AUA TextFooler`: the TextFooler table's AUA of the same runs' "
                 "defenses, for the drop."),
}


def section_grid(df: pd.DataFrame, paper, attack: str = "textfooler") -> str:
    """The five defenses × the GLUE tasks at the default budgets under ``attack``
    (``textfooler``, ``advglue`` or ``ensemble``), mean ± sample std over the seeds finished
    so far (their number is shown; the configs ask for 3)."""
    title, text = GRID_HEAD[attack]
    out = [title, "", text.format(budget=budget_text()), ""]
    sel = grid_runs(df, attack)
    if sel.empty:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    metrics = ["ACC", "AUA", "AVG"] + (["ASR"] if attack != "advglue" else [])
    tf = grid_runs(df, "textfooler") if attack == "ensemble" else None
    rows = []
    for task in TASKS:
        for d in DEFENSE_ORDER:
            g = sel[(sel["task"] == task) & (sel["defense"] == d)]
            if g.empty:
                continue
            row = {"task": task, "defense": d, "seeds": len(g)}
            for m in metrics:
                row[m] = _mean_pm(g[m])
                if m == "AUA":
                    row["AUA 95% CI (pooled)"] = _pooled_ci(g)
                    if tf is not None:
                        t = tf[(tf["task"] == task) & (tf["defense"] == d)
                               & tf["seed"].isin(g["seed"])]
                        row["AUA TextFooler"] = _mean_pm(t["AUA"]) if len(t) else "–"
            if attack == "textfooler":
                row.update(_robustness_cells(g))
            elif attack == "ensemble":
                row["invalid swaps %"] = _robustness_cells(g)["invalid swaps %"]
            flagged = int(g["degenerate"].fillna(False).astype(bool).sum())
            row["degenerate"] = f"{flagged} of {len(g)}"
            row["train s"] = _fmt(g["train s"].mean(), 0)
            row["run ids"] = ", ".join(g.sort_values("seed")["id"])
            if attack != "ensemble":
                row["paper RoBERTa-base (ACC / AUA / AVG)"] = _paper(
                    paper, PAPER_NAME.get(d, ""), task, attack)
            rows.append(row)
    out += [_md(pd.DataFrame(rows)), "",
            f"`degenerate`: runs where {DEGENERATE_RULE}; their AUA reflects a nearly "
            "constant prediction. `train s`: mean "
            "training seconds (of the TextFooler cell's training where the defense was "
            "reused). " + COLUMN_NOTE, ""]
    flagged = sel[sel["degenerate"].fillna(False).astype(bool)]
    if attack == "textfooler" and len(flagged):
        order = {t: i for i, t in enumerate(TASKS)}
        flagged = flagged.assign(_t=flagged["task"].map(order),
                                 _d=flagged["defense"].map(DEFENSE_ORDER.index))
        items = [f"{r['defense']} on {r['task']}, seed {r['seed']} ({r['id']}): ACC "
                 f"{r['ACC']:.2f}, {_class_share(r)}"
                 for _, r in flagged.sort_values(["_t", "_d", "seed"]).iterrows()]
        out += ["Degenerate runs in this table (the AdvGLUE and attack-suite tables reuse "
                "their defenses): " + "; ".join(items) + ".", ""]
    return "\n".join(out)


def section_sweeps(url: str, df: pd.DataFrame, experiments: Path,
                   calibration: str | None = None) -> str:
    """Completion and compute of every sweep config in ``experiments`` (``*.yaml``): its cells,
    how many have a finished run in the database (the sweep's own cell identity,
    :func:`robustbench_nlp.sweep.cell_status`), their training and attack hours (training
    counted once: a run that reused another run's trained defense adds its attack only), and
    the cells not finished yet, grouped over seeds. The configs of
    :data:`CALIBRATION_CONFIGS` are counted in the ``calibration`` database instead (not
    listed when it is None)."""
    from robustbench_nlp.db import open_store
    from robustbench_nlp.sweep import cell_status, load_sweep

    out = ["## Sweeps: completion and compute", "",
           "Each committed sweep config, its cells and how many of them have a finished run "
           "here (`rbnlp sweep --db URL --dry-run experiments/F` lists the same). Hours are "
           "the runs' recorded training and attack seconds; a run that reused another run's "
           "trained defense adds its attack only.",
           ""]
    files = sorted(experiments.glob("*.yaml")) if experiments.is_dir() else []
    if not files:
        return "\n".join(out + [f"(no sweep configs in {experiments})", ""])
    store = open_store(url)
    main_by_id = df.set_index("id") if len(df) else df
    cal_store = cal_by_id = None
    if calibration:
        cal = load_runs(calibration)
        cal_store, cal_by_id = open_store(calibration), cal.set_index("id") if len(cal) else cal
    rows, todo = [], []
    for f in files:
        if f.name in CALIBRATION_CONFIGS and cal_store is None:
            continue
        sweep = load_sweep(f)
        here, by_id = ((cal_store, cal_by_id) if f.name in CALIBRATION_CONFIGS
                       else (store, main_by_id))
        states = cell_status(here, sweep.cells)
        ids, missing = [], {}
        for c in sweep.cells:
            st, rid = states.get(c.key, ("new", ""))
            if st == "finished":
                ids.append(rid)
                continue
            missing.setdefault(c.label(seed=False), []).append(str(c.cfg.seed))
        runs = by_id.loc[[i for i in ids if i in by_id.index]] if len(ids) else by_id.iloc[:0]
        trained = runs[[not (s or {}).get("reused_from") for s in runs["train_stats"]]] \
            if len(runs) else runs
        rows.append({
            "config": f"experiments/{f.name}"
                      + (" (experiments/calibration.db)" if f.name in CALIBRATION_CONFIGS else ""),
            "cells": len(sweep.cells), "finished": len(ids),
            "train h": _fmt(trained["train s"].sum() / 3600 if len(runs) else 0.0, 2),
            "attack h": _fmt(runs["attack_seconds"].sum() / 3600 if len(runs) else 0.0, 2)})
        if missing:
            todo.append(f"- `experiments/{f.name}`, not finished yet: "
                        + "; ".join(f"{g} seed{'s' if len(s) > 1 else ''} {', '.join(s)}"
                                   for g, s in missing.items()))
    out += [_md(pd.DataFrame(rows)), ""] + todo + ([""] if todo else [])
    return "\n".join(out)


def default_cells(url: str, df: pd.DataFrame, experiments: Path) -> tuple[list[dict], int] | None:
    """The finished cells of experiments/defaults.yaml (issue #19's acceptance: every defense
    on every task at its defaults, per-task budgets included, seed 0), one row each, and the
    number of cells; None when ``experiments`` has no defaults.yaml. A cell passes when its
    ACC beats the task's majority class (the gold share of the most frequent dev label) and
    it is not flagged degenerate."""
    from robustbench_nlp.db import open_store
    from robustbench_nlp.sweep import cell_status, load_sweep

    path = experiments / "defaults.yaml"
    if not path.is_file():
        return None
    sweep = load_sweep(path)
    states = cell_status(open_store(url), sweep.cells)
    by_id = df.set_index("id") if len(df) else df
    rows = []
    for c in sweep.cells:
        st, rid = states.get(c.key, ("new", ""))
        if st != "finished" or rid not in by_id.index:
            continue
        r = by_id.loc[rid]
        gold = r.get("gold_distribution") or {}
        majority = max(gold.values()) if gold else float("nan")
        ok = bool(r["ACC"] > majority) and not bool(r.get("degenerate"))
        d = r["dcfg"]
        size = "all" if d.get("train_examples") is None else f"{int(d['train_examples']):,}"
        budget_values = getattr(task_budget(c.cfg.defense, c.cfg.task), "values", None) or {}
        extra = [k for k in budget_values if k not in ("train_examples", "epochs", "lr")]
        budget = f"{size} × {d.get('epochs')}, lr {d.get('lr')}"
        budget += "".join(f"; {k} {d.get(k)}" for k in extra)
        rows.append({"defense": c.cfg.defense, "task": c.cfg.task, "run id": rid,
                     "budget": budget,
                     "ACC": _fmt(r["ACC"]), "majority ACC": _fmt(majority),
                     "degenerate": _degenerate(r), "passes": "yes" if ok else "**no**",
                     "AUA": _fmt(r["AUA"]), "AUA@30": _fmt(pd.to_numeric(r.get("aua_at_30"))),
                     "‖δ‖/‖E‖": _fmt(pd.to_numeric(r.get("delta_ratio")), 3),
                     "why (failing cells)": "" if ok else budget_evidence(c.cfg.defense,
                                                                         c.cfg.task)})
    return rows, len(sweep.cells)


def section_defaults(url: str, df: pd.DataFrame, experiments: Path,
                     cells: tuple[list[dict], int] | None = None) -> str:
    """experiments/defaults.yaml, one row per finished cell (``cells``: :func:`default_cells`,
    computed here when not given)."""
    out = ["## Default runs: every defense on every task", "",
           "`rbnlp sweep experiments/defaults.yaml`: `rbnlp run --defense D --task T` at "
           "every default (per-task budgets: docs/defenses.md, \"Per-task budgets\"), seed "
           "0, TextFooler's default protocol on 100 dev examples. `passes`: ACC above the "
           f"task's majority-class ACC and not degenerate ({DEGENERATE_RULE}).", ""]
    cells = cells if cells is not None else default_cells(url, df, experiments)
    if cells is None:
        return "\n".join(out + [f"(no defaults.yaml in {experiments})", ""])
    rows, total = cells
    if not rows:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    passed = sum(r["passes"] == "yes" for r in rows)
    out += [f"{len(rows)} of {total} cells finished; {passed} pass.", "",
            _md(pd.DataFrame(rows)), "",
            "`why`: the evidence recorded with the defense's per-task budget "
            "(`Defense.task_budgets`, printed by `rbnlp list defenses`), for a cell that does "
            "not pass.", ""]
    return "\n".join(out)


def task_budget(defense: str, task: str) -> "TaskBudget | None":
    """``defense``'s per-task budget on ``task``
    (:class:`~robustbench_nlp.defenses.base.TaskBudget`), or None (none recorded, or a
    defense plugin not installed here)."""
    from robustbench_nlp.errors import RBNLPError
    from robustbench_nlp.registry import DEFENSES

    try:
        return getattr(DEFENSES.get(defense), "task_budgets", {}).get(task)
    except RBNLPError:
        return None


def budget_evidence(defense: str, task: str) -> str:
    """The evidence of ``defense``'s per-task budget on ``task`` (:func:`task_budget`), or
    ``"no per-task budget recorded"``."""
    budget = task_budget(defense, task)
    return budget.evidence if budget is not None and budget.evidence else \
        "no per-task budget recorded"


def lambda_runs(df: pd.DataFrame) -> pd.DataFrame:
    """experiments/sst2_lambda.yaml: PEAFT on SST-2, seed 0, every default but λ (the λ = 0.5
    row is the default run), one run per λ, sorted by the column ``λ``."""
    sel = df[(df["defense"] == "peaft") & (df["task"] == "sst2") & (df["attack"] == "textfooler")
             & (df["seed"] == 0) & df["epoch_eval"].isna() & (df["model"] == "minilm")
             & (df["num_examples"] == 100)] if len(df) else df
    if len(sel):
        sel = sel[_default_defense(sel, vary=("adv_lambda",))].copy()
    if sel.empty:
        return sel
    sel["λ"] = sel["dcfg"].apply(lambda c: float(c.get("adv_lambda")))
    return sel.drop_duplicates("λ", keep="first").sort_values("λ")


def section_lambda(df: pd.DataFrame, figures: Path | None = None) -> str:
    """experiments/sst2_lambda.yaml: the λ sweep at the default budget, with its plot."""
    out = ["## PEAFT λ sweep (Figure 2a analogue)", "",
           "`rbnlp sweep experiments/sst2_lambda.yaml`: PEAFT on SST-2, seed 0, every default "
           f"but λ ({_budget('peaft')}; λ = 0.5 is the default run, λ = 0 trains like prompt "
           "tuning), TextFooler's default protocol on 100 dev examples. The paper sweeps λ on "
           "QNLI.", ""]
    sel = lambda_runs(df)
    if sel.empty:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    rows = [{"λ": f"{r['λ']:g}", "run id": r["id"], "ACC": _fmt(r["ACC"]), "AUA": _fmt(r["AUA"]),
             "AUA@10": _fmt(pd.to_numeric(r.get("aua_at_10"))),
             "AUA@30": _fmt(pd.to_numeric(r.get("aua_at_30"))),
             "curve area": _fmt(pd.to_numeric(r.get("curve_area"))),
             "AVG": _fmt(r["AVG"]), "ASR": _fmt(r["ASR"]),
             "‖δ‖/‖E‖": _fmt(pd.to_numeric(r.get("delta_ratio")), 3),
             "degenerate": _degenerate(r), "train s": _fmt(r["train s"], 0)}
            for _, r in sel.iterrows()]
    out += [_md(pd.DataFrame(rows)), ""]
    if figures is not None:
        name = _plot(figures / "lambda.png", "PEAFT on SST-2: λ vs ACC, AUA@10 and AUA", "λ",
                     {"ACC": (sel["λ"], sel["ACC"]), "AUA": (sel["λ"], sel["AUA"]),
                      "AUA@10": (sel["λ"], pd.to_numeric(sel["aua_at_10"]))})
        if name:
            out += [f"![λ vs ACC and AUA]({name})", ""]
    return "\n".join(out)


def section_calibration(url: str | None) -> str:
    """experiments/peaft_calibration.yaml (ε × K on SST-2, seed 0) and
    experiments/peaft_calibration_seeds.yaml (seeds 1-2 at the chosen point), read from the
    calibration database at ``url`` (``None``: no section)."""
    from robustbench_nlp.defenses.peaft import PEAFTConfig

    if not url:  # no calibration database here: no section
        return ""
    d = PEAFTConfig()
    out = ["## PEAFT ε × K calibration", "",
           "`rbnlp sweep experiments/peaft_calibration.yaml` (ε ∈ {0.05, 0.1, 0.2, 0.4, 0.8} × "
           "the word-embedding RMS coordinate, K ∈ {1, 2, 3}, α = ε/K, λ = 0.5; SST-2, 2,000 "
           "training sentences, seed 0, 100 attacked dev examples, TextFooler in the "
           "`counterfitted-glove-50d` space) and `rbnlp sweep "
           "experiments/peaft_calibration_seeds.yaml` (seeds 1 and 2 at the chosen point). "
           "`‖δ‖/‖E‖`: mean per-token ‖δ‖₂/‖E(x)‖₂ of the last PGD step over training "
           "(FreeLB's SST-2 default on this backbone: 0.102, docs/study.db of the earlier "
           f"study). Current default: ε = {d.epsilon:g}, K = {d.adv_steps}. `train s` was "
           "measured on a shared 2-core machine under varying load (1-3 jobs): it compares "
           "nothing across cells.", ""]
    df = load_runs(url)
    if len(df):
        df = df[(df["defense"] == "peaft") & (df["task"] == "sst2")
                & (df["attack"] == "textfooler")]
    if df.empty:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    df = df.copy()
    df["ε"] = df["dcfg"].apply(lambda c: float(c.get("epsilon")))
    df["K"] = df["dcfg"].apply(lambda c: int(c.get("adv_steps")))
    rows = []
    for (k, eps), g in df.sort_values(["K", "ε", "seed"]).groupby(["K", "ε"], sort=False):
        first = g.drop_duplicates("seed", keep="first")
        rows.append({"K": str(k), "ε": f"{eps:g}", "seeds": str(len(first)),
                     "ACC": _mean_pm(first["ACC"]), "AUA": _mean_pm(first["AUA"]),
                     "AUA 95% CI (pooled)": _pooled_ci(first),
                     "AUA@10": _mean_pm(pd.to_numeric(first["aua_at_10"])),
                     "AUA@30": _mean_pm(pd.to_numeric(first["aua_at_30"])),
                     "curve area": _mean_pm(pd.to_numeric(first["curve_area"])),
                     "‖δ‖/‖E‖": _fmt(pd.to_numeric(first["delta_ratio"]).mean(), 3),
                     "degenerate": ", ".join(_degenerate(r) for _, r in first.iterrows()),
                     "train s": _fmt(first["train s"].mean(), 0),
                     "default": "yes" if (eps, k) == (d.epsilon, d.adv_steps) else ""})
    return "\n".join(out + [_md(pd.DataFrame(rows)), ""])


def section_carriers(df: pd.DataFrame) -> str:
    """PEAFT vs its λ = 0 reference (prompt-tuning) for every carrier."""
    out = ["## Carriers: the min-max objective on prompt, prefix, P-tuning and LoRA", "",
           "`rbnlp sweep experiments/carriers.yaml`: `rbnlp run --defense peaft --set "
           "carrier=C --set train_examples=2000` and the same with `--defense prompt-tuning` "
           "(the λ = 0 reference); SST-2, seed 0, TextFooler's default protocol on 100 dev "
           f"examples. `degenerate`: predicted / gold share of the most-predicted class when "
           f"{DEGENERATE_RULE} (the AUA of a nearly constant classifier).", ""]
    sel = df[df["defense"].isin(["peaft", "prompt-tuning"]) & (df["task"] == "sst2")
             & (df["attack"] == "textfooler") & (df["seed"] == 0) & df["epoch_eval"].isna()
             & (df["num_examples"] == 100) & (df["model"] == "minilm")]
    keep = sel["params"].apply(lambda p: set(p) <= {"train_examples", "carrier"}
                               and p.get("train_examples") == "2000")
    sel = sel[keep].copy()
    if sel.empty:
        return "\n".join(out + ["(no finished carrier runs in the database)", ""])
    sel["carrier"] = sel["dcfg"].apply(lambda c: c.get("carrier", "prompt"))
    sel = sel.drop_duplicates(["carrier", "defense"], keep="first")
    rows = []
    for c in ("prompt", "prefix", "ptuning", "lora"):
        for d, name in (("prompt-tuning", "without (λ = 0)"), ("peaft", "with (λ = 0.5)")):
            r = sel[(sel["carrier"] == c) & (sel["defense"] == d)]
            if r.empty:
                continue
            r = r.iloc[0]
            rows.append({"carrier": c, "adversarial term": name, "run id": r["id"],
                         "ACC": _fmt(r["ACC"]), "AUA": _fmt(r["AUA"]), "AVG": _fmt(r["AVG"]),
                         "ASR": _fmt(r["ASR"]), "avg queries": _fmt(r["avg queries"]),
                         "degenerate": _degenerate(r), "trainable": f"{int(r['trainable']):,}",
                         "train s": _fmt(r["train s"], 0)})
    return "\n".join(out + [_md(pd.DataFrame(rows)), ""])


def section_epochs(df: pd.DataFrame, figures: Path | None = None) -> str:
    """experiments/epochs.yaml: train_stats['epochs'] of each run."""
    out = ["## ACC and AUA after every epoch (Figure 2b analogue)", "",
           "`rbnlp sweep experiments/epochs.yaml`: PEAFT, FreeLB and ROSE at their SST-2 "
           "defaults but 3 epochs, seed 0; after every epoch ACC on the full dev split and AUA "
           "under TextFooler (default protocol) on the first 50 dev examples "
           "(`--epoch-eval 50`). The learning-rate schedule spans the 3 epochs.", ""]
    tab = epoch_rows(df)
    if tab.empty:
        return "\n".join(out + ["(no finished runs with --epoch-eval in the database)", ""])
    shown = tab.dropna(axis=1, how="all")  # ASR only when the runs recorded it
    out += [_md(shown.assign(**{m: shown[m].map(_fmt) for m in ("ACC", "AUA", "ASR")
                               if m in shown})), ""]
    if figures is not None:
        curves = {}
        for d, g in tab.groupby("defense", sort=False):
            curves[f"{d} AUA"] = (g["epoch"], g["AUA"].astype(float))
            curves[f"{d} ACC"] = (g["epoch"], g["ACC"].astype(float))
        name = _plot(figures / "epochs.png", "SST-2: ACC (dashed) and AUA (solid) after each "
                     "epoch", "epoch", curves)
        if name:
            out += [f"![ACC and AUA over epochs]({name})", ""]
    return "\n".join(out)


def _rho_text(rho: float, name: str) -> str:
    return f"undefined ({name} is the same at every λ)" if pd.isna(rho) else f"{rho:.2f}"


def _mean_sd(v: pd.Series) -> tuple[float, float]:
    v = v.astype(float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _seed_pairs(sel: pd.DataFrame, a: str, b: str, task: str | None = None) -> list:
    """``(run of a, run of b)`` with the same seed (and task), both non-degenerate."""
    pairs = []
    ok = sel[~sel["degenerate"].fillna(False).astype(bool)]
    if task is not None:
        ok = ok[ok["task"] == task]
    for seed in sorted(set(ok["seed"])):
        ra = ok[(ok["defense"] == a) & (ok["seed"] == seed)]
        rb = ok[(ok["defense"] == b) & (ok["seed"] == seed)]
        if len(ra) and len(rb):
            pairs.append((ra["id"].iloc[0], rb["id"].iloc[0]))
    return pairs


def paired_verdict(store, sel: pd.DataFrame, task: str | None = None) -> tuple[str, str]:
    """The verdict on "PEAFT has higher AUA than FreeLB and ROSE" from paired tests:
    for each baseline, PEAFT's and the baseline's runs of the same seed (degenerate runs left
    out) pooled into one table (:func:`robustbench_nlp.compare.pooled_comparison`: exact
    McNemar test of the summed discordant examples, Newcombe's paired 95% interval).

    Returns:
        ``(verdict, details)``: "supported" when PEAFT's AUA is significantly higher (5%)
        than both baselines', "contradicted" when significantly lower than either, else "not
        shown"; details quote each test.
    """
    from robustbench_nlp.compare import pooled_comparison

    tests, parts = {}, []
    for d in ("freelb", "rose"):
        pairs = _seed_pairs(sel, "peaft", d, task)
        if not pairs:
            parts.append(f"PEAFT vs {PAPER_NAME[d]}: no seed with both runs non-degenerate")
            continue
        t = pooled_comparison(store, pairs)
        tests[d] = t
        parts.append(f"PEAFT {t.aua_a_pct:.2f} vs {PAPER_NAME[d]} {t.aua_b_pct:.2f} "
                     f"({len(pairs)} seed pair{'s' if len(pairs) != 1 else ''}): "
                     f"{t.text()}")
    if len(tests) == 2 and all(t.significant and t.diff_points > 0 for t in tests.values()):
        verdict = "supported (PEAFT significantly higher than both)"
    elif any(t.significant and t.diff_points < 0 for t in tests.values()):
        worse = [PAPER_NAME[d] for d, t in tests.items() if t.significant and t.diff_points < 0]
        verdict = f"contradicted (PEAFT significantly lower than {' and '.join(worse)})"
    elif len(tests) < 2:
        verdict = "not testable (a baseline has no non-degenerate run paired with PEAFT)"
    else:
        verdict = "not shown (no significant difference at the 5% level)"
    return verdict, "; ".join(parts)


#: the attacks of the default grid, as the reading names them
CLAIM_ATTACKS = (("textfooler", "TextFooler"), ("advglue", "AdvGLUE"),
                 ("ensemble", "worst case over the attack suite"))


def _claim_grid(df: pd.DataFrame, store, attack: str, name: str) -> list[str]:
    """The AUA claim on the default grid under ``attack``: one bullet with the count of
    tasks where it is supported, one sub-bullet per task with its paired verdict
    (:func:`paired_verdict`, degenerate runs left out) and the mean ACCs."""
    claim = "*PEAFT reaches far higher AUA than FreeLB and ROSE at similar ACC*"
    grid = grid_runs(df, attack)
    if store is None or grid.empty:
        return [f"- {claim} ({name}): no finished runs of this sweep in the database yet."]
    parts, supported, compared = [], 0, 0
    for task in TASKS:
        g = grid[grid["task"] == task]
        missing = [PAPER_NAME[d] for d in ("peaft", "freelb", "rose")
                   if d not in set(g["defense"])]
        if missing:
            if len(g):
                names = (missing[0] if len(missing) == 1
                         else ", ".join(missing[:-1]) + " and " + missing[-1])
                parts.append(f"  - {task}: no finished run of {names} yet")
            continue
        flags = g["degenerate"].fillna(False).astype(bool)
        dropped = ", ".join(f"{PAPER_NAME[d]} {int(((g['defense'] == d) & flags).sum())} of "
                            f"{int((g['defense'] == d).sum())}"
                            for d in ("peaft", "freelb", "rose"))
        accs = ", ".join(f"{PAPER_NAME[d]} {g.loc[g['defense'] == d, 'ACC'].mean():.2f}"
                         for d in ("peaft", "freelb", "rose"))
        verdict, details = paired_verdict(store, g, task)
        if verdict.startswith("not testable"):
            parts.append(f"  - {task}: not testable (degenerate runs: {dropped}); mean ACC "
                         f"{accs}")
            continue
        compared += 1
        supported += verdict.startswith("supported")
        parts.append(f"  - {task}: {verdict}. {details}. Mean ACC {accs} (degenerate runs, "
                     f"left out of the test: {dropped}).")
    return [f"- {claim} ({name}, default budgets, seed pairs pooled per task): supported in "
            f"{supported} of {compared} testable task(s)."] + parts


def section_reading(df: pd.DataFrame, store=None, defaults: tuple[list[dict], int] | None = None
                    ) -> str:
    """The paper's claims checked against the tables below, each verdict computed from the
    numbers it quotes (nothing here is typed in by hand): AUA claims by paired tests on the
    stored examples (:func:`paired_verdict`), not by comparing means and spreads;
    ``defaults``: :func:`default_cells`, for the line on the default cells."""
    out = ["## Reading: the paper's claims at this scale", "",
           "AUA claims are decided by paired tests on the attacked examples: for each pair of "
           "runs of the same seed and protocol, each example is robust (the attack failed) or "
           "not under each run; the pairs of a claim are pooled, the exact McNemar test of "
           "the discordant examples gives p, and Newcombe's paired 95% interval bounds the "
           "AUA difference (`rbnlp compare RUN_A RUN_B` shows one pair). Degenerate runs are "
           "left out.", ""]
    for attack, name in CLAIM_ATTACKS:
        out += _claim_grid(df, store, attack, name)
    lam = lambda_runs(df)
    if len(lam) >= 3:
        def rho(col: str) -> float:  # NaN (not a warning) when a column is constant
            v = pd.to_numeric(lam[col]).astype(float)
            return float("nan") if v.nunique() < 2 else lam["λ"].corr(v, method="spearman")

        rho_aua, rho_acc, rho_10 = rho("AUA"), rho("ACC"), rho("aua_at_10")
        holds = rho_aua > 0 and rho_acc < 0  # False when either is NaN
        test = ""
        significant = False
        if store is not None:
            from robustbench_nlp.compare import pooled_comparison

            t = pooled_comparison(store, [(lam["id"].iloc[-1], lam["id"].iloc[0])])
            test = (f"; largest vs smallest λ (paired, same examples): {t.text()}")
            significant = t.significant and t.diff_points > 0
        verdict = ("does not hold" if not holds else "holds" if significant else
                   "not shown (right direction, but the AUA gain from the smallest to the "
                   "largest λ is not significant at the 5% level)")
        a10 = pd.to_numeric(lam["aua_at_10"])
        out.append(
            f"- *As λ grows, AUA rises and ACC falls* (SST-2, default budget, λ = "
            f"{', '.join(f'{x:g}' for x in lam['λ'])}): "
            f"{verdict} here; Spearman ρ(λ, AUA) = "
            f"{_rho_text(rho_aua, 'AUA')}, ρ(λ, ACC) = {_rho_text(rho_acc, 'ACC')}, ρ(λ, "
            f"AUA@10) = {_rho_text(rho_10, 'AUA@10')}; AUA ranges "
            f"{lam['AUA'].min():.2f}–{lam['AUA'].max():.2f}, AUA@10 {a10.min():.2f}–"
            f"{a10.max():.2f}, ACC {lam['ACC'].min():.2f}–{lam['ACC'].max():.2f}{test}.")
    ep = epoch_rows(df)
    if len(ep):
        parts = []
        trend = {}
        for d, g in ep.sort_values("epoch").groupby("defense", sort=False):
            trend[d] = float(g["AUA"].iloc[-1]) - float(g["AUA"].iloc[0])
            parts.append(f"{d} {' → '.join(_fmt(x) for x in g['AUA'])}")
        if not {"peaft", "freelb", "rose"} <= set(trend):
            verdict = "not all three defenses are in the database yet"
        else:
            ok = trend["peaft"] > 0 and trend["freelb"] <= 0 and trend["rose"] <= 0
            verdict = "holds" if ok else "does not hold"
        out.append(f"- *PEAFT gains AUA over epochs while FreeLB and ROSE lose it* (SST-2, AUA "
                   f"on 50 examples after each epoch): {verdict} here, in direction only (the "
                   f"per-epoch AUAs store no example rows to test); {'; '.join(parts)}.")
    if defaults is not None and defaults[0]:
        rows, total = defaults
        failing = [f"{r['defense']} on {r['task']} ("
                   + (f"degenerate, {r['degenerate'][5:-1]}" if r["degenerate"] != "no"
                      else f"ACC {r['ACC']} vs majority {r['majority ACC']}") + ")"
                   for r in rows if r["passes"] != "yes"]
        out.append(f"- *Default runs* (`rbnlp run --defense D --task T`, seed 0): {len(rows)} of "
                   f"{total} finished, {len(rows) - len(failing)} pass (beat the majority class, "
                   "not degenerate)" + (f"; not passing: {'; '.join(failing)} (why: the "
                                        "\"Default runs\" table)" if failing else "") + ".")
    return "\n".join(out + [""])


def _plot(path: Path, title: str, xlabel: str, series: dict) -> str | None:
    """Line plot of ``series`` (label -> (x, y)) saved as ``path`` (PNG); its file name, or
    None when matplotlib is not installed. Labels ending in "ACC" are dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: figures skipped", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=110)
    colours = {}
    for label, (x, y) in series.items():
        key = label.rsplit(" ", 1)[0] if " " in label else label
        colour = colours.setdefault(key, f"C{len(colours)}")
        ax.plot(list(x), [float(v) for v in y], marker="o",
                linestyle="--" if label.endswith("ACC") else "-",
                color=colour if " " in label else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path.name


def default_calibration_url() -> str | None:
    """``experiments/calibration.db`` (the ε × K sweep's database) as a URL, None if absent."""
    path = EXPERIMENTS / "calibration.db"
    return f"sqlite:///{path}" if path.is_file() else None


def report(url: str, paper_dir: str | None = None, figures: Path | None = None,
           experiments: str | Path = EXPERIMENTS, calibration: str | None = None) -> str:
    """The whole markdown report for the database at ``url``; with ``figures``, the λ and
    epoch plots are written there as PNG and linked (paths relative to the report);
    ``experiments``: the folder of sweep configs whose completion is reported;
    ``calibration``: URL of the ε × K calibration database (default:
    :func:`default_calibration_url`)."""
    from robustbench_nlp.leaderboard import find_paper_dir

    df = load_runs(url)
    calibration = calibration or default_calibration_url()
    pdir = find_paper_dir(paper_dir)
    paper = None
    if pdir is not None:
        paper = pd.concat([pd.read_csv(pdir / f, dtype=str) for f in
                           ("table1_textfooler.csv", "table2_advglue.csv")], ignore_index=True)
    versions = df["versions"].dropna().iloc[-1] if len(df) else {}
    head = ["# Results: PEAFT and baselines at CPU scale", "",
            "Generated by `python scripts/study_report.py --db URL --out docs/results.md` "
            "from the runs in the database; do not edit by hand. Backbone "
            "all-MiniLM-L6-v2 (22.7M parameters, mean-pooled linear head) on CPU, TextFooler "
            "with the offline counter-fitted resources, data from the local GLUE/AdvGLUE "
            "mirror. Versions of the last run: "
            + ", ".join(f"{k} {v}" for k, v in versions.items()
                        if k in ("torch", "transformers", "peft", "textattack")) + ".", ""]
    from robustbench_nlp.db import open_store

    store = open_store(url) if len(df) else None
    experiments = Path(experiments)
    defaults = default_cells(url, df, experiments)
    parts = [section_reading(df, store, defaults),
             section_sweeps(url, df, experiments, calibration),
             section_defaults(url, df, experiments, defaults), section_grid(df, paper),
             section_grid(df, paper, "advglue"), section_grid(df, paper, "ensemble"),
             section_lambda(df, figures), section_epochs(df, figures),
             section_calibration(calibration), section_carriers(df)]
    return "\n".join(head + parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of the results database")
    ap.add_argument("--out", default=None, help="write here (default: stdout)")
    ap.add_argument("--paper-dir", default=None, help="folder of the paper's table CSVs")
    ap.add_argument("--experiments", default=str(EXPERIMENTS),
                    help="folder of the sweep configs whose completion is reported "
                         "(default: the repository's experiments/)")
    ap.add_argument("--calibration-db", default=None,
                    help="SQLAlchemy URL of the PEAFT ε × K calibration runs (default: "
                         "experiments/calibration.db when it exists)")
    args = ap.parse_args(argv)
    from robustbench_nlp.errors import RBNLPError


    try:
        text = report(args.db, args.paper_dir,
                      figures=Path(args.out).parent if args.out else None,
                      experiments=args.experiments, calibration=args.calibration_db)
    except RBNLPError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
