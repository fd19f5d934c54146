"""dicom instances

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("blob_id", sa.String(length=36), nullable=False),
        sa.Column("pixel_blob_id", sa.String(length=36), nullable=True),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("frame_bytes", sa.BigInteger(), nullable=False),
        sa.Column("pixel_offset", sa.BigInteger(), nullable=False),
        sa.Column("view_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pixel_blob_id"], ["blobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_instances_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_dicom_instances_series_uid"), ["series_uid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dicom_instances_case_sop"), ["case_id", "sop_uid"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_instances_case_sop"))
        batch_op.drop_index(batch_op.f("ix_dicom_instances_series_uid"))
        batch_op.drop_index(batch_op.f("ix_dicom_instances_case_id"))

    op.drop_table("dicom_instances")
