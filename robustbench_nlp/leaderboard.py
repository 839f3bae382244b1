"""Leaderboard tables built from the results database (one per task × attack).

Ranking is by AUA, then ACC (RobustBench ranks by robust accuracy). Runs made with
different attack resources are different attacks and are shown with their resource tag.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["rank", "defense", "backbone", "ACC", "AUA", "AVG", "ASR", "avg queries",
           "perturbed %", "trainable params", "train s", "attack resources", "degenerate",
           "date", "run id"]


def resources_tag(res: dict | None) -> str:
    """Short tag naming an attack's resources (embedding space, sentence encoder, tagger)."""
    if not res:
        return ""
    parts = [str(res.get(k, {}).get("name", res.get(k))) if isinstance(res.get(k), dict)
             else str(res.get(k)) for k in ("embedding", "sentence_encoder", "pos_tagger")
             if res.get(k)]
    return " + ".join(parts)


def leaderboard(db: str | None = None, task: str = "sst2", attack: str = "textfooler",
                store=None) -> pd.DataFrame:
    """Finished runs of ``task`` × ``attack`` ranked by AUA (then ACC), columns :data:`COLUMNS`."""
    from .db import open_store

    store = store or open_store(db)
    df = store.runs_frame()
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df[(df["status"] == "finished") & (df["task"] == task) & (df["attack"] == attack)]
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame({
        "defense": df["defense"], "backbone": df["model"],
        "ACC": df["acc"].round(2), "AUA": df["aua"].round(2), "AVG": df["avg"].round(2),
        "ASR": df["asr"].round(2), "avg queries": df["avg_queries"].round(1),
        "perturbed %": df["avg_perturbed_pct"].round(2),
        "trainable params": df["trainable_params"], "train s": df["train_seconds"].round(1),
        "attack resources": df["resources"].map(resources_tag),
        "degenerate": df["degenerate"].fillna(False).astype(bool),
        "date": pd.to_datetime(df["finished_at"]).dt.strftime("%Y-%m-%d %H:%M"),
        "run id": df["id"],
    })
    out = out.sort_values(["AUA", "ACC"], ascending=False, kind="stable").reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out[COLUMNS]
