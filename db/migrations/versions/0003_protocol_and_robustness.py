"""Attack protocols and robustness summaries: ``runs.protocol`` (the record of what a run's
AUA was measured under) with its short hash ``runs.protocol_hash``, and the per-run summaries
derived from the stored example rows (``metrics.aua_at_10``, ``aua_at_30``, ``curve_area``,
``invalid_swap_rate`` and the curves themselves in ``metrics.robustness``).

The new columns of runs stored before this revision are empty until ``rbnlp rescore``
computes them from the stored rows (it needs no model and no new queries).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("protocol_hash", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_runs_protocol_hash", ["protocol_hash"])
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        for name in ("aua_at_10", "aua_at_30", "curve_area", "invalid_swap_rate"):
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("robustness", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        for name in ("robustness", "invalid_swap_rate", "curve_area", "aua_at_30", "aua_at_10"):
            batch_op.drop_column(name)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_protocol_hash")
        batch_op.drop_column("protocol_hash")
        batch_op.drop_column("protocol")
