"""Grid sweeps: defenses × tasks × attacks × backbones × seeds × hyperparameters.

A sweep file (YAML)::

    name: sst2-lambda
    db: sqlite:///sweep.db          # optional; --db overrides
    grid:                           # every combination is one run ("cell")
      defense: [peaft]
      task: [sst2]
      attack: [textfooler]
      model: [minilm]               # change this one field for the paper's backbones
      seed: [0, 1, 2]
    params:                         # per-defense hyperparameter grids (--set KEY=VALUE)
      peaft: {adv_lambda: [0, 0.5, 1]}
    fixed:                          # run options applied to every cell
      num_examples: 100
    attack_params:                  # per-attack options (--attack-set KEY=VALUE)
      textfooler: {resources: offline}

Cells whose run is already finished in the database are skipped; an unfinished one is
resumed; so re-running the same command continues an interrupted sweep.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from .errors import ConfigError, RBNLPError
from .runner import (RunConfig, config_from_dict, execute, make_attack, make_defense,
                     training_key, training_record)

GRID_KEYS = ("defense", "task", "attack", "model", "seed")
#: seconds per cell assumed by --dry-run when the database has no finished run to learn from
DEFAULT_SECONDS = {"peaft": 720, "prompt-tuning": 240, "finetune": 180, "freelb": 300,
                   "rose": 360}


@dataclass
class Cell:
    """One run of a sweep."""

    cfg: RunConfig
    key: str = ""

    def label(self, seed: bool = True) -> str:
        """``"peaft/sst2/textfooler/minilm/seed0 [adv_lambda=1]"`` (``seed=False``: without
        the ``/seed0`` part, to group a cell's seeds)."""
        c = self.cfg
        extra = ",".join(f"{k}={v}" for k, v in sorted(c.defense_params.items()))
        return (f"{c.defense}/{c.task}/{c.attack}/{c.model}" + (f"/seed{c.seed}" if seed else "")
                + (f" [{extra}]" if extra else ""))


@dataclass
class Sweep:
    name: str
    cells: list[Cell] = field(default_factory=list)
    db: str | None = None


def _as_strings(record: dict) -> dict:
    return {k: str(v) for k, v in sorted(record.items())}


def _stored_defense(config: dict) -> dict | None:
    """A stored run ``config``'s resolved defense options as strings (resolved now from its
    run options when the record predates ``config["defense"]``; None if that fails)."""
    record = config.get("defense")
    if record is None:
        try:
            record = dataclasses.asdict(make_defense(config_from_dict(config.get("run", {})))
                                        .config)
        except RBNLPError:  # e.g. a defense plugin that is not installed here
            return None
    return _as_strings(record)


def run_key(cfg: RunConfig, attack_record: dict | None = None,
            defense_record: dict | None = None) -> str:
    """Canonical identity of a run's configuration (what makes two runs 'the same cell').

    The defense and the attack enter with their *resolved* options (``defense_record`` /
    ``attack_record``: a run's recorded ``config["defense"]`` / ``config["attack"]``;
    ``None``: resolved from ``cfg`` now by :func:`robustbench_nlp.runner.make_defense` /
    :func:`~robustbench_nlp.runner.make_attack`). So a value written out that equals the
    default (``adv_lambda: [0.5]``) is the default run's cell, a run made before a default
    changed (e.g. TextFooler's word embedding) is not taken for a cell that would now use
    the new default, and a sweep that pins the old value explicitly still finds it.

    Raises:
        UnknownNameError / ConfigError: a record is None and ``cfg``'s defense or attack or
            their options are invalid.
    """
    d = dataclasses.asdict(cfg)
    keep = {k: d[k] for k in ("defense", "attack", "task", "model", "pooling", "seed",
                              "num_examples", "max_length")}
    if defense_record is None:
        defense_record = dataclasses.asdict(make_defense(cfg).config)
    if attack_record is None:
        attack_record = dataclasses.asdict(make_attack(cfg).config)
    keep["defense_config"] = _as_strings(defense_record)
    keep["attack_config"] = _as_strings(_segment_neutral(attack_record, cfg.task))
    return json.dumps(keep, sort_keys=True)


def _segment_neutral(attack_record: dict, task: str) -> dict:
    """``attack_record`` without ``attacked_column`` when ``task`` has one text segment:
    there the option changes nothing (the protocol resolves it to ``None`` alike), so a run
    recorded before its default became ``"all"`` is still its cell."""
    from .tasks import TASKS

    t = TASKS.get(task)
    if t is None or t.is_pair or "attacked_column" not in attack_record:
        return attack_record
    return {k: v for k, v in attack_record.items() if k != "attacked_column"}


def load_sweep(path: str | Path) -> Sweep:
    """Parse a sweep file into its cells (in grid order).

    Raises:
        ConfigError: unreadable file, unknown top-level or grid keys, empty grid values.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read sweep file {str(path)!r}: {e}") from None
    unknown = set(spec) - {"name", "db", "grid", "params", "fixed", "attack_params"}
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {', '.join(sorted(unknown))}")
    grid = dict(spec.get("grid") or {})
    bad = set(grid) - set(GRID_KEYS)
    if bad:
        raise ConfigError(f"{path}: unknown grid key(s) {', '.join(sorted(bad))} "
                          f"(use {', '.join(GRID_KEYS)})")
    axes = []
    for k in GRID_KEYS:
        vals = grid.get(k, [getattr(RunConfig(), k)])
        vals = vals if isinstance(vals, list) else [vals]
        if not vals:
            raise ConfigError(f"{path}: grid.{k} is empty")
        axes.append(vals)
    fixed = dict(spec.get("fixed") or {})
    names = {f.name for f in dataclasses.fields(RunConfig)}
    for k in fixed:
        if k not in names or k in GRID_KEYS:
            raise ConfigError(f"{path}: fixed.{k} is not a run option")
    params = spec.get("params") or {}
    attack_params = spec.get("attack_params") or {}
    cells = []
    for combo in itertools.product(*axes):
        base = dict(zip(GRID_KEYS, combo))
        dgrid = params.get(base["defense"], {}) or {}
        dkeys = sorted(dgrid)
        dvals = [v if isinstance(v, list) else [v] for v in (dgrid[k] for k in dkeys)]
        for dcombo in itertools.product(*dvals) if dkeys else [()]:
            cfg = RunConfig(**base, **fixed,
                            defense_params={k: str(v) for k, v in zip(dkeys, dcombo)},
                            attack_params={k: str(v) for k, v in
                                           (attack_params.get(base["attack"]) or {}).items()})
            cells.append(Cell(cfg, run_key(cfg)))
    return Sweep(spec.get("name", path.stem), cells, spec.get("db"))


def cell_status(store, cells: list[Cell]) -> dict[str, tuple[str, str]]:
    """Map cell key → (status, run id) of its earliest finished run in ``store``, else of its
    latest run (absent: never run)."""
    df = store.runs_frame()
    out: dict[str, tuple[str, str]] = {}
    if df.empty:
        return out
    wanted = {c.key for c in cells}
    for _, row in df.sort_values("created_at").iterrows():
        config = row["config"] or {}
        try:
            key = run_key(config_from_dict(config.get("run", {})), config.get("attack"),
                          config.get("defense"))
        except RBNLPError:  # e.g. a run of a defense plugin that is not installed here
            continue
        if key in wanted and out.get(key, ("", ""))[0] != "finished":
            out[key] = (row["status"], row["id"])
    return out


def _train_key(record: dict) -> str:
    """What decides the trained defense of a configuration ``record`` (a run's stored
    ``config``, or :func:`robustbench_nlp.runner.training_record` of a cell), as a string."""
    return json.dumps(training_key(record), sort_keys=True, default=str)


def _cell_train_key(cfg: RunConfig) -> str:
    return _train_key(training_record(cfg))


def estimate_seconds(store, cell: Cell, trained: set[str] | None = None) -> float:
    """Expected seconds of a cell: training + attack.

    Training: 0 when ``trained`` (training keys of runs already trained, or of earlier cells of
    the sweep) holds the cell's key, since the runner then reuses that defense; else the mean
    ``train_seconds`` of finished runs of the same defense and task with the same resolved
    hyperparameters, else of the same defense and task, else :data:`DEFAULT_SECONDS`. Attack: the
    mean ``attack_seconds`` of finished runs of the same task and attack (0 when none; the
    defaults above include it)."""
    df = store.runs_frame()
    c = cell.cfg
    if df.empty:
        return float(DEFAULT_SECONDS.get(c.defense, 600))
    done = df[df["status"] == "finished"]
    attack = done[(done["task"] == c.task) & (done["attack"] == c.attack)]["attack_seconds"]
    attack_s = float(attack.dropna().mean()) if attack.notna().any() else 0.0
    if trained is not None and _cell_train_key(c) in trained:
        return attack_s
    same = done[(done["defense"] == c.defense) & (done["task"] == c.task)]
    want = _as_strings(dataclasses.asdict(make_defense(c).config))
    mask = pd.Series([_stored_defense(cfg or {}) == want for cfg in same["config"]],
                     index=same.index, dtype=bool)
    exact = same[mask]  # a Series mask: an empty list would select no columns
    for rows in (exact, same):
        if rows["train_seconds"].notna().any():
            return float(rows["train_seconds"].dropna().mean()) + attack_s
    return float(DEFAULT_SECONDS.get(c.defense, 600))


def trained_keys(store) -> set[str]:
    """Training keys of the runs of ``store`` that are past training."""
    df = store.runs_frame()
    if df.empty:
        return set()
    past = df[df["train_seconds"].notna()]
    return {_train_key(cfg or {}) for cfg in past["config"]}


def run_sweep(path: str | Path, db: str | None = None, dry_run: bool = False,
              echo=print) -> list[dict]:
    """Run every cell of a sweep file that is not finished yet.

    Args:
        path: the YAML sweep file.
        db: database URL (overrides the file's ``db``).
        dry_run: only list the cells, their state and an estimated time.

    Returns:
        one dict per cell: ``label``, ``status`` (``finished`` / ``skipped`` / ``planned``),
        ``run_id``.
    """
    from tqdm.auto import tqdm

    from .db import open_store

    sweep = load_sweep(path)
    store = open_store(db or sweep.db)
    states = cell_status(store, sweep.cells)
    report = []
    if dry_run:
        total = 0.0
        trained = trained_keys(store)
        for c in sweep.cells:
            st, rid = states.get(c.key, ("new", ""))
            est = 0.0 if st == "finished" else estimate_seconds(store, c, trained)
            trained.add(_cell_train_key(c.cfg))  # later cells with these settings reuse it
            total += est
            echo(f"{c.label():70s} {st:10s} {rid:12s} ~{est / 60:.1f} min")
            report.append({"label": c.label(), "status": st, "run_id": rid})
        echo(f"{len(sweep.cells)} cells, {sum(1 for r in report if r['status'] == 'finished')} "
             f"finished; estimated {total / 3600:.2f} h for the rest")
        return report
    bar = tqdm(sweep.cells, desc=f"sweep {sweep.name}", unit="run")
    for c in bar:
        st, rid = states.get(c.key, ("new", ""))
        if st == "finished":
            report.append({"label": c.label(), "status": "skipped", "run_id": rid})
            continue
        bar.set_postfix_str(c.label())
        c.cfg.db = db or sweep.db
        c.cfg.progress = False
        # an unfinished run of this cell whose process is gone is continued (runner's rule)
        m = execute(c.cfg, store=store, continue_matching=True, echo=lambda s: tqdm.write(s))
        report.append({"label": c.label(), "status": "finished", "run_id": m["run_id"]})
    return report


#: columns of ``rbnlp sweep FILE --status``
STATUS_COLUMNS = ("cell", "state", "run", "rows", "slurm job", "logs")


def sweep_status(path: str | Path, db: str | None = None, echo=print,
                 stale_s: float = 900.0) -> list[dict]:
    """Each cell's state (``rbnlp sweep FILE --status``): one line per cell with its label,
    state (``pending``, ``claimed``, ``running``, ``finished``, ``failed`` or
    ``interrupted``), run id, stored example rows / examples to attack, Slurm job id and log
    files.

    The state comes from the cell's claim (:mod:`robustbench_nlp.db.claims`, written by
    ``--launcher slurm``), where a ``claimed``/``running`` cell whose job has left the queue
    (or, where the queue cannot be read, whose heartbeat is older than ``stale_s`` seconds)
    counts as ``interrupted``; a cell without a claim (run by the local launcher, or never)
    is ``finished`` when it has a finished run, ``failed``/``interrupted`` when its latest run
    failed or stopped, else ``pending``.

    Args:
        echo: printer of the table (``None``: print nothing).

    Returns:
        one dict per cell: ``label``, ``state``, ``run_id``, ``rows``, ``job_id``,
        ``log_out``, ``log_err``.
    """
    from sqlalchemy import func, select

    from .db import open_store
    from .db.claims import cell_id, get_cells
    from .db.models import Example
    from .slurm import effective_state, job_states

    sweep = load_sweep(path)
    store = open_store(db or sweep.db)
    runs = cell_status(store, sweep.cells)
    rows = get_cells(store, [cell_id(c.key) for c in sweep.cells])
    live = job_states([r["slurm_job_id"] for r in rows.values()
                       if r["state"] in ("claimed", "running")])
    with store.session() as s:
        counts = dict(s.execute(select(Example.run_id, func.count())
                                .group_by(Example.run_id)).all())
    out = []
    for c in sweep.cells:
        row = rows.get(cell_id(c.key))
        st, rid = runs.get(c.key, ("", ""))
        if st == "finished":
            state = "finished"
        elif row is not None:
            state, rid = effective_state(row, live, stale_s), row["run_id"] or rid
        elif st:
            state = "failed" if st == "failed" else "interrupted"
        else:
            state = "pending"
        row = row or {}
        n = c.cfg.num_examples
        out.append({"label": c.label(), "state": state, "run_id": rid or "",
                    "rows": f"{counts.get(rid, 0)}/{n if n is not None else 'all'}" if rid
                    else "-", "job_id": row.get("slurm_job_id") or "",
                    "log_out": row.get("log_out") or "", "log_err": row.get("log_err") or ""})
    if echo is not None:
        w = max([len(STATUS_COLUMNS[0])] + [len(r["label"]) for r in out])
        echo(f"{'cell':<{w}}  {'state':<11}  {'run':<12}  {'rows':>7}  {'slurm job':<10}  logs")
        for r in out:
            logs = f"{r['log_out']} {r['log_err']}".strip() or "-"
            echo(f"{r['label']:<{w}}  {r['state']:<11}  {r['run_id'] or '-':<12}  "
                 f"{r['rows']:>7}  {r['job_id'] or '-':<10}  {logs}")
        tally = {s: sum(r["state"] == s for r in out) for s in
                 ("finished", "running", "claimed", "interrupted", "failed", "pending")}
        echo(f"{len(out)} cells: " + ", ".join(f"{v} {k}" for k, v in tally.items() if v))
    return out
