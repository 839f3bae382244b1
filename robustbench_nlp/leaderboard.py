"""Leaderboard tables built from the results database (one per task × attack).

Ranking is by AUA, then ACC (RobustBench ranks by robust accuracy). Runs made with
different attack resources (embedding space, sentence encoder, POS tagger; see
:func:`resources_tag`) are different attacks: they are ranked separately, each resource tag
with its own ranks 1, 2, ...

The PEAFT paper's own numbers (its Table 1 and Table 2, found by :func:`find_paper_dir`) are
a separate table marked ``"reported in paper"`` (:func:`paper_rows`); they are never ranked
together with measured runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import DataError

COLUMNS = ["rank", "defense", "carrier", "backbone", "ACC", "AUA", "AVG", "ASR", "avg queries",
           "perturbed %", "trainable params", "train s", "attack resources", "degenerate",
           "date", "run id"]

#: the paper's tables, long format ``method,backbone,task,attack,AUA,ACC,AVG``
PAPER_TABLES = ("table1_textfooler.csv", "table2_advglue.csv")
#: value of the ``source`` column of paper rows
REPORTED = "reported in paper"
PAPER_COLUMNS = ["defense", "backbone", "ACC", "AUA", "AVG", "note", "source"]
_PAPER_FIELDS = ("method", "backbone", "task", "attack", "AUA", "ACC", "AVG")

_RUN_FIELDS = ("status", "task", "attack", "defense", "model", "acc", "aua", "avg", "asr",
               "avg_queries", "avg_perturbed_pct", "trainable_params", "train_seconds",
               "resources", "degenerate", "finished_at", "id", "config")


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


def leaderboard(db: str | None = None, task: str = "sst2", attack: str = "textfooler",
                store=None, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Finished runs of ``task`` × ``attack``, ranked by AUA (then ACC) within each resource tag.

    Args:
        db: SQLAlchemy URL (default ``$RBNLP_DB`` or ``sqlite:///rbnlp.db``); ignored when
            ``store`` or ``runs`` is given.
        task: task name (``sst2``, ...).
        attack: attack plugin name (``textfooler``, ...).
        store: an open :class:`robustbench_nlp.db.Store`.
        runs: a frame from :meth:`Store.runs_frame` (saves a query when building several
            leaderboards from one database).

    Returns:
        columns :data:`COLUMNS`; rows grouped by ``attack resources`` (tags in sorted order),
        ranked 1..n inside each group. Percentages are 0-100, rounded for display.
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
    num = lambda c, nd: pd.to_numeric(df[c], errors="coerce").round(nd)  # noqa: E731
    out = pd.DataFrame({
        "defense": df["defense"], "carrier": df["config"].map(carrier_of),
        "backbone": df["model"],
        "ACC": num("acc", 2), "AUA": num("aua", 2), "AVG": num("avg", 2),
        "ASR": num("asr", 2), "avg queries": num("avg_queries", 1),
        "perturbed %": num("avg_perturbed_pct", 2),
        "trainable params": pd.to_numeric(df["trainable_params"], errors="coerce").astype("Int64"),
        "train s": num("train_seconds", 1),
        "attack resources": df["resources"].map(resources_tag),
        "degenerate": df["degenerate"].astype("boolean").fillna(False).astype(bool),
        "date": pd.to_datetime(df["finished_at"]).dt.strftime("%Y-%m-%d %H:%M"),
        "run id": df["id"],
    })
    out = out.sort_values(["attack resources", "AUA", "ACC", "run id"],
                          ascending=[True, False, False, True], na_position="last",
                          kind="stable").reset_index(drop=True)
    out.insert(0, "rank", out.groupby("attack resources", sort=False).cumcount() + 1)
    return out[COLUMNS]


def resource_groups(board: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split a :func:`leaderboard` frame into ``(resources tag, rows)`` pairs, one per attack
    variant, in the frame's order; rows keep their ranks."""
    return [(tag, rows.reset_index(drop=True))
            for tag, rows in board.groupby("attack resources", sort=False)]


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
