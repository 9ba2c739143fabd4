"""The embedding signal beside PDQ (server/core/embedding.py): a bank entry's and a screened item's
embedding (packed float16, NULL when there is none) and the name of the model that made it ("" then).

Existing rows get NULL and "": entries and items from before this revision have no embedding.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("bank_entries", "items")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("embedding", sa.LargeBinary, nullable=True))
        op.add_column(table, sa.Column("embedding_model", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("embedding_model")
            batch.drop_column("embedding")
