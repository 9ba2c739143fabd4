"""Hash banks: banks, their entries (PDQ hashes, unique per bank, removal a tombstone) and the one-row
counter that orders every change by seq (server/review/bank_schema.py says why).

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bank_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("bank_id", sa.Integer, sa.ForeignKey("banks.id"), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("quality", sa.Integer, nullable=True),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=False),
        sa.Column("reference_id", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(100), nullable=True),
        sa.UniqueConstraint("bank_id", "hash", name="uq_bank_entries_bank_hash"),
    )
    op.create_index("ix_bank_entries_seq", "bank_entries", ["seq"], unique=True)
    counter = op.create_table(
        "bank_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "seq": 0}])


def downgrade() -> None:
    op.drop_table("bank_counter")
    op.drop_index("ix_bank_entries_seq", table_name="bank_entries")
    op.drop_table("bank_entries")
    op.drop_table("banks")
