"""slide annotations

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slide_annotations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("slide_id", sa.String(length=36), nullable=False),
        sa.Column("author", sa.String(length=32), nullable=False),
        sa.Column("body_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("slide_annotations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slide_annotations_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_slide_annotations_slide_id"), ["slide_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("slide_annotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slide_annotations_slide_id"))
        batch_op.drop_index(batch_op.f("ix_slide_annotations_case_id"))

    op.drop_table("slide_annotations")
