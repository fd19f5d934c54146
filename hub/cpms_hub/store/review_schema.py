"""Tables of panel review (migration ``0005`` creates them).

As everywhere in the store, columns ending in ``_enc`` are AEAD ciphertext under
the case's data key, bound to (table, row id, field): opinions, messages,
questions, answers, minutes, meeting titles, reasons and the outcome. Everything
else names staff, states, dates and random ids, which the lifecycle, policy and
reports need in clear. Signing keys' private halves are encrypted under a
system data key (itself wrapped by the keyring); the public halves are in clear
so that anyone holding the database can verify a signature.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .schema import Base, UTCDateTime

__all__ = [
    "PanelRow",
    "PanelMemberRow",
    "ContributionRow",
    "MessageRow",
    "InformationRequestRow",
    "MeetingRow",
    "OutcomeRow",
    "EndorsementRow",
    "SigningKeyRow",
    "NotificationRow",
    "MailOutboxRow",
    "FollowUpRow",
]


def _case_fk() -> ForeignKey:
    return ForeignKey("cases.id", ondelete="CASCADE")


class PanelRow(Base):
    __tablename__ = "panels"

    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[date] = mapped_column(Date)
    assembled_by: Mapped[str] = mapped_column(String(32))
    assembled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when the deadline reminder went out (once per deadline)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PanelMemberRow(Base):
    __tablename__ = "panel_members"

    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    network: Mapped[str] = mapped_column(String(200))
    invited_by: Mapped[str] = mapped_column(String(32))
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_panel_members_user", "user"),)


class ContributionRow(Base):
    __tablename__ = "contributions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), index=True)
    author: Mapped[str] = mapped_column(String(32))
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("uq_contributions_author", "case_id", "author", unique=True),)


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), index=True)
    author: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(36))
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    #: comma-separated user names
    mentions: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InformationRequestRow(Base):
    __tablename__ = "information_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), index=True)
    asked_by: Mapped[str] = mapped_column(String(32))
    question_enc: Mapped[bytes] = mapped_column(LargeBinary)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    answered_by: Mapped[str | None] = mapped_column(String(32))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MeetingRow(Base):
    __tablename__ = "meetings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), index=True)
    title_enc: Mapped[bytes] = mapped_column(LargeBinary)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    scheduled_by: Mapped[str] = mapped_column(String(32))
    #: comma-separated user names
    attended: Mapped[str] = mapped_column(Text, default="")
    minutes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutcomeRow(Base):
    """The current outcome of a case: its canonical JSON form, encrypted."""

    __tablename__ = "outcomes"

    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    #: canonical JSON (the exact bytes the signatures cover, inside the statement)
    document_enc: Mapped[bytes] = mapped_column(LargeBinary)
    drafted_by: Mapped[str] = mapped_column(String(32))
    drafted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FollowUpRow(Base):
    """The follow-up of a case (migration ``0008``): treatment category and result, encrypted.

    One row per case; a later follow-up replaces it. Who recorded it and when are in clear,
    like every other row's staff and dates.
    """

    __tablename__ = "followups"

    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), primary_key=True)
    #: JSON ``{treatment, result}`` (:class:`~cpms_hub.domain.followup.FollowUpDraft`)
    record_enc: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_by: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EndorsementRow(Base):
    __tablename__ = "endorsements"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), _case_fk(), index=True)
    version: Mapped[int] = mapped_column(Integer)
    signer: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    reason_enc: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(36), ForeignKey("signing_keys.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # one signature per member and version: a second one fails even under a race
    __table_args__ = (Index("uq_endorsements_signer", "case_id", "version", "signer", unique=True),)


class SigningKeyRow(Base):
    """A member's Ed25519 key pair; the private half encrypted, the public half clear."""

    __tablename__ = "signing_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationRow(Base):
    """An in-app notification: a kind and a link, no patient data."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[str | None] = mapped_column(String(36))
    link: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MailOutboxRow(Base):
    """An e-mail waiting for the background sender (written with the change it announces)."""

    __tablename__ = "mail_outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str] = mapped_column(String(200), default="")
