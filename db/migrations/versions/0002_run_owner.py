"""Record the process working on a run (``runs.host``, ``runs.pid``) and hand schema
versioning to Alembic (the ``rbnlp_schema`` table of revision 0001 is dropped).

Re-running an ``rbnlp run`` command continues the latest unfinished matching run only when the
process recorded here is no longer alive, so two concurrent identical commands never share a run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("rbnlp_schema")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pid")
        batch_op.drop_column("host")
    schema = op.create_table("rbnlp_schema",
                             sa.Column("id", sa.Integer(), nullable=False),
                             sa.Column("version", sa.Integer(), nullable=False),
                             sa.PrimaryKeyConstraint("id"))
    op.bulk_insert(schema, [{"id": 1, "version": 1}])
