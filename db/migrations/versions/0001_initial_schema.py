"""Initial schema: the tables of the first rbnlp release (runs, metrics, examples) and its
single-row ``rbnlp_schema`` version table (version 1).

A database written before Alembic was adopted is exactly this revision; the store stamps it
as ``0001`` and upgrades it.

Revision ID: 0001
Revises: -
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = op.create_table("rbnlp_schema",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.bulk_insert(schema, [{"id": 1, "version": 1}])
    op.create_table("runs",
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("task", sa.String(length=32), nullable=False),
    sa.Column("defense", sa.String(length=64), nullable=False),
    sa.Column("attack", sa.String(length=64), nullable=False),
    sa.Column("model", sa.String(length=256), nullable=False),
    sa.Column("seed", sa.Integer(), nullable=False),
    sa.Column("num_examples", sa.Integer(), nullable=True),
    sa.Column("config", sa.JSON(), nullable=False),
    sa.Column("backbone", sa.JSON(), nullable=False),
    sa.Column("versions", sa.JSON(), nullable=False),
    sa.Column("resources", sa.JSON(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("trainable_params", sa.Integer(), nullable=True),
    sa.Column("train_seconds", sa.Float(), nullable=True),
    sa.Column("attack_seconds", sa.Float(), nullable=True),
    sa.Column("peak_memory_mb", sa.Float(), nullable=True),
    sa.Column("train_stats", sa.JSON(), nullable=False),
    sa.Column("artifact_dir", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_attack"), ["attack"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_defense"), ["defense"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_model"), ["model"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_task"), ["task"], unique=False)

    op.create_table("examples",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("run_id", sa.String(length=32), nullable=False),
    sa.Column("idx", sa.Integer(), nullable=False),
    sa.Column("original", sa.JSON(), nullable=False),
    sa.Column("adversarial", sa.JSON(), nullable=False),
    sa.Column("attacked_segment", sa.Integer(), nullable=True),
    sa.Column("gold", sa.Integer(), nullable=False),
    sa.Column("pred_before", sa.Integer(), nullable=False),
    sa.Column("pred_after", sa.Integer(), nullable=False),
    sa.Column("result", sa.String(length=16), nullable=False),
    sa.Column("queries", sa.Integer(), nullable=False),
    sa.Column("num_words", sa.Integer(), nullable=False),
    sa.Column("perturbed_words", sa.Integer(), nullable=False),
    sa.Column("extra", sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("run_id", "idx", name="uq_example_run_idx")
    )
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_examples_result"), ["result"], unique=False)
        batch_op.create_index(batch_op.f("ix_examples_run_id"), ["run_id"], unique=False)

    op.create_table("metrics",
    sa.Column("run_id", sa.String(length=32), nullable=False),
    sa.Column("acc", sa.Float(), nullable=True),
    sa.Column("f1", sa.Float(), nullable=True),
    sa.Column("eval_examples", sa.Integer(), nullable=True),
    sa.Column("attacked_clean_acc", sa.Float(), nullable=True),
    sa.Column("aua", sa.Float(), nullable=True),
    sa.Column("avg", sa.Float(), nullable=True),
    sa.Column("asr", sa.Float(), nullable=True),
    sa.Column("attacked", sa.Integer(), nullable=True),
    sa.Column("successful", sa.Integer(), nullable=True),
    sa.Column("failed", sa.Integer(), nullable=True),
    sa.Column("skipped", sa.Integer(), nullable=True),
    sa.Column("avg_queries", sa.Float(), nullable=True),
    sa.Column("avg_perturbed_pct", sa.Float(), nullable=True),
    sa.Column("pred_distribution", sa.JSON(), nullable=False),
    sa.Column("gold_distribution", sa.JSON(), nullable=False),
    sa.Column("degenerate", sa.Boolean(), nullable=False),
    sa.Column("delta_ratio", sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("run_id")
    )


def downgrade() -> None:
    op.drop_table("metrics")
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_examples_run_id"))
        batch_op.drop_index(batch_op.f("ix_examples_result"))

    op.drop_table("examples")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_task"))
        batch_op.drop_index(batch_op.f("ix_runs_status"))
        batch_op.drop_index(batch_op.f("ix_runs_model"))
        batch_op.drop_index(batch_op.f("ix_runs_defense"))
        batch_op.drop_index(batch_op.f("ix_runs_attack"))

    op.drop_table("runs")
    op.drop_table("rbnlp_schema")
