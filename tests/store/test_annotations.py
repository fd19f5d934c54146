"""Shared slide annotations in the case store, on SQLite and PostgreSQL.

A real Aperio slide is imported (through :class:`SlideStore` and the real imaging
functions), then annotated: round trip of each shape, shapes outside the slide refused,
the comment encrypted at rest, every operation audited without the comment, deletion by
the author only, and the annotations gone with the case when it is erased.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cpms_hub.domain import (
    AnnotationDraft,
    NotFoundError,
    PermissionDeniedError,
    ShapeKind,
    ValidationError,
)
from cpms_hub.imaging import SlideTileSource, deidentify_svs
from cpms_hub.state import State
from cpms_hub.store import AuditContext
from cpms_hub.store.annotations import AnnotationRow, AnnotationStore
from cpms_hub.store.slides import SlideStore
from tests.integration.test_slides_http import SAMPLE
from tests.store.test_cases import CTX, all_entries, allow, deny, new_case

SECRET = "suspicious mitosis near the margin — Jane Example"


@pytest.fixture
def slide(backend: State):
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    case = new_case(backend)
    up = backend.cases.add_file(
        case.id,
        iter([SAMPLE.read_bytes()]),
        name="CMU-1-Small-Region.svs",
        media_type="image/tiff",
        max_size=1 << 30,
        authorize=allow,
        ctx=CTX,
    )
    slides = SlideStore(backend.cases, deidentify=deidentify_svs, tile_source=SlideTileSource)
    return slides.import_slide(case.id, up.id, authorize=allow, ctx=CTX)


def _draft(kind: str, points, comment: str = SECRET) -> AnnotationDraft:
    return AnnotationDraft.parse(kind, points, comment)


def test_each_shape_round_trips_in_order(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    made = [
        store.add_annotation(
            slide.case_id, slide.id, _draft("point", [[100, 200]]), authorize=allow, ctx=CTX
        ),
        store.add_annotation(
            slide.case_id,
            slide.id,
            _draft("rectangle", [[900, 700], [300, 100]], "a rectangle"),
            authorize=allow,
            ctx=CTX,
        ),
        store.add_annotation(
            slide.case_id,
            slide.id,
            _draft("polygon", [[10, 10], [500.5, 20], [250, 400.25]], "a polygon"),
            authorize=allow,
            ctx=AuditContext(actor="bob"),
        ),
    ]
    listed = store.list_annotations(slide.case_id, slide.id, authorize=allow, ctx=CTX)
    assert listed == made
    assert [a.kind for a in listed] == [ShapeKind.POINT, ShapeKind.RECTANGLE, ShapeKind.POLYGON]
    assert listed[1].points == ((300.0, 100.0), (900.0, 700.0))  # corners normalised
    assert [a.author for a in listed] == ["alice", "alice", "bob"]
    assert listed[0].comment == SECRET
    everything = store.list_case_annotations(slide.case_id, authorize=allow, ctx=CTX)
    assert everything == made


def test_comment_is_encrypted_and_never_audited(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    a = store.add_annotation(
        slide.case_id, slide.id, _draft("point", [[5, 5]]), authorize=allow, ctx=CTX
    )
    with backend.sessions() as s:
        row = s.scalars(select(AnnotationRow).where(AnnotationRow.id == a.id)).one()
        assert SECRET.encode() not in row.body_enc and b"point" not in row.body_enc
    entries = [e for e in all_entries(backend) if e.action.startswith("annotation.")]
    assert [e.action for e in entries] == ["annotation.add"]
    assert a.id in entries[0].detail and "Jane" not in entries[0].detail


def test_bad_shapes_refused_naming_the_field(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    with pytest.raises(ValidationError) as info:
        store.add_annotation(
            slide.case_id,
            slide.id,
            _draft("point", [[slide.width + 1, 10]]),
            authorize=allow,
            ctx=CTX,
        )
    assert info.value.field == "points" and "outside the slide" in str(info.value)
    for kind, points, comment, field in (
        ("circle", [[1, 1]], "x", "kind"),
        ("point", [[1, 1], [2, 2]], "x", "points"),
        ("rectangle", [[1, 1], [1, 9]], "x", "points"),
        ("polygon", [[1, 1], [2, 2]], "x", "points"),
        ("polygon", [[1, 1], [1, 1], [2, 2]], "x", "points"),
        ("point", [[-1, 1]], "x", "points"),
        ("point", [[float("nan"), 1]], "x", "points"),
        ("point", [["1", 1]], "x", "points"),
        ("point", "1,1", "x", "points"),
        ("point", [[1, 1]], "   ", "comment"),
        ("point", [[1, 1]], "x" * 2001, "comment"),
        ("point", [[1, 1]], "bell\x07", "comment"),
    ):
        with pytest.raises(ValidationError) as info:
            _draft(kind, points, comment)
        assert info.value.field == field, (kind, points, comment)
    assert store.list_annotations(slide.case_id, slide.id, authorize=allow, ctx=CTX) == []


def test_only_the_author_deletes(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    a = store.add_annotation(
        slide.case_id, slide.id, _draft("point", [[5, 5]]), authorize=allow, ctx=CTX
    )
    bob = AuditContext(actor="bob")
    with pytest.raises(PermissionDeniedError) as info:
        store.delete_annotation(slide.case_id, slide.id, a.id, authorize=allow, ctx=bob)
    assert "only its author (alice)" in info.value.reasons[0]
    denied = [e for e in all_entries(backend) if e.action == "annotation.delete"]
    assert [(e.actor, str(e.outcome)) for e in denied] == [("bob", "denied")]
    store.delete_annotation(slide.case_id, slide.id, a.id, authorize=allow, ctx=CTX)
    assert store.list_annotations(slide.case_id, slide.id, authorize=allow, ctx=CTX) == []
    with pytest.raises(NotFoundError):
        store.delete_annotation(slide.case_id, slide.id, a.id, authorize=allow, ctx=CTX)


def test_refused_callers_see_nothing_and_are_audited(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    with pytest.raises(PermissionDeniedError):
        store.add_annotation(
            slide.case_id, slide.id, _draft("point", [[5, 5]]), authorize=deny, ctx=CTX
        )
    with pytest.raises(PermissionDeniedError):
        store.list_annotations(slide.case_id, slide.id, authorize=deny, ctx=CTX)
    assert store.list_annotations(slide.case_id, slide.id, authorize=allow, ctx=CTX) == []
    with pytest.raises(NotFoundError):
        store.list_annotations(slide.case_id, "not-a-slide", authorize=allow, ctx=CTX)
    other = new_case(backend, "another case")
    with pytest.raises(NotFoundError):  # a slide id of another case is not found here
        store.list_annotations(other.id, slide.id, authorize=allow, ctx=CTX)


def test_erasure_takes_the_annotations(backend: State, slide) -> None:
    store = AnnotationStore(backend.cases)
    store.add_annotation(
        slide.case_id, slide.id, _draft("point", [[5, 5]]), authorize=allow, ctx=CTX
    )
    backend.cases.erase_case(slide.case_id, ctx=CTX)
    with backend.sessions() as s:
        assert s.scalars(select(AnnotationRow)).all() == []
