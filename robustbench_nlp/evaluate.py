"""Evaluate-only runs (``rbnlp eval``): attack a trained checkpoint as it is.

A checkpoint fine-tuned elsewhere (a ``save_pretrained`` folder, a Hub id, or a folder holding
a peft adapter) is loaded with its own classification head
(:func:`robustbench_nlp.backbones.load_checkpoint`), its outputs mapped to the task's labels,
evaluated on the full dev split (ACC), attacked, stored and ranked exactly like a run that
trained a defense (:func:`robustbench_nlp.runner.execute`): the same stages
(:func:`~robustbench_nlp.runner.clean_stage`, :func:`~robustbench_nlp.runner.attack_stage`,
:func:`~robustbench_nlp.runner.finish_run`), the same resumability (every example committed as
it is produced; ``--resume RUN_ID``, or re-running the same command) and the same protocol
record, minus the training stage. The run row's ``defense`` is
:data:`~robustbench_nlp.runner.EVALUATE_ONLY` (``"none"``), its ``trainable_params`` and
``train_seconds`` are empty, and ``runs.backbone["model_card"]`` holds the model card
(:class:`ModelCard`, after RobustBench's ``ModelInfo``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .backbones import load_checkpoint, pick_device
from .config import param, validate
from .errors import ConfigError
from .runner import (EVALUATE_ONLY, RESULT_NEUTRAL, attack_stage, clean_stage, finish_run,
                     load_data, make_attack, open_run, package_versions, prepare_model,
                     recording_failures, resume_target)
from .tasks import get_task
from .training import seed_everything

#: options that only describe the model (its card): they change no result
CARD_FIELDS = ("name", "paper_url", "reported_acc", "reported_aua")
#: options ignored when matching an unfinished evaluate-only run to continue
EVAL_NEUTRAL = RESULT_NEUTRAL + CARD_FIELDS


@dataclass
class EvalConfig:
    """Options of one evaluate-only run (``rbnlp eval``)."""

    model: str = param("", "the trained checkpoint: local folder (save_pretrained output, or "
                       "a peft adapter folder), Hub id or alias")
    task: str = param("sst2", "GLUE task (rbnlp list tasks)")
    attack: str = param("textfooler", "attack plugin name (rbnlp list attacks)")
    seed: int = param(0, "random seed (attack order, a new head's initialisation)", min=0)
    num_examples: int | None = param(100, "dev examples to attack (first N, TextAttack order); "
                                     "None = all", min=1)
    max_length: int | None = param(None, "truncation length in tokens (default: the task's)",
                                   min=8)
    device: str | None = param(None, "torch device (default: cuda if available, else cpu)")
    db: str | None = param(None, "SQLAlchemy URL (default $RBNLP_DB or sqlite:///rbnlp.db)")
    data_dir: str | None = param(None, "local GLUE mirror (default: found automatically)")
    progress: bool = param(True, "show progress bars")
    workers: int = param(1, "attack processes (each attacks a disjoint shard)", min=1)
    mixed_precision: str = param("auto", "bfloat16 autocast of the forward passes: bf16, "
                                 "auto (bf16 on a CUDA GPU that supports it), no",
                                 choices=("auto", "no", "bf16"))
    revision: str | None = param(None, "Hub revision (branch, tag or commit) of a Hub id")
    label_map: str | None = param(None, "checkpoint output id → task label, e.g. "
                                  "0=negative,1=positive (default: by id2label names)")
    allow_new_head: bool = param(False, "accept a classification head that the checkpoint "
                                 "lacks (randomly initialised)")
    name: str | None = param(None, "model card name (default: the folder name or Hub id)")
    paper_url: str | None = param(None, "model card: paper or link")
    reported_acc: float | None = param(None, "model card: ACC reported by its authors (%)",
                                       min=0, max=100)
    reported_aua: float | None = param(None, "model card: AUA reported by its authors (%)",
                                       min=0, max=100)
    attack_params: dict = field(default_factory=dict)
    #: the run's defense column: no defense is trained by an evaluate-only run
    defense: str = field(default=EVALUATE_ONLY, init=False)

    def check(self) -> None:
        if not self.model:
            raise ConfigError("model: give the checkpoint to evaluate (--model FOLDER_OR_HUB_ID)")


def eval_config_to_dict(cfg: EvalConfig) -> dict:
    return dataclasses.asdict(cfg)


def eval_config_from_dict(d: dict) -> EvalConfig:
    names = {f.name for f in dataclasses.fields(EvalConfig) if f.init}
    return EvalConfig(**{k: v for k, v in d.items() if k in names})


@dataclass
class ModelCard:
    """What identifies an evaluated model (RobustBench's ``ModelInfo`` is the precedent).

    Attributes:
        name: display name (``--name``; default: the folder name or the Hub id).
        source: where the weights came from: ``{"type": "hub", "id", "revision", "commit"}``
            or ``{"type": "folder", "path", "fingerprint", "files", "bytes"}`` (the
            fingerprint: :func:`robustbench_nlp.backbones.folder_fingerprint`).
        paper_url: the paper or a link (``--paper-url``).
        reported_acc: ACC its authors report (``--reported-acc``), if any.
        reported_aua: AUA its authors report (``--reported-aua``), if any.
        parameters: parameter count of the evaluated model (base + adapter).
        architecture: the ``transformers`` class; ``model_type`` its config's type.
        labels: checkpoint output → task label, as evaluated.
        adapter: peft adapter type and base model, or ``None``.
    """

    name: str
    source: dict
    parameters: int
    architecture: str
    model_type: str
    labels: str
    paper_url: str | None = None
    reported_acc: float | None = None
    reported_aua: float | None = None
    adapter: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_card(cfg: EvalConfig, info: dict) -> ModelCard:
    """The card of the model of ``cfg`` from its loading record (``load_checkpoint``'s info)."""
    from pathlib import Path

    from .backbones import ALIASES

    src = info["source"]
    default = Path(src["path"]).name if src["type"] == "folder" and cfg.model not in ALIASES \
        else cfg.model
    return ModelCard(name=cfg.name or default, source=src, parameters=info["parameters"],
                     architecture=info["architecture"], model_type=info["model_type"],
                     labels=info["labels"], paper_url=cfg.paper_url,
                     reported_acc=cfg.reported_acc, reported_aua=cfg.reported_aua,
                     adapter=info.get("adapter"))


def card_line(card: dict | None) -> str | None:
    """The ``rbnlp show`` line of a run's model card (``None`` without one):
    :func:`robustbench_nlp.leaderboard.model_card_text` in detail."""
    from .leaderboard import model_card_text

    return f"model card: {model_card_text({'model_card': card}, detail=True)}" if card else None


@dataclass
class EvalPlan:
    """A validated evaluate-only run."""

    cfg: EvalConfig
    task: object
    attack: object
    max_length: int


def plan_eval(cfg: EvalConfig) -> EvalPlan:
    """Resolve and validate an evaluate-only run before anything is loaded.

    Raises:
        ConfigError / UnknownNameError: bad names, options or task/attack combination.
    """
    validate(cfg)
    task = get_task(cfg.task)
    attack = make_attack(cfg)
    attack.check_task(task)
    return EvalPlan(cfg, task, attack, cfg.max_length or task.max_length)


def _pinned_revision(run) -> str | None:
    """The Hub commit a resumed run loaded (so it attacks the same weights)."""
    src = ((run.backbone or {}).get("model_card") or {}).get("source") or {}
    return src.get("commit") or src.get("revision") if src.get("type") == "hub" else None


def evaluate_model(cfg: EvalConfig, resume: str | None = None, store=None, echo=print,
                   continue_matching: bool = False) -> dict:
    """Evaluate (or continue evaluating) one trained checkpoint: ACC on the full dev split,
    then the attack, stored as a run with defense :data:`EVALUATE_ONLY`.

    Everything that can be wrong with the input (names, options, data files, the checkpoint,
    its label mapping, a missing head, the database) is checked before the run row is
    created.

    Args:
        cfg: the options.
        resume: id of an unfinished evaluate-only run to continue (its stored options are
            used; a folder checkpoint must still have the fingerprint it had).
        store: an open :class:`~robustbench_nlp.db.Store` (default: ``cfg.db``).
        echo: printer for progress messages.
        continue_matching: without ``resume``, continue the newest unfinished run with the
            same options and checkpoint whose process is gone.

    Returns:
        the run's metrics row as a dict (plus ``run_id``).

    Raises:
        ConfigError: bad options, an unloadable checkpoint, label mapping errors, a new
            head without ``allow_new_head``, a changed checkpoint folder on resume, an
            unknown, finished or live run id.
        KeyboardInterrupt: on SIGINT (and SIGTERM under the CLI); the run stays resumable.
    """
    from .db import open_store

    store = store or open_store(cfg.db)
    run, revision = None, cfg.revision
    if resume:
        run = resume_target(store, resume, evaluate_only=True)
        cfg = eval_config_from_dict(run.config["run"])
        revision = _pinned_revision(run) or cfg.revision
    p = plan_eval(cfg)
    cfg, task, attack = p.cfg, p.task, p.attack
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)  # a new head (--allow-new-head) is drawn from it
    frames, data_record = load_data(task, cfg.data_dir, splits=("validation",))
    dev_df = frames["validation"]
    tokenizer, model, info = load_checkpoint(cfg.model, task.label_names,
                                             label_map=cfg.label_map,
                                             allow_new_head=cfg.allow_new_head,
                                             revision=revision, task_name=task.name)
    info.update(prepare_model(model, cfg, device), processes=1)
    card = model_card(cfg, info)
    info["model_card"] = card.to_dict()
    if run is not None:
        before = ((run.backbone or {}).get("model_card") or {}).get("source") or {}
        if before.get("fingerprint") and before["fingerprint"] != card.source.get("fingerprint"):
            raise ConfigError(f"the checkpoint folder {card.source.get('path')} changed since "
                              f"run {resume!r} started (fingerprint {before['fingerprint'][:12]}"
                              f" → {str(card.source.get('fingerprint'))[:12]}); start a new "
                              "run instead")
    identity = (card.source.get("fingerprint") if card.source["type"] == "folder" else
                f"{card.source.get('id')}@{card.source.get('commit') or revision or 'main'}")
    config_record = {"run": eval_config_to_dict(cfg),
                     "defense": {"checkpoint": identity, "label_order": info["label_order"],
                                 "new_head": bool(info["new_weights"])},
                     "attack": dataclasses.asdict(attack.config), "max_length": p.max_length}
    row = dict(task=task.name, defense=EVALUATE_ONLY, attack=attack.name, model=cfg.model,
               seed=cfg.seed, num_examples=cfg.num_examples, config=config_record,
               backbone=info, versions=package_versions(), data=data_record,
               trainable_params=None, status="trained")
    run_id, _, run = open_run(store, cfg, config_record, row, resume=resume,
                              continue_matching=continue_matching, artifacts=False,
                              neutral=EVAL_NEUTRAL, echo=echo)
    if run is not None and not resume:  # a continued run: the card as given now
        store.update_run(run_id, backbone=info)
    echo(f"run {run_id}: evaluate-only {card.name} on {task.name} ({card.architecture}, "
         f"{card.parameters:,} parameters, labels {card.labels}), attack {attack.name}")
    with recording_failures(store, run_id, f"rbnlp eval --resume {run_id}", echo):
        clean_stage(store, run_id, model, tokenizer, dev_df, task, p.max_length)
        payload = {"kind": "evaluate", "cfg": eval_config_to_dict(cfg), "revision": revision}
        attack_stage(store, run_id, cfg, task, attack, p.max_length, model, tokenizer, dev_df,
                     data_record, trained=False, worker_payload=payload, echo=echo)
        m = finish_run(store, run_id)
    return {"run_id": run_id, **m}


def worker_victim(payload: dict):
    """An attack worker's model for an evaluate-only run
    (:func:`robustbench_nlp.runner.worker_victim`)."""
    cfg = eval_config_from_dict(payload["cfg"])
    p = plan_eval(cfg)
    seed_everything(cfg.seed)
    tokenizer, model, _ = load_checkpoint(cfg.model, p.task.label_names,
                                          label_map=cfg.label_map,
                                          allow_new_head=cfg.allow_new_head,
                                          revision=payload.get("revision"),
                                          task_name=p.task.name, fingerprint=False)
    prepare_model(model, cfg, pick_device(cfg.device))
    model.eval()
    return cfg, p.task, p.attack, p.max_length, tokenizer, model
