"""The workbench: one item per image (image_key, unique), reject reasons, stored outcomes for the
stats, and the indexes behind the list view's filters, a listing's other images and undo.

A store may already hold the same image twice (uniqueness was per image and request id): those
items stay; the first of each image takes the key, so only new intake is deduplicated.
Old decisions get their outcome from the same rule the store uses (server.review.outcomes).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.review.outcomes import outcome_of

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("image_key", sa.String(64), nullable=True))
    op.add_column("items", sa.Column("reason", sa.String(32), nullable=True))
    op.add_column("items", sa.Column("outcome", sa.String(16), nullable=True))
    op.add_column("items", sa.Column("relabelled_to", sa.String(64), nullable=True))
    op.execute("UPDATE items SET image_key = image_sha256 WHERE id IN (SELECT MIN(id) FROM items GROUP BY image_sha256)")
    items = sa.table("items", sa.column("id", sa.Integer), sa.column("decision", sa.String), sa.column("detections", sa.JSON),
                     sa.column("final_boxes", sa.JSON), sa.column("outcome", sa.String), sa.column("relabelled_to", sa.String))
    op.execute("UPDATE items SET outcome = 'confirmed' WHERE decision = 'confirm'")
    op.execute("UPDATE items SET outcome = 'rejected' WHERE decision = 'reject'")
    bind = op.get_bind()  # a fix needs its boxes compared: row by row
    for row in bind.execute(sa.select(items.c.id, items.c.decision, items.c.detections, items.c.final_boxes)
                            .where(items.c.decision == "fix")).all():
        outcome, to = outcome_of(row.decision, row.detections or [], row.final_boxes)
        bind.execute(items.update().where(items.c.id == row.id).values(outcome=outcome, relabelled_to=to))
    op.create_index("uq_items_image_key", "items", ["image_key"], unique=True)
    op.create_index("ix_items_listing", "items", ["listing_id"])
    op.create_index("ix_items_model_version", "items", ["model_version"])
    op.create_index("ix_decisions_reviewer", "decisions", ["reviewer", "id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_reviewer", table_name="decisions")
    op.drop_index("ix_items_model_version", table_name="items")
    op.drop_index("ix_items_listing", table_name="items")
    op.drop_index("uq_items_image_key", table_name="items")
    with op.batch_alter_table("items") as batch:
        for column in ("relabelled_to", "outcome", "reason", "image_key"):
            batch.drop_column(column)
