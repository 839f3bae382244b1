"""Write docs/results.md from a results database: the CPU-scale reproduction study.

Every number in the report is read from the database at the URL given (runs + metrics
tables) and the paper's own numbers from ``../shared/paper`` (Tables 1-2 CSVs); nothing is
typed in by hand. The runs it reads are those of::

    rbnlp run --defense peaft --task T --attack textfooler    # T = sst2, mrpc, rte, qnli
    rbnlp run --defense peaft --task T --attack advglue       # T = sst2, rte, qnli
    rbnlp sweep experiments/cpu_study_sst2.yaml               # 5 defenses x 3 seeds
    rbnlp sweep experiments/cpu_study_lambda.yaml             # PEAFT λ sweep
    rbnlp sweep experiments/cpu_study_epochs.yaml             # ACC/AUA after every epoch
    rbnlp run --defense {peaft,prompt-tuning} --set carrier=C --set train_examples=2000

(all with the same ``--db``). A section whose runs are missing says so instead of a table.
Usage::

    python scripts/study_report.py --db sqlite:///rbnlp.db [--out docs/results.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

METRICS = ["ACC", "AUA", "AVG", "ASR", "avg queries", "perturbed %"]
RENAME = {"acc": "ACC", "aua": "AUA", "avg": "AVG", "asr": "ASR", "avg_queries": "avg queries",
          "avg_perturbed_pct": "perturbed %", "trainable_params": "trainable",
          "train_seconds": "train s"}
DEFENSE_ORDER = ["finetune", "prompt-tuning", "peaft", "freelb", "rose"]
PAPER_NAME = {"peaft": "PEAFT", "freelb": "FreeLB", "rose": "ROSE"}


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


def _params_are(df: pd.DataFrame, **want) -> pd.Series:
    return df["params"].apply(lambda p: p == {k: str(v) for k, v in want.items()})


def _fmt(x, nd=1) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.{nd}f}"


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False)


def _paper(paper: pd.DataFrame | None, method: str, task: str, attack: str) -> str:
    if paper is None:
        return "–"
    rows = paper[(paper["method"] == method) & (paper["task"] == task)
                 & (paper["attack"] == attack) & (paper["backbone"] == "roberta-base")]
    if rows.empty:
        return "–"
    r = rows.iloc[0]
    return f"{r['ACC']} / {r['AUA']} / {r['AVG']}"  # as printed (may read OOM)


def section_tasks(df: pd.DataFrame, paper) -> str:
    """PEAFT with every default (8,000 training examples, 100 attacked examples) per task."""
    out = ["## PEAFT on the four GLUE tasks (defaults)", "",
           "`rbnlp run --defense peaft --task T --attack A` with every default (seed 0, up to "
           "8,000 training examples, 1 epoch, 100 attacked dev examples for TextFooler, every "
           "AdvGLUE dev example for AdvGLUE). The paper column is its RoBERTa-base row "
           "(ACC / AUA / AVG).", ""]
    sel = df[(df["defense"] == "peaft") & _params_are(df) & df["epoch_eval"].isna()
             & (df["seed"] == 0) & (df["model"] == "minilm")]
    rows = []
    for attack in ("textfooler", "advglue"):
        for task in ("sst2", "mrpc", "rte", "qnli"):
            r = sel[(sel["task"] == task) & (sel["attack"] == attack)]
            if r.empty:
                continue
            r = r.iloc[-1]
            reused = (r["train_stats"] or {}).get("reused_from")
            rows.append({"task": task, "attack": attack, "run id": r["id"],
                         "ACC": _fmt(r["ACC"]), "F1": _fmt(r["f1"]), "AUA": _fmt(r["AUA"]),
                         "AVG": _fmt(r["AVG"]), "ASR": _fmt(r["ASR"]),
                         "attacked": int(r["attacked"] or 0),
                         "avg queries": _fmt(r["avg queries"]),
                         "train examples": (r["train_stats"] or {}).get("train_examples"),
                         "train s": _fmt(r["train s"], 0) + (f" (run {reused})" if reused
                                                             else ""),
                         "attack s": _fmt(r["attack_seconds"], 0),
                         "paper PEAFT RoBERTa-base": _paper(paper, "PEAFT", task, attack)})
    if not rows:
        return "\n".join(out + ["(no finished default PEAFT runs in this database)", ""])
    out += [_md(pd.DataFrame(rows)), "",
            "`train s` with a run id: the trained defense of that run was reused "
            "(same training settings, another attack), so training ran once.", ""]
    return "\n".join(out)


def section_seeds(df: pd.DataFrame, paper) -> str:
    """experiments/cpu_study_sst2.yaml: 5 defenses x 3 seeds, mean ± sample std."""
    out = ["## Defenses on SST-2 under TextFooler, 3 seeds (Table 1 analogue)", "",
           "`rbnlp sweep experiments/cpu_study_sst2.yaml`: all-MiniLM-L6-v2, 2,000 SST-2 "
           "training sentences, 1 epoch, 100 attacked dev examples, seeds 0, 1, 2. Mean ± "
           "sample standard deviation over the seeds; ACC on the full dev split (872).", ""]
    sel = df[(df["task"] == "sst2") & (df["attack"] == "textfooler")
             & _params_are(df, train_examples=2000) & df["epoch_eval"].isna()
             & (df["num_examples"] == 100) & (df["model"] == "minilm")]
    if sel.empty:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    sel = sel.drop_duplicates(["defense", "seed"], keep="last")
    rows = []
    for d in [d for d in DEFENSE_ORDER if d in set(sel["defense"])]:
        g = sel[sel["defense"] == d]
        row = {"defense": d, "seeds": len(g)}
        for m in METRICS:
            v = g[m].astype(float)
            row[m] = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(g) > 1 else _fmt(v.mean())
        row["trainable"] = f"{int(g['trainable'].iloc[0]):,}"
        row["train s"] = _fmt(g["train s"].mean(), 0)
        row["paper RoBERTa-base (ACC / AUA / AVG)"] = _paper(
            paper, PAPER_NAME.get(d, ""), "sst2", "textfooler")
        rows.append(row)
    out += [_md(pd.DataFrame(rows)), ""]
    per = sel[["defense", "seed", "id", "ACC", "AUA", "ASR", "skipped", "successful",
               "failed"]].copy()
    per["ACC"] = per["ACC"].map(_fmt)
    per["AUA"] = per["AUA"].map(_fmt)
    per["ASR"] = per["ASR"].map(_fmt)
    per = per.sort_values(["defense", "seed"], key=lambda s: s.map(
        {d: i for i, d in enumerate(DEFENSE_ORDER)}) if s.name == "defense" else s)
    out += ["<details><summary>per run</summary>", "", _md(per.rename(columns={"id": "run id"})),
            "", "</details>", ""]
    return "\n".join(out)


def section_lambda(df: pd.DataFrame) -> str:
    """experiments/cpu_study_lambda.yaml plus the λ = 0.5 seed-0 cell of the seed study."""
    out = ["## PEAFT λ sweep (Figure 2a analogue)", "",
           "`rbnlp sweep experiments/cpu_study_lambda.yaml` (λ = 0, 1, 2, 4) and the seed-0 "
           "PEAFT cell of the seed study (λ = 0.5, the default); SST-2, 2,000 training "
           "sentences, seed 0, 100 attacked examples. The paper sweeps λ on QNLI.", ""]
    sel = df[(df["defense"] == "peaft") & (df["task"] == "sst2") & (df["attack"] == "textfooler")
             & (df["seed"] == 0) & df["epoch_eval"].isna() & (df["model"] == "minilm")
             & (df["num_examples"] == 100)]
    keep = sel["params"].apply(lambda p: set(p) <= {"train_examples", "adv_lambda"}
                               and p.get("train_examples") == "2000")
    sel = sel[keep].copy()
    if sel.empty:
        return "\n".join(out + ["(no finished runs of this sweep in the database)", ""])
    sel["λ"] = sel["dcfg"].apply(lambda c: float(c.get("adv_lambda")))
    sel = sel.drop_duplicates("λ", keep="last").sort_values("λ")
    tab = pd.DataFrame({"λ": sel["λ"], "run id": sel["id"],
                        **{m: sel[m].map(_fmt) for m in METRICS},
                        "train s": sel["train s"].map(lambda x: _fmt(x, 0))})
    return "\n".join(out + [_md(tab), ""])


def section_carriers(df: pd.DataFrame) -> str:
    """PEAFT vs its λ = 0 reference (prompt-tuning) for every carrier."""
    out = ["## Carriers: the min-max objective on prompt, prefix, P-tuning and LoRA", "",
           "`rbnlp run --defense peaft --set carrier=C --set train_examples=2000` and the same "
           "with `--defense prompt-tuning` (the λ = 0 reference); SST-2, seed 0, 100 attacked "
           "examples. The `prompt` rows are the seed-0 cells of the seed study.", ""]
    sel = df[df["defense"].isin(["peaft", "prompt-tuning"]) & (df["task"] == "sst2")
             & (df["attack"] == "textfooler") & (df["seed"] == 0) & df["epoch_eval"].isna()
             & (df["num_examples"] == 100) & (df["model"] == "minilm")]
    keep = sel["params"].apply(lambda p: set(p) <= {"train_examples", "carrier"}
                               and p.get("train_examples") == "2000")
    sel = sel[keep].copy()
    if sel.empty:
        return "\n".join(out + ["(no finished carrier runs in the database)", ""])
    sel["carrier"] = sel["dcfg"].apply(lambda c: c.get("carrier", "prompt"))
    sel = sel.drop_duplicates(["carrier", "defense"], keep="last")
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
                         "trainable": f"{int(r['trainable']):,}",
                         "train s": _fmt(r["train s"], 0)})
    return "\n".join(out + [_md(pd.DataFrame(rows)), ""])


def section_epochs(df: pd.DataFrame) -> str:
    """experiments/cpu_study_epochs.yaml: train_stats['epochs'] of each run."""
    out = ["## ACC and AUA after every epoch (Figure 2b analogue)", "",
           "`rbnlp sweep experiments/cpu_study_epochs.yaml`: 3 epochs, 2,000 SST-2 training "
           "sentences, seed 0; after every epoch ACC on the full dev split and AUA under "
           "TextFooler on the first 50 dev examples (`--epoch-eval 50`).", ""]
    sel = df[df["epoch_eval"].notna() & (df["task"] == "sst2")]
    rows = []
    for _, r in sel.iterrows():
        for e in (r["train_stats"] or {}).get("epochs") or []:
            rows.append({"defense": r["defense"], "run id": r["id"], "epoch": e.get("epoch"),
                         "ACC": _fmt(e.get("acc")), "AUA": _fmt(e.get("aua")),
                         "ASR": _fmt(e.get("asr"))})
    if not rows:
        return "\n".join(out + ["(no finished runs with --epoch-eval in the database)", ""])
    return "\n".join(out + [_md(pd.DataFrame(rows)), ""])


def report(url: str, paper_dir: str | None = None) -> str:
    """The whole markdown report for the database at ``url``."""
    from robustbench_nlp.leaderboard import find_paper_dir

    df = load_runs(url)
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
    parts = [section_tasks(df, paper), section_seeds(df, paper), section_lambda(df),
             section_carriers(df), section_epochs(df)]
    return "\n".join(head + parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of the results database")
    ap.add_argument("--out", default=None, help="write here (default: stdout)")
    ap.add_argument("--paper-dir", default=None, help="folder of the paper's table CSVs")
    args = ap.parse_args(argv)
    from robustbench_nlp.errors import RBNLPError

    try:
        text = report(args.db, args.paper_dir)
    except RBNLPError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
