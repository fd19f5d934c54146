"""The relational schema of the case store (SQLAlchemy 2 declarative models).

Columns ending in ``_enc`` hold AEAD ciphertext made by
:class:`cpms_hub.crypto.FieldCipher`, bound to (table, row id, field, schema
version); columns ending in ``_bidx`` hold blind indexes (keyed HMAC) for
exact look-ups. Nothing else in these tables is patient data: identifiers are
random UUIDs, and user, hospital and network names describe staff and
organisations. The same models serve SQLite and PostgreSQL; Alembic
migrations under ``migrations/`` create them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "AccountRow",
    "DataKeyRow",
    "CaseRow",
    "CaseMemberRow",
    "BlobRow",
    "AuditRow",
    "AuditHeadRow",
    "GrantUseRow",
    "ConsentRow",
    "UploadRow",
    "SCHEMA_VERSION",
]

#: bound into every field's associated data; bump when a field's meaning changes
SCHEMA_VERSION = 1


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on the way in and out, on SQLite (which drops the zone) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: CPMS stores UTC only")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    """A staff account. Secrets (TOTP seeds) are encrypted with the system key."""

    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200))
    hospital: Mapped[str] = mapped_column(String(200))
    network: Mapped[str] = mapped_column(String(200))
    #: comma-separated :class:`cpms_hub.domain.Role` values
    roles: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    #: confirmed TOTP seed (encrypted); NULL until enrolment is confirmed
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: seed shown during enrolment, confirmed by the first valid code
    totp_pending_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: last accepted TOTP time step, so a code cannot be used twice
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: newline-separated expertise (ORPHA codes, specialties) for finding panel experts
    expertise: Mapped[str] = mapped_column(Text, default="")
    #: IANA time zone, to show meeting times in the person's own time
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")


class DataKeyRow(Base):
    """A data key wrapped by the keyring: one per case, plus system keys.

    ``id`` is ``case:<uuid>`` or ``system:<purpose>``. Erasing a case destroys
    its row here first (crypto-shredding): without it no ciphertext of the
    case can be decrypted, even from backups of the data tables.
    """

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(32), index=True)
    hospital: Mapped[str] = mapped_column(String(200))
    network: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(32))
    title_enc: Mapped[bytes] = mapped_column(LargeBinary)
    summary_enc: Mapped[bytes] = mapped_column(LargeBinary)
    pseudonym_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    pseudonym_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    #: JSON of :class:`cpms_hub.domain.CaseContent` (patient, phenotypes, diagnoses, ...)
    content_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    schema_version: Mapped[int] = mapped_column(Integer, default=SCHEMA_VERSION)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: milestones for reports (time from submission to outcome); no patient data
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    members: Mapped[list[CaseMemberRow]] = relationship(
        back_populates="case", cascade="all, delete-orphan", lazy="selectin"
    )
    consents: Mapped[list[ConsentRow]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ConsentRow.recorded_at"
    )


class CaseMemberRow(Base):
    __tablename__ = "case_members"

    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)

    case: Mapped[CaseRow] = relationship(back_populates="members")

    __table_args__ = (Index("ix_case_members_user", "user"),)


class ConsentRow(Base):
    """One signed consent record of a case.

    ``scopes`` and ``withdrawn`` (comma-separated scope names) stay in clear so
    that every read can check consent without decrypting; they say what the
    patient allowed, not who the patient is. Everything else (form version,
    language, signature date, who recorded it, withdrawal reasons) is in
    ``payload_enc``.
    """

    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    scopes: Mapped[str] = mapped_column(String(200))
    withdrawn: Mapped[str] = mapped_column(String(200), default="")
    payload_enc: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UploadRow(Base):
    """A chunked, resumable upload in progress (see :mod:`cpms_hub.store.uploads`)."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(32))
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    segment_size: Mapped[int] = mapped_column(Integer)
    #: the plaintext not yet sealed into a segment, encrypted between requests
    tail_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlobRow(Base):
    """An encrypted file attached to a case (segments on the blob backend)."""

    __tablename__ = "blobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    segment_size: Mapped[int] = mapped_column(Integer)
    sha256_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """One audit entry; ``hash`` chains it to the entry before (no patient data)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row that serialises appends to the chain (locked per append)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class GrantUseRow(Base):
    """The first use of an image grant: its nonce, kept until the grant has expired.

    A grant's first use is audited once across all worker processes; this is how a
    process learns that another one has already written the entry, by primary key
    (looking for the entry itself meant reading every audit entry of the case).
    """

    __tablename__ = "grant_uses"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
