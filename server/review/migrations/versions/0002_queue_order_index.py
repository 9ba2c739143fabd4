"""The queue index in queue order (priority and confidence descending): with 100k items queued,
a page and the queue counts no longer sort or scan the table.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_items_queue", table_name="items")
    op.create_index("ix_items_queue", "items", ["state", sa.text("priority DESC"), sa.text("top_confidence DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_items_queue", table_name="items")
    op.create_index("ix_items_queue", "items", ["state", "priority", "top_confidence", "id"])
