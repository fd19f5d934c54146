"""Shared annotations on the slides of a case: encrypted, audited, deleted by their author.

An annotation (:class:`~cpms_hub.domain.SlideAnnotation`) is case content: its shape and
comment are kept as one AEAD-encrypted JSON body under the case's data key, bound to
(``slide_annotations``, row id, ``body``), so it is crypto-shredded with the case. Only
the author's name, the slide and the time stay in clear (who annotated what, as in the
audit trail). Rows go with their slide and case (foreign keys ``ON DELETE CASCADE``).

Every list, addition and deletion is one audit entry in the transaction that performs it,
naming the slide and annotation ids, never the comment. Authorisation is the caller's
``authorize`` callback (the service passes ``decide(actor, FILE_READ)`` for reading and
``decide(actor, ANNOTATION_WRITE)`` for writing); deleting further requires being the
author: reviewers remove their own remarks, not each other's.

The :class:`AnnotationRow` model registers on the store's ``Base``; migration ``0006``
creates its table.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import ForeignKey, LargeBinary, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cpms_hub.domain import (
    AnnotationDraft,
    NotFoundError,
    PermissionDeniedError,
    ShapeKind,
    SlideAnnotation,
    ValidationError,
)

from .cases import AuditContext, Authorize, CaseStore, _is_uuid
from .database import session_scope
from .schema import Base, UTCDateTime
from .slides import SlideRow

__all__ = ["AnnotationRow", "AnnotationStore", "MAX_ANNOTATIONS_PER_SLIDE"]

#: a bound on one slide's annotations, so a runaway client cannot fill the store
MAX_ANNOTATIONS_PER_SLIDE = 5000


class AnnotationRow(Base):
    """One annotation; ``body_enc`` holds kind, points and comment (encrypted JSON)."""

    __tablename__ = "slide_annotations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    slide_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("slides.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(32))
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class AnnotationStore:
    """Annotations of slides, on top of a :class:`CaseStore` (same keys, audit, database)."""

    def __init__(self, case_store: CaseStore) -> None:
        self.cases = case_store

    def _annotation(self, s: Session, row: AnnotationRow) -> SlideAnnotation:
        cipher = self.cases._cipher(s, row.case_id)
        body = json.loads(
            cipher.decrypt_text(
                row.body_enc, table="slide_annotations", row_id=row.id, field="body"
            )
        )
        return SlideAnnotation(
            id=row.id,
            case_id=row.case_id,
            slide_id=row.slide_id,
            kind=ShapeKind(body["kind"]),
            points=tuple((float(x), float(y)) for x, y in body["points"]),
            comment=body["comment"],
            author=row.author,
            created_at=_utc(row.created_at),
        )

    @staticmethod
    def _slide(s: Session, case_id: str, slide_id: str) -> SlideRow:
        row = s.get(SlideRow, slide_id) if _is_uuid(slide_id) else None
        if row is None or row.case_id != case_id:
            raise NotFoundError("no such slide in this case")
        return row

    def list_annotations(
        self, case_id: str, slide_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[SlideAnnotation]:
        """The slide's annotations, oldest first."""
        with session_scope(self.cases.sessions) as s:
            self.cases._check(s, self.cases._row(s, case_id), authorize, ctx, "annotation.list")
            self._slide(s, case_id, slide_id)
            rows = s.scalars(
                select(AnnotationRow)
                .where(AnnotationRow.slide_id == slide_id)
                .order_by(AnnotationRow.created_at, AnnotationRow.id)
            ).all()
            found = [self._annotation(s, r) for r in rows]
            self.cases._allowed(
                s, ctx, "annotation.list", case_id, detail=f"slide={slide_id} n={len(found)}"
            )
            return found

    def list_case_annotations(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[SlideAnnotation]:
        """Every annotation of every slide of the case, oldest first (for the discussion)."""
        with session_scope(self.cases.sessions) as s:
            self.cases._check(s, self.cases._row(s, case_id), authorize, ctx, "annotation.list")
            rows = s.scalars(
                select(AnnotationRow)
                .where(AnnotationRow.case_id == case_id)
                .order_by(AnnotationRow.created_at, AnnotationRow.id)
            ).all()
            found = [self._annotation(s, r) for r in rows]
            self.cases._allowed(s, ctx, "annotation.list", case_id, detail=f"n={len(found)}")
            return found

    def add_annotation(
        self,
        case_id: str,
        slide_id: str,
        draft: AnnotationDraft,
        *,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> SlideAnnotation:
        """Store ``draft`` (checked to lie on the slide) by ``ctx.actor``."""
        with session_scope(self.cases.sessions) as s:
            self.cases._check(s, self.cases._row(s, case_id), authorize, ctx, "annotation.add")
            slide = self._slide(s, case_id, slide_id)
            draft.check_within(slide.width, slide.height)
            count = s.scalar(select(func.count()).where(AnnotationRow.slide_id == slide_id))
            if (count or 0) >= MAX_ANNOTATIONS_PER_SLIDE:
                raise ValidationError(
                    "slide", f"has {MAX_ANNOTATIONS_PER_SLIDE} annotations already"
                )
            annotation_id = str(uuid.uuid4())
            body = json.dumps(
                {
                    "kind": draft.kind.value,
                    "points": [list(p) for p in draft.points],
                    "comment": draft.comment,
                },
                separators=(",", ":"),
            )
            row = AnnotationRow(
                id=annotation_id,
                case_id=case_id,
                slide_id=slide_id,
                author=ctx.actor,
                body_enc=self.cases._cipher(s, case_id).encrypt(
                    body, table="slide_annotations", row_id=annotation_id, field="body"
                ),
                created_at=datetime.now(UTC),
            )
            s.add(row)
            s.flush()
            self.cases._allowed(
                s,
                ctx,
                "annotation.add",
                case_id,
                detail=f"slide={slide_id} annotation={annotation_id} kind={draft.kind.value}",
            )
            return self._annotation(s, row)

    def delete_annotation(
        self,
        case_id: str,
        slide_id: str,
        annotation_id: str,
        *,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> None:
        """Delete an annotation; only its author may (a refusal is audited)."""
        with session_scope(self.cases.sessions) as s:
            self.cases._check(s, self.cases._row(s, case_id), authorize, ctx, "annotation.delete")
            self._slide(s, case_id, slide_id)
            row = s.get(AnnotationRow, annotation_id) if _is_uuid(annotation_id) else None
            if row is None or row.slide_id != slide_id:
                raise NotFoundError("no such annotation on this slide")
            if row.author != ctx.actor:
                reasons = (f"only its author ({row.author}) deletes an annotation",)
                self.cases._denied(s, ctx, "annotation.delete", case_id, reasons)
                s.commit()
                raise PermissionDeniedError("not allowed", reasons=reasons)
            s.execute(delete(AnnotationRow).where(AnnotationRow.id == annotation_id))
            self.cases._allowed(
                s,
                ctx,
                "annotation.delete",
                case_id,
                detail=f"slide={slide_id} annotation={annotation_id}",
            )
