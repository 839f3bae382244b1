"""SQLAlchemy 2 ORM models: a run, its metrics, and one row per attacked example.

The same models serve SQLite (default ``rbnlp.db``) and any other SQLAlchemy URL
(e.g. ``postgresql+psycopg://...``); JSON columns use SQLAlchemy's portable ``JSON`` type.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: The schema version is the Alembic revision (``db/migrations/versions``); every change to
#: these models needs a new revision (:mod:`robustbench_nlp.db.store` upgrades databases to
#: the head revision when it opens them, and refuses revisions it does not know).

RUN_STATUSES = ("training", "trained", "attacking", "finished", "failed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One training + attack run (a leaderboard entry once ``status == 'finished'``)."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    task: Mapped[str] = mapped_column(String(32), index=True)
    defense: Mapped[str] = mapped_column(String(64), index=True)
    attack: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    num_examples: Mapped[int | None] = mapped_column(Integer)
    #: RunConfig, defense config and attack config as given
    config: Mapped[dict] = mapped_column(JSON)
    #: resolved backbone: source, model_type, pooling (head), parameter count
    backbone: Mapped[dict] = mapped_column(JSON, default=dict)
    #: package versions (torch, transformers, textattack, peft, ...)
    versions: Mapped[dict] = mapped_column(JSON, default=dict)
    #: attack resources (embedding space, sentence encoder, POS tagger) with fingerprints
    resources: Mapped[dict] = mapped_column(JSON, default=dict)
    #: data sources of the train / eval splits and their caveats
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    trainable_params: Mapped[int | None] = mapped_column(Integer)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    attack_seconds: Mapped[float | None] = mapped_column(Float)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    train_stats: Mapped[dict] = mapped_column(JSON, default=dict)
    artifact_dir: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: the process working on the run (host name and pid), so that re-running a command
    #: continues an unfinished run only when its process is gone (revision 0002)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    #: the attack protocol (:mod:`robustbench_nlp.attacks.protocol`): recipe, resolved
    #: options, resource fingerprints, attacked example set; and its short hash, which the
    #: leaderboard groups by (revision 0003)
    protocol: Mapped[dict | None] = mapped_column(JSON)
    protocol_hash: Mapped[str | None] = mapped_column(String(16), index=True)

    metrics: Mapped["Metrics | None"] = relationship(back_populates="run", uselist=False,
                                                     cascade="all, delete-orphan")
    examples: Mapped[list["Example"]] = relationship(back_populates="run",
                                                     cascade="all, delete-orphan")


class Metrics(Base):
    """Aggregate metrics of a run (percentages 0-100; TextAttack definitions)."""

    __tablename__ = "metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    acc: Mapped[float | None] = mapped_column(Float)  # clean accuracy, full eval split
    f1: Mapped[float | None] = mapped_column(Float)
    eval_examples: Mapped[int | None] = mapped_column(Integer)
    attacked_clean_acc: Mapped[float | None] = mapped_column(Float)
    aua: Mapped[float | None] = mapped_column(Float)
    avg: Mapped[float | None] = mapped_column(Float)
    asr: Mapped[float | None] = mapped_column(Float)
    attacked: Mapped[int | None] = mapped_column(Integer)
    successful: Mapped[int | None] = mapped_column(Integer)
    failed: Mapped[int | None] = mapped_column(Integer)
    skipped: Mapped[int | None] = mapped_column(Integer)
    avg_queries: Mapped[float | None] = mapped_column(Float)
    avg_perturbed_pct: Mapped[float | None] = mapped_column(Float)
    pred_distribution: Mapped[dict] = mapped_column(JSON, default=dict)
    gold_distribution: Mapped[dict] = mapped_column(JSON, default=dict)
    degenerate: Mapped[bool] = mapped_column(Boolean, default=False)
    delta_ratio: Mapped[float | None] = mapped_column(Float)
    #: derived from the example rows with no new queries (revision 0003,
    #: :func:`robustbench_nlp.metrics.robustness_summary`): AUA under a 10% / 30% cap on the
    #: share of words changed, the mean AUA over caps 0-50% (curve area), and the share of
    #: successful examples holding a polarity-reversing word swap
    aua_at_10: Mapped[float | None] = mapped_column(Float)
    aua_at_30: Mapped[float | None] = mapped_column(Float)
    curve_area: Mapped[float | None] = mapped_column(Float)
    invalid_swap_rate: Mapped[float | None] = mapped_column(Float)
    #: the curves' points and the most frequent polarity-reversing swaps
    robustness: Mapped[dict | None] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="metrics")


class Example(Base):
    """One attacked example of a run."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("run_id", "idx", name="uq_example_run_idx"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)  # row index in the evaluation split
    original: Mapped[list] = mapped_column(JSON)  # segments
    adversarial: Mapped[list] = mapped_column(JSON)
    attacked_segment: Mapped[int | None] = mapped_column(Integer)
    gold: Mapped[int] = mapped_column(Integer)
    pred_before: Mapped[int] = mapped_column(Integer)
    pred_after: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(String(16), index=True)
    queries: Mapped[int] = mapped_column(Integer)
    num_words: Mapped[int] = mapped_column(Integer)
    perturbed_words: Mapped[int] = mapped_column(Integer)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)

    run: Mapped[Run] = relationship(back_populates="examples")


#: states of a sweep cell run through a launcher (:mod:`robustbench_nlp.db.claims`)
CELL_STATES = ("pending", "claimed", "running", "finished", "failed", "interrupted")


class SweepCell(Base):
    """One cell of a sweep as a launcher sees it (revision 0004): who holds it, how far it got,
    its run and the logs of every job that held it.

    The primary key is a hash of the cell's configuration key
    (:func:`robustbench_nlp.sweep.run_key`), so claiming a cell is an ``INSERT`` that fails
    on a duplicate, or an ``UPDATE ... WHERE attempt = <seen>`` that matches one row; either
    way exactly one claimant wins (:func:`robustbench_nlp.db.claims.claim_cell`).
    """

    __tablename__ = "sweep_cells"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the sweep (its ``name``) that last claimed the cell, and the cell's label in it
    sweep: Mapped[str] = mapped_column(String(255), index=True)
    label: Mapped[str] = mapped_column(Text)
    #: ``pending``, ``claimed`` (a job is queued), ``running``, ``finished``, ``failed`` or
    #: ``interrupted`` (:data:`CELL_STATES`)
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: claim counter: every claim increments it, and the holder's writes match on it
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: ``slurm:<job id>`` or ``proc:<host>:<pid>`` (a driver between claim and submission)
    owner: Mapped[str | None] = mapped_column(String(255))
    slurm_job_id: Mapped[str | None] = mapped_column(String(64))
    #: the process running the cell (its runs carry the same host and pid)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    log_out: Mapped[str | None] = mapped_column(Text)
    log_err: Mapped[str | None] = mapped_column(Text)
    #: every job that held the cell: ``{"job_id", "state", "log_out", "log_err", "host",
    #: "pid"}`` dicts, oldest first
    jobs: Mapped[list] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
