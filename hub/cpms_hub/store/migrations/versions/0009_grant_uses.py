"""grant uses: the nonce of each image grant whose first use was audited

Revision ID: 0009
Revises: 0008

Until now a process that had not seen a grant looked for its ``slide.view`` /
``dicom.view`` entry among all the audit entries of the case, under the writers'
lock. A grant that was in use while this revision was applied may be audited a
second time after it (an extra entry, never a missing one); grants live minutes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grant_uses",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_grant_uses_expires_at", "grant_uses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_grant_uses_expires_at", table_name="grant_uses")
    op.drop_table("grant_uses")
