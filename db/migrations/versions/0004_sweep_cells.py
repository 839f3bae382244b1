"""Sweep cells claimed by launchers (``rbnlp sweep --launcher slurm``): the ``sweep_cells``
table, one row per cell configuration with its state, holder (Slurm job or driver process),
claim counter, heartbeat, run id and job logs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("sweep_cells",
                    sa.Column("id", sa.String(length=64), nullable=False),
                    sa.Column("sweep", sa.String(length=255), nullable=False),
                    sa.Column("label", sa.Text(), nullable=False),
                    sa.Column("state", sa.String(length=16), nullable=False),
                    sa.Column("attempt", sa.Integer(), nullable=False),
                    sa.Column("owner", sa.String(length=255), nullable=True),
                    sa.Column("slurm_job_id", sa.String(length=64), nullable=True),
                    sa.Column("host", sa.String(length=255), nullable=True),
                    sa.Column("pid", sa.Integer(), nullable=True),
                    sa.Column("run_id", sa.String(length=32), nullable=True),
                    sa.Column("log_out", sa.Text(), nullable=True),
                    sa.Column("log_err", sa.Text(), nullable=True),
                    sa.Column("jobs", sa.JSON(), nullable=False),
                    sa.Column("error", sa.Text(), nullable=True),
                    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    with op.batch_alter_table("sweep_cells", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweep_cells_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sweep_cells_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_sweep_cells_sweep"), ["sweep"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sweep_cells", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweep_cells_sweep"))
        batch_op.drop_index(batch_op.f("ix_sweep_cells_state"))
        batch_op.drop_index(batch_op.f("ix_sweep_cells_run_id"))
    op.drop_table("sweep_cells")
