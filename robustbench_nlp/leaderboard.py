"""Leaderboard tables built from the results database (one per task × attack × protocol).

Only runs measured under one attack *protocol* (:mod:`robustbench_nlp.attacks.protocol`:
recipe, resolved options, resource fingerprints, attacked example set) are comparable, so a
task × attack leaderboard is a list of tables, one per protocol (:func:`protocol_tables`).
Within a table:

* runs are pooled per defense *configuration* (defense, backbone, resolved training
  hyperparameters; :func:`configuration_key`): one row per configuration with the mean and
  sample standard deviation over its seeds, the pooled Wilson 95% interval (all seeds'
  attacked examples together) and the seed count, expandable to its runs;
* configurations are ranked by mean AUA, then mean ACC (RobustBench ranks by robust
  accuracy);
* degenerate runs (the most-predicted class exceeds its gold share by more than 15 points:
  :func:`robustbench_nlp.metrics.degenerate`) never share a rank with the others: they are
  pooled into a separate, unranked block, as RobustBench marks "potentially unreliable"
  entries;
* a ``settings`` column shows the hyperparameters that differ between the table's
  configurations.

Every rate carries its Wilson 95% interval (:func:`robustbench_nlp.stats.wilson_interval`).
Runs stored before protocols were recorded have none until ``rbnlp rescore`` computes it from
their rows; they are listed apart, unranked.

The PEAFT paper's own numbers (its Table 1 and Table 2, found by :func:`find_paper_dir`) are
a separate table marked ``"reported in paper"`` (:func:`paper_rows`); they are never ranked
together with measured runs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

#: one row per finished run (:func:`leaderboard`)
COLUMNS = ["protocol", "config", "defense", "carrier", "backbone", "model card", "settings",
           "seed", "ACC",
           "ACC low", "ACC high", "AUA", "AUA low", "AUA high", "AUA@10", "AUA@30",
           "curve area", "PDR", "invalid swaps %", "AVG", "ASR", "avg queries", "perturbed %",
           "eval examples", "attacked", "trainable params", "train s", "attack resources", "degenerate",
           "date", "run id"]
#: one row per defense configuration of one protocol (:func:`configuration_rows`)
CONFIG_COLUMNS = ["rank", "defense", "carrier", "backbone", "model card", "settings", "seeds",
                  "ACC",
                  "ACC sd", "ACC low", "ACC high", "AUA", "AUA sd", "AUA low", "AUA high",
                  "AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %", "ASR",
                  "avg queries", "perturbed %", "degenerate", "config", "runs", "repeats"]
#: the per-run columns shown when a configuration is expanded
RUN_DETAIL_COLUMNS = ["run id", "seed", "ACC", "ACC low", "ACC high", "AUA", "AUA low",
                      "AUA high", "AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %",
                      "ASR", "avg queries", "perturbed %", "eval examples", "attacked",
                      "degenerate", "date"]
#: value of the ``protocol`` column of runs stored before protocols were recorded
NO_PROTOCOL = ""

#: the paper's tables, long format ``method,backbone,task,attack,AUA,ACC,AVG``
PAPER_TABLES = ("table1_textfooler.csv", "table2_advglue.csv")
#: value of the ``source`` column of paper rows
REPORTED = "reported in paper"
PAPER_COLUMNS = ["defense", "backbone", "ACC", "AUA", "AVG", "note", "source"]
_PAPER_FIELDS = ("method", "backbone", "task", "attack", "AUA", "ACC", "AVG")

#: run options that shape the trained defense besides the defense's own config and the
#: seed: :func:`robustbench_nlp.runner.training_key` keeps exactly these plus ``defense``,
#: ``task`` and ``seed`` (a test checks the two agree)
CONFIG_RUN_FIELDS = ("model", "pooling", "max_length", "mixed_precision",
                     "epoch_eval_examples")

_RUN_FIELDS = ("status", "task", "attack", "defense", "model", "backbone", "seed", "acc", "aua", "avg",
               "asr", "avg_queries", "avg_perturbed_pct", "trainable_params", "train_seconds",
               "resources", "degenerate", "finished_at", "id", "config", "eval_examples",
               "attacked", "failed", "attacked_clean_acc", "aua_at_10", "aua_at_30",
               "curve_area", "invalid_swap_rate", "protocol", "protocol_hash")


def carrier_of(config: dict | None) -> str:
    """The parameter-efficient carrier of a run (``prompt``, ``prefix``, ``ptuning``,
    ``lora``; :mod:`robustbench_nlp.defenses.carriers`) from its stored config; ``""`` for
    defenses without one (full fine-tuning, ...). Soft-prompt runs stored before carriers
    existed (``num_virtual_tokens`` but no ``carrier``) are ``prompt``."""
    defense = (config or {}).get("defense") if isinstance(config, dict) else None
    if not isinstance(defense, dict):
        return ""
    if defense.get("carrier"):
        return str(defense["carrier"])
    return "prompt" if "num_virtual_tokens" in defense else ""


def resources_tag(res: dict | None) -> str:
    """Short tag naming an attack's resources (embedding space, sentence encoder, tagger).

    A resource recorded with a ``fingerprint`` (the word embedding: a hash of its inputs and
    build settings) is tagged ``name@<first 8 hex digits>``, so two builds of one embedding
    name from different inputs (e.g. other counter-fitting constraints) never share a tag.
    """
    if not res:
        return ""
    parts = []
    for k in ("embedding", "sentence_encoder", "pos_tagger"):
        v = res.get(k)
        if not v:
            continue
        if isinstance(v, dict):
            name = str(v.get("name", v))
            fp = v.get("fingerprint")
            parts.append(f"{name}@{str(fp)[:8]}" if fp else name)
        else:
            parts.append(str(v))
    return " + ".join(parts)


def source_text(source: dict | None, detail: bool = True) -> str:
    """Where an evaluated model's weights came from: ``Hub id@commit``, or ``folder PATH
    (sha256 0123456789abcdef, 5 files)`` (``detail=False``: ``folder sha256 0123456789ab``)."""
    if not source:
        return "-"
    if source.get("type") == "hub":
        rev = source.get("commit") or source.get("revision") or "main"
        return f"{'Hub ' if detail else ''}{source.get('id')}@{str(rev)[:12]}"
    if not detail:
        return f"folder sha256 {str(source.get('fingerprint', ''))[:12]}"
    return (f"folder {source.get('path')} (sha256 {str(source.get('fingerprint'))[:16]}, "
            f"{source.get('files')} files)")


def model_card_text(backbone: dict | None, detail: bool = False) -> str:
    """One line of an evaluated model's card (``runs.backbone["model_card"]``, written by
    ``rbnlp eval``; RobustBench's ``ModelInfo`` is the precedent): name, source (Hub id and
    commit, or folder fingerprint), parameter count, and the paper link and reported ACC / AUA
    when given; ``detail`` adds the folder path, the adapter's base model and the label
    mapping (``rbnlp show``). ``""`` for a run that trained its defense here."""
    card = (backbone or {}).get("model_card") if isinstance(backbone, dict) else None
    if not isinstance(card, dict):
        return ""
    parts = [str(card.get("name") or ""), source_text(card.get("source"), detail)]
    if card.get("parameters"):
        parts.append(f"{int(card['parameters']):,} {'parameters' if detail else 'params'}")
    if card.get("adapter"):
        a = card["adapter"]
        parts.append(f"{a.get('peft_type')} adapter on {a.get('base_model')}" if detail
                     else "peft adapter")
    if detail and card.get("labels"):
        parts.append(f"labels {card['labels']}")
    reported = [f"{k} {card[f'reported_{k.lower()}']:.2f}" for k in ("ACC", "AUA")
                if card.get(f"reported_{k.lower()}") is not None]
    if reported:
        parts.append("reported " + ", ".join(reported))
    if card.get("paper_url"):
        parts.append(str(card["paper_url"]))
    return " · ".join(p for p in parts if p)


def configuration_of(config: dict | None) -> dict:
    """The defense configuration of a stored run record (``runs.config``): its resolved
    defense hyperparameters (``defense.*``) and the run options that shape training
    (:data:`CONFIG_RUN_FIELDS`, ``run.*``), flattened to dotted keys. The seed is not part of
    it: runs that differ only in their seed are one configuration."""
    config = config if isinstance(config, dict) else {}
    run = config.get("run") if isinstance(config.get("run"), dict) else {}
    out = {f"run.{k}": run.get(k) for k in CONFIG_RUN_FIELDS}
    if config.get("max_length") is not None:
        out["run.max_length"] = config["max_length"]  # resolved (the task's default filled in)
    defense = config.get("defense")
    if isinstance(defense, dict):
        out.update({f"defense.{k}": v for k, v in defense.items()})
    else:  # records without a resolved defense config: what was given
        out.update({f"defense.{k}": v for k, v in (run.get("defense_params") or {}).items()})
    return out


def configuration_key(defense: str, config: dict | None) -> str:
    """A short stable id of a run's defense configuration (:func:`configuration_of` plus the
    defense name): the first 8 hex digits of the SHA-256 of its canonical JSON."""
    import hashlib

    from .attacks.protocol import canonical_json

    body = canonical_json({"defense": defense, **configuration_of(config)})
    return hashlib.sha256(body.encode()).hexdigest()[:8]


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def settings_column(defenses: pd.Series, configs: pd.Series) -> pd.Series:
    """The ``settings`` text of each row: the hyperparameters whose values differ between the
    configurations of the same defense in these rows, and the run options that differ across
    all rows, as ``key=value`` (``key`` without its ``defense.``/``run.`` prefix), sorted.

    Args:
        defenses: the defense name of each row.
        configs: :func:`configuration_of` of each row (same index).
    """
    out = pd.Series("", index=configs.index, dtype=object)
    if configs.empty:
        return out
    flat = [dict(c) for c in configs]
    run_keys = {k for c in flat for k in c if k.startswith("run.")}
    varying_run = {k for k in run_keys if len({_short(c.get(k)) for c in flat}) > 1}
    for d in pd.unique(defenses):
        idx = [i for i, name in zip(configs.index, defenses) if name == d]
        group = [flat[list(configs.index).index(i)] for i in idx]
        keys = {k for c in group for k in c if k.startswith("defense.")}
        varying = {k for k in keys if len({_short(c.get(k)) for c in group}) > 1}
        for i, c in zip(idx, group):
            shown = sorted(varying | varying_run)
            out[i] = ", ".join(f"{k.split('.', 1)[1]}={_short(c.get(k))}" for k in shown)
    return out


def leaderboard(db: str | None = None, task: str = "sst2", attack: str = "textfooler",
                store=None, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Finished runs of ``task`` × ``attack``, one row per run, with their protocol and
    configuration, intervals and robustness summaries.

    Args:
        db: SQLAlchemy URL (default ``$RBNLP_DB`` or ``sqlite:///rbnlp.db``); ignored when
            ``store`` or ``runs`` is given.
        task: task name (``sst2``, ...).
        attack: attack plugin name (``textfooler``, ...).
        store: an open :class:`robustbench_nlp.db.Store`.
        runs: a frame from :meth:`Store.runs_frame` (saves a query when building several
            leaderboards from one database).

    Returns:
        columns :data:`COLUMNS`, sorted by protocol, then AUA and ACC (descending). Rates
        are percentages 0-100 (``ACC low``/``high``, ``AUA low``/``high``: Wilson 95%
        limits; ``PDR`` = 100 × (1 − AUA / clean accuracy on the attacked set), PromptBench's
        performance drop rate); ``protocol`` is the protocol hash (:data:`NO_PROTOCOL` when
        not recorded), ``config`` the configuration id (:func:`configuration_key`). Numbers
        are not rounded: format them for display (:func:`format_board`).
    """
    if runs is None:
        from .db import open_store

        store = store or open_store(db)
        runs = store.runs_frame()
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *_RUN_FIELDS])))
    df = df[(df["status"] == "finished") & (df["task"] == task) & (df["attack"] == attack)]
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    num = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
    acc, n_eval = num("acc"), num("eval_examples")
    acc_lo, acc_hi = _wilson_pct_arrays((acc * n_eval / 100.0).round(), n_eval)
    aua_lo, aua_hi = _wilson_pct_arrays(num("failed"), num("attacked"))
    clean_att = num("attacked_clean_acc")
    pdr = np.where(clean_att > 0, 100.0 * (1.0 - num("aua") / clean_att), np.nan)
    configs = df["config"].map(configuration_of)
    out = pd.DataFrame({
        "protocol": df["protocol_hash"].fillna(NO_PROTOCOL).astype(str),
        "config": [configuration_key(d, c) for d, c in zip(df["defense"], df["config"])],
        "defense": df["defense"], "carrier": df["config"].map(carrier_of),
        "backbone": df["model"],
        "model card": df["backbone"].map(model_card_text) if "backbone" in df.columns else "",
        "settings": "",
        "seed": pd.to_numeric(df["seed"], errors="coerce").astype("Int64"),
        "ACC": acc, "ACC low": acc_lo, "ACC high": acc_hi,
        "AUA": num("aua"), "AUA low": aua_lo, "AUA high": aua_hi,
        "AUA@10": num("aua_at_10"), "AUA@30": num("aua_at_30"),
        "curve area": num("curve_area"), "PDR": pdr,
        "invalid swaps %": num("invalid_swap_rate"),
        "AVG": num("avg"), "ASR": num("asr"), "avg queries": num("avg_queries"),
        "perturbed %": num("avg_perturbed_pct"),
        "eval examples": n_eval.astype("Int64"), "attacked": num("attacked").astype("Int64"),
        "trainable params": pd.to_numeric(df["trainable_params"], errors="coerce").astype("Int64"),
        "train s": num("train_seconds"),
        "attack resources": df["resources"].map(resources_tag),
        "degenerate": df["degenerate"].astype("boolean").fillna(False).astype(bool),
        "date": pd.to_datetime(df["finished_at"]).dt.strftime("%Y-%m-%d %H:%M"),
        "run id": df["id"],
    })
    for proto in pd.unique(out["protocol"]):
        sel = out["protocol"] == proto
        out.loc[sel, "settings"] = settings_column(out.loc[sel, "defense"], configs[sel])
    out = out.sort_values(["protocol", "AUA", "ACC", "run id"],
                          ascending=[True, False, False, True], na_position="last",
                          kind="stable").reset_index(drop=True)
    return out[COLUMNS]


def configuration_rows(board: pd.DataFrame) -> pd.DataFrame:
    """Pool the runs of one protocol (rows of :func:`leaderboard`) per configuration.

    The ``degenerate`` flag splits a configuration: its degenerate runs and its other runs
    are pooled separately, so a degenerate seed never lifts (or sinks) a configuration's
    mean.

    Returns:
        columns :data:`CONFIG_COLUMNS`, non-degenerate configurations first, ranked 1..n by
        mean AUA then mean ACC; degenerate ones after them with ``rank`` NA. ``ACC``/``AUA``
        are means over seeds, ``… sd`` their sample standard deviations (NaN for one seed),
        ``… low``/``high`` the Wilson 95% interval of all seeds' examples pooled
        (:func:`robustbench_nlp.stats.pooled`); the summaries (``AUA@10`` ...) are means;
        ``runs`` lists the pooled run ids by seed: one per seed, the earliest finished;
        later runs of a seed already pooled (re-runs of the same cell) are in ``repeats``.
    """
    if board.empty:
        return pd.DataFrame(columns=CONFIG_COLUMNS)
    # plain Python over the records: a table holds tens of runs, and pandas' per-group
    # machinery would cost more than the arithmetic (the app redraws this on every visit)
    recs = board.to_dict("records")
    recs.sort(key=lambda r: (_key(r["seed"]), _key(r["date"]), str(r["run id"])))
    groups: dict[tuple, dict] = {}
    for r in recs:
        g = groups.setdefault((r["config"], bool(r["degenerate"])),
                              {"runs": [], "repeats": [], "seeds": set()})
        if r["seed"] in g["seeds"]:
            # one run per seed: the earliest finished (as `rbnlp sweep` counts a cell);
            # later runs of the same seed are repeats, listed but not pooled
            g["repeats"].append(r["run id"])
            continue
        g["seeds"].add(r["seed"])
        g["runs"].append(r)
    means = ("AUA@10", "AUA@30", "curve area", "PDR", "invalid swaps %", "ASR", "avg queries",
             "perturbed %")
    rows, counts = [], []
    for (cfg, degen), g in groups.items():
        runs = g["runs"]
        first = runs[0]
        row = {"rank": pd.NA, "defense": first["defense"], "carrier": first["carrier"],
               "backbone": first["backbone"], "model card": first["model card"],
               "settings": first["settings"],
               "seeds": len(runs)}
        for c in ("ACC", "AUA"):
            row[c], row[f"{c} sd"] = _mean_sd([r[c] for r in runs])
        for c in means:
            row[c] = _mean_sd([r[c] for r in runs])[0]
        row.update({"degenerate": degen, "config": cfg,
                    "runs": ", ".join(r["run id"] for r in runs),
                    "repeats": ", ".join(g["repeats"])})
        rows.append(row)
        counts.append((_pooled_count(runs, "AUA", "attacked"),
                       _pooled_count(runs, "ACC", "eval examples")))
    out = pd.DataFrame(rows)
    for j, c in enumerate(("AUA", "ACC")):
        k = pd.Series([cnt[j][0] for cnt in counts], dtype=float)
        n = pd.Series([cnt[j][1] for cnt in counts], dtype=float)
        out[f"{c} low"], out[f"{c} high"] = _wilson_pct_arrays(k, n)
    out = out.sort_values(["degenerate", "AUA", "ACC", "config"],
                          ascending=[True, False, False, True], na_position="last",
                          kind="stable").reset_index(drop=True)
    ok = (~out["degenerate"]).to_numpy()
    out["rank"] = pd.array([i + 1 if o else pd.NA for i, o in enumerate(ok)], dtype="Int64")
    return out[CONFIG_COLUMNS]


def _key(v):
    """Sort key that puts missing values last."""
    missing = v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
    return (1, "") if missing else (0, v)


def _num(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation of the non-missing ``values`` (NaN where
    undefined: no value; one value for the deviation)."""
    xs = [x for x in map(_num, values) if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _pooled_count(runs: list[dict], rate: str, n_col: str) -> tuple[float, float]:
    """``(sum of successes, sum of n)`` of a rate (percent) over ``runs``; NaN when a run
    lacks either (the interval is then not shown)."""
    k = n = 0.0
    for r in runs:
        rate_v, n_v = _num(r[rate]), _num(r[n_col])
        if math.isnan(rate_v) or math.isnan(n_v):
            return math.nan, math.nan
        k += round(rate_v * n_v / 100.0)
        n += n_v
    return k, n


def _wilson_pct_arrays(k: pd.Series, n: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% limits in percent of ``k / n`` element-wise
    (:func:`robustbench_nlp.stats.wilson_limits`; NaN where ``n`` is missing or 0)."""
    from .stats import wilson_limits

    low, high = wilson_limits(pd.to_numeric(k, errors="coerce").to_numpy(dtype=float),
                              pd.to_numeric(n, errors="coerce").to_numpy(dtype=float))
    return 100 * low, 100 * high


@dataclass
class ProtocolTable:
    """One ranked table: the runs of one task × attack measured under one protocol.

    Attributes:
        protocol_hash: the protocol's hash (:data:`NO_PROTOCOL` for runs stored before
            protocols were recorded).
        protocol: the protocol record (``{}`` when not recorded).
        description: :func:`robustbench_nlp.attacks.protocol.describe_protocol`, or a note.
        configurations: :func:`configuration_rows` (ranked rows, then degenerate rows).
        runs: the :func:`leaderboard` rows of this protocol.
    """

    protocol_hash: str
    protocol: dict
    description: str
    configurations: pd.DataFrame
    runs: pd.DataFrame = field(repr=False)

    @property
    def ranked(self) -> pd.DataFrame:
        """The configurations that share the ranking (not degenerate)."""
        c = self.configurations
        return c[~c["degenerate"]].reset_index(drop=True)

    @property
    def degenerate(self) -> pd.DataFrame:
        """The degenerate block: listed apart, never ranked."""
        c = self.configurations
        return c[c["degenerate"]].reset_index(drop=True)

    def runs_of(self, config: str) -> pd.DataFrame:
        """The runs pooled in configuration ``config`` (id), columns :data:`RUN_DETAIL_COLUMNS`."""
        return self.runs[self.runs["config"] == config][RUN_DETAIL_COLUMNS].reset_index(drop=True)


def protocol_tables(board: pd.DataFrame, runs: pd.DataFrame | None = None
                    ) -> list[ProtocolTable]:
    """Split a :func:`leaderboard` frame into one :class:`ProtocolTable` per protocol.

    Args:
        board: a :func:`leaderboard` frame (one task × attack).
        runs: the :meth:`Store.runs_frame` it was built from (for the protocol records);
            without it, descriptions are the hashes alone.

    Returns:
        tables with a recorded protocol, most runs first (ties by hash), then the runs
        without a protocol.
    """
    from .attacks.protocol import describe_protocol

    records: dict[str, dict] = {}
    if runs is not None and len(runs) and "protocol" in runs.columns:
        sub = runs[runs["id"].isin(set(board["run id"]))]
        for rec, h in zip(sub["protocol"], sub["protocol_hash"]):
            if isinstance(rec, dict) and isinstance(h, str) and h:
                records.setdefault(h, rec)
    out = []
    for proto, rows in board.groupby("protocol", sort=False):
        rows = rows.reset_index(drop=True)
        configs = configuration_rows(rows)
        if proto == NO_PROTOCOL:  # not known to be comparable: listed, never ranked
            configs["rank"] = pd.array([pd.NA] * len(configs), dtype="Int64")
        rec = records.get(proto, {})
        if proto == NO_PROTOCOL:
            desc = ("protocol not recorded (runs stored before protocols existed): "
                    "`rbnlp rescore` records it from the stored rows")
        else:
            desc = describe_protocol(rec) if rec else proto
        out.append(ProtocolTable(proto, rec, desc, configs, rows))
    out.sort(key=lambda t: (t.protocol_hash == NO_PROTOCOL, -len(t.runs), t.protocol_hash))
    return out


def _pct(v, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "-"
    return f"{float(v):.{nd}f}"


def _with_sd(mean, sd) -> str:
    if _pct(mean) == "-":
        return "-"
    return _pct(mean) + ("" if _pct(sd) == "-" else f" ± {_pct(sd)}")


def _interval(lo, hi) -> str:
    return "-" if _pct(lo) == "-" else f"[{_pct(lo)}, {_pct(hi)}]"


def format_configurations(configs: pd.DataFrame) -> pd.DataFrame:
    """Display strings of :func:`configuration_rows`: every rate with two decimals,
    ``mean ± sd`` and the pooled interval as ``[low, high]``; one decimal for queries."""
    out = pd.DataFrame({
        "rank": ["" if r is pd.NA or pd.isna(r) else str(int(r)) for r in configs["rank"]],
        "defense": configs["defense"], "carrier": configs["carrier"],
        "backbone": configs["backbone"], "model card": configs["model card"],
        "settings": configs["settings"],
        "seeds": configs["seeds"],
        "ACC": [_with_sd(m, s) for m, s in zip(configs["ACC"], configs["ACC sd"])],
        "ACC 95% CI": [_interval(a, b) for a, b in zip(configs["ACC low"], configs["ACC high"])],
        "AUA": [_with_sd(m, s) for m, s in zip(configs["AUA"], configs["AUA sd"])],
        "AUA 95% CI": [_interval(a, b) for a, b in zip(configs["AUA low"], configs["AUA high"])],
        **{c: configs[c].map(_pct) for c in ("AUA@10", "AUA@30", "curve area", "PDR",
                                            "invalid swaps %", "ASR")},
        "avg queries": configs["avg queries"].map(lambda v: _pct(v, 1)),
        "perturbed %": configs["perturbed %"].map(_pct),
        "runs": configs["runs"], "repeats": configs["repeats"],
    })
    if not out["model card"].astype(bool).any():  # only evaluated models carry a card
        out = out.drop(columns=["model card"])
    return out


def format_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Display strings of :data:`RUN_DETAIL_COLUMNS` rows (same precision rules)."""
    return pd.DataFrame({
        "run id": rows["run id"], "seed": rows["seed"],
        "ACC": rows["ACC"].map(_pct),
        "ACC 95% CI": [_interval(a, b) for a, b in zip(rows["ACC low"], rows["ACC high"])],
        "AUA": rows["AUA"].map(_pct),
        "AUA 95% CI": [_interval(a, b) for a, b in zip(rows["AUA low"], rows["AUA high"])],
        **{c: rows[c].map(_pct) for c in ("AUA@10", "AUA@30", "curve area", "PDR",
                                         "invalid swaps %", "ASR")},
        "avg queries": rows["avg queries"].map(lambda v: _pct(v, 1)),
        "perturbed %": rows["perturbed %"].map(_pct),
        "attacked": rows["attacked"], "date": rows["date"],
    })


def format_paper(prows: pd.DataFrame) -> pd.DataFrame:
    """Display strings of :func:`paper_rows`: two decimals, and a cell the paper prints as
    text (``OOM``) shows that text instead of a number."""
    out = prows[["defense", "backbone"]].copy()
    for c in ("ACC", "AUA", "AVG"):
        out[c] = [n if _pct(v) == "-" and n else _pct(v)
                  for v, n in zip(prows[c], prows["note"])]
    out["source"] = prows["source"]
    return out.reset_index(drop=True)


def find_paper_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate the folder with the paper's tables (:data:`PAPER_TABLES`).

    Order: ``explicit``, then ``$RBNLP_PAPER_DIR``, then ``paper`` next to the data mirror
    (:func:`robustbench_nlp.tasks.find_data_dir`), then a ``shared/paper`` folder in the
    working directory, the package checkout, or any of their parents. Returns ``None`` when
    there is none (the leaderboard then shows no paper rows).

    Raises:
        DataError: when ``explicit`` or ``$RBNLP_PAPER_DIR`` is given but holds none of
            :data:`PAPER_TABLES`.
    """
    given = explicit or os.environ.get("RBNLP_PAPER_DIR")
    if given:
        p = Path(given).expanduser()
        if not any((p / t).is_file() for t in PAPER_TABLES):
            raise DataError(f"paper directory {str(p)!r} holds none of {', '.join(PAPER_TABLES)}")
        return p.resolve()
    from .tasks import find_data_dir

    try:
        data = find_data_dir()
    except DataError:
        data = None
    cands = [data.parent / "paper"] if data is not None else []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        cands += [base / "shared" / "paper" for base in (start, *start.parents)]
    for cand in cands:
        if any((cand / t).is_file() for t in PAPER_TABLES):
            return cand.resolve()
    return None


def load_paper_table(paper_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """All rows of the paper's tables.

    Args:
        paper_dir: folder holding :data:`PAPER_TABLES` (default :func:`find_paper_dir`).

    Returns:
        columns ``task``, ``attack`` and :data:`PAPER_COLUMNS`; ``defense`` is the method
        lower-cased (the plugin names: ``peaft``, ``freelb``, ``rose``); non-numeric cells
        (the paper's ``OOM``) become NaN with the printed text in ``note``. Empty when no
        paper folder is found.

    Raises:
        DataError: a table lacks one of the columns ``method,backbone,task,attack,AUA,ACC,AVG``.
    """
    d = Path(paper_dir) if paper_dir is not None else find_paper_dir()
    frames = []
    for name in PAPER_TABLES if d is not None else ():
        path = d / name
        if not path.is_file():
            continue
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in _PAPER_FIELDS if c not in raw.columns]
        if missing:
            raise DataError(f"paper table {path} lacks column(s) {', '.join(missing)}")
        vals = {c: pd.to_numeric(raw[c].str.strip(), errors="coerce") for c in ("ACC", "AUA", "AVG")}
        bad = raw[["ACC", "AUA", "AVG"]].where(pd.DataFrame(vals).isna(), "")
        note = bad.apply(lambda r: " / ".join(sorted({v for v in r if v})), axis=1)
        frames.append(pd.DataFrame({
            "task": raw["task"].str.strip(), "attack": raw["attack"].str.strip(),
            "defense": raw["method"].str.strip().str.lower(),
            "backbone": raw["backbone"].str.strip(), **vals, "note": note, "source": REPORTED,
        }))
    if not frames:
        return pd.DataFrame(columns=["task", "attack", *PAPER_COLUMNS])
    return pd.concat(frames, ignore_index=True)[["task", "attack", *PAPER_COLUMNS]]


def paper_rows(task: str = "sst2", attack: str = "textfooler",
               paper_dir: str | os.PathLike | None = None,
               table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's reported numbers for ``task`` × ``attack``, a table apart from measured runs.

    Args:
        task: task name.
        attack: attack plugin name.
        paper_dir: folder of the paper's tables (default :func:`find_paper_dir`).
        table: a frame from :func:`load_paper_table` (saves re-reading the files).

    Returns:
        columns :data:`PAPER_COLUMNS` (``source`` is always :data:`REPORTED`), sorted by AUA
        then ACC, rows without numbers (``OOM``) last. Not ranked.
    """
    t = table if table is not None else load_paper_table(paper_dir)
    t = t[(t["task"] == task) & (t["attack"] == attack)]
    t = t.sort_values(["AUA", "ACC"], ascending=False, na_position="last", kind="stable")
    return t[PAPER_COLUMNS].reset_index(drop=True)


def side_by_side(board: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Measured runs next to the paper's numbers for the same defense and backbone.

    Args:
        board: a :func:`leaderboard` frame (one task × attack).
        paper: the :func:`paper_rows` of the same task × attack.

    Returns:
        one row per measured run whose (defense, backbone) the paper reports, columns
        ``run id``, ``defense``, ``backbone``, ``attack resources``, measured ``ACC``/``AUA``
        and the paper's ``paper ACC``/``paper AUA`` (separate columns: nothing is merged into
        the ranked tables). Empty when no pair matches.
    """
    cols = ["run id", "defense", "backbone", "attack resources", "ACC", "AUA", "paper ACC",
            "paper AUA"]
    if board.empty or paper.empty:
        return pd.DataFrame(columns=cols)
    rep = paper[["defense", "backbone", "ACC", "AUA"]].rename(
        columns={"ACC": "paper ACC", "AUA": "paper AUA"})
    out = board.merge(rep, on=["defense", "backbone"], how="inner")
    return out[cols].reset_index(drop=True)


#: columns of :func:`attack_matrix` before the per-attack ones
MATRIX_KEY_COLUMNS = ["defense", "carrier", "backbone", "settings", "config"]
#: the smallest single-recipe AUA of a configuration (a :func:`attack_matrix` column)
WORST_SINGLE = "worst single-recipe AUA"


def attack_matrix(runs: pd.DataFrame, task: str = "sst2",
                  attacks: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Defense configuration × attack: mean AUA over seeds for one task.

    One column per attack protocol (labelled by the attack's name, with the protocol hash
    when an attack has several protocols on the task), pooled as the leaderboard pools
    (:func:`configuration_rows`, degenerate runs left out), plus
    :data:`WORST_SINGLE`: the smallest AUA of the configuration over the search attacks
    (every attack but AdvGLUE and the ensemble). The ensemble's column (``ensemble``)
    attacks every example with every recipe of its suite, so it can only be at or below
    the single recipes it contains; it is the worst case, ``WORST_SINGLE`` an upper bound of it.

    Args:
        runs: a :meth:`Store.runs_frame`.
        task: the task.
        attacks: the attacks to include (default: every attack with finished runs on
            ``task``).

    Returns:
        ``(matrix, protocols)``: the matrix (columns :data:`MATRIX_KEY_COLUMNS`, one column
        per attack protocol, :data:`WORST_SINGLE`; rows sorted by the ensemble's AUA when
        present, else by :data:`WORST_SINGLE`, descending) and ``{column: protocol hash}``.
    """
    if runs.empty:
        return pd.DataFrame(columns=[*MATRIX_KEY_COLUMNS, WORST_SINGLE]), {}
    fin = runs[(runs["status"] == "finished") & (runs["task"] == task)]
    names = attacks or sorted(pd.unique(fin["attack"]))
    cells: dict[str, dict] = {}
    keys: dict[str, dict] = {}
    protocols: dict[str, str] = {}
    single: list[str] = []
    for attack in names:
        tables = [t for t in protocol_tables(leaderboard(task=task, attack=attack, runs=runs),
                                             runs) if t.protocol_hash != NO_PROTOCOL]
        for t in tables:
            col = attack if len(tables) == 1 else f"{attack} [{t.protocol_hash}]"
            protocols[col] = t.protocol_hash
            if attack not in ("ensemble", "advglue"):
                single.append(col)
            for r in t.ranked.to_dict("records"):
                keys.setdefault(r["config"], {k: r[k] for k in MATRIX_KEY_COLUMNS})
                cells.setdefault(r["config"], {})[col] = r["AUA"]
    cols = list(protocols)
    rows = []
    for cfg, key in keys.items():
        row = {**key, **{c: cells[cfg].get(c, np.nan) for c in cols}}
        vals = [row[c] for c in single if not pd.isna(row[c])]
        row[WORST_SINGLE] = min(vals) if vals else np.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*MATRIX_KEY_COLUMNS, *cols, WORST_SINGLE])
    order = "ensemble" if "ensemble" in out.columns else WORST_SINGLE
    out = out.sort_values([order, WORST_SINGLE, "config"], ascending=[False, False, True],
                          na_position="last", kind="stable").reset_index(drop=True)
    return out, protocols


def format_matrix(matrix: pd.DataFrame) -> pd.DataFrame:
    """:func:`attack_matrix` for display: AUA with 2 decimals, ``–`` where not measured;
    the ``config`` id left out."""
    out = matrix.drop(columns=["config"]).copy()
    for c in out.columns:
        if c not in MATRIX_KEY_COLUMNS:
            out[c] = [("–" if pd.isna(v) else f"{float(v):.2f}") for v in out[c]]
    return out
