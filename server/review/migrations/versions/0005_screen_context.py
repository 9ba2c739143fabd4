"""What a screening result says beyond the boxes, and the own bank's bookkeeping: known-image
matches, what decided (`decided_by`), the image-level head's scores, thresholds and model; the
photo's PDQ hash and the own bank its confirm stands behind (server/review/own_bank.py).

All columns are nullable: items from before this revision have none of it.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (
    ("matches", sa.JSON),
    ("screen_decided_by", lambda: sa.String(64)),
    ("image_scores", sa.JSON),
    ("image_thresholds", sa.JSON),
    ("head", sa.JSON),
    ("pdq_hash", lambda: sa.String(64)),
    ("banked_in", lambda: sa.String(100)),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("items", sa.Column(name, kind(), nullable=True))
    op.create_index("ix_items_pdq_hash", "items", ["pdq_hash"])


def downgrade() -> None:
    op.drop_index("ix_items_pdq_hash", table_name="items")
    with op.batch_alter_table("items") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
