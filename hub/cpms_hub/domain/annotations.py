"""Shared annotations on whole-slide images: a shape, a comment, its author.

A panel reviewing a case points at regions of a slide and says something about them.
An annotation is one shape in **level-0 pixel coordinates** of the slide (x to the right,
y down, origin at the top-left corner of the full-resolution image: the image coordinates
of OpenSeadragon and of the Deep Zoom descriptor's full size), so it is independent of the
zoom level, rotation or screen it was drawn on:

* ``point``: one (x, y);
* ``rectangle``: two corners, stored as (left, top), (right, bottom);
* ``polygon``: 3 to :data:`MAX_POLYGON_POINTS` vertices, closed implicitly.

The shape kinds follow the selectors of the W3C Web Annotation Data Model (2017) for
images: a point or rectangle is a media fragment ``xywh=`` (a point has no extent), a
polygon an ``SvgSelector`` ``<polygon points=...>``. Each annotation carries a comment
(what the reviewer wants the others to see), its author and the time it was made (UTC).
The comment is case content: the store encrypts it with the case's key like any other
field, and it never appears in a log, an error or a URL.

:class:`AnnotationDraft` is what a reviewer submits and checks shape only; whether the
shape lies within the slide is checked by the store, which knows the slide's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .errors import ValidationError

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_POLYGON_POINTS",
    "AnnotationDraft",
    "ShapeKind",
    "SlideAnnotation",
]

#: a comment is a remark, not a report: longer text belongs in the discussion
MAX_COMMENT_CHARS = 2000
#: enough for a carefully traced region; bounds the size of one annotation (~20 KB)
MAX_POLYGON_POINTS = 1000


class ShapeKind(StrEnum):
    POINT = "point"
    RECTANGLE = "rectangle"
    POLYGON = "polygon"


Point = tuple[float, float]


def _points(kind: ShapeKind, raw: object) -> tuple[Point, ...]:
    if not isinstance(raw, list | tuple):
        raise ValidationError("points", "must be a list of [x, y] pairs")
    out: list[Point] = []
    for p in raw:
        if (
            not isinstance(p, list | tuple)
            or len(p) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        ):
            raise ValidationError("points", "each point must be a pair of numbers [x, y]")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValidationError("points", "coordinates must be finite numbers")
        if x < 0 or y < 0:
            raise ValidationError("points", "coordinates must not be negative")
        out.append((round(x, 2), round(y, 2)))
    want = {ShapeKind.POINT: (1, 1), ShapeKind.RECTANGLE: (2, 2)}.get(kind, (3, MAX_POLYGON_POINTS))
    if not want[0] <= len(out) <= want[1]:
        many = f"{want[0]}" if want[0] == want[1] else f"{want[0]} to {want[1]}"
        raise ValidationError("points", f"a {kind.value} needs {many} points, not {len(out)}")
    if kind is ShapeKind.RECTANGLE:
        (x0, y0), (x1, y1) = out
        left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        if right == left or bottom == top:
            raise ValidationError("points", "a rectangle needs a width and a height")
        out = [(left, top), (right, bottom)]
    if kind is ShapeKind.POLYGON and len(set(out)) < 3:
        raise ValidationError("points", "a polygon needs 3 distinct vertices")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class AnnotationDraft:
    """A new annotation as submitted: checked for shape, normalised (rectangle corners)."""

    kind: ShapeKind
    points: tuple[Point, ...]
    comment: str

    @classmethod
    def parse(cls, kind: object, points: object, comment: object) -> AnnotationDraft:
        """From JSON-like values, raising ValidationError naming the field at fault."""
        try:
            shape = ShapeKind(kind)
        except ValueError:
            raise ValidationError(
                "kind", f"must be one of {', '.join(k.value for k in ShapeKind)}"
            ) from None
        if not isinstance(comment, str):
            raise ValidationError("comment", "must be text")
        text = comment.strip()
        if not text:
            raise ValidationError("comment", "is required: say what the shape shows")
        if len(text) > MAX_COMMENT_CHARS:
            raise ValidationError("comment", f"is longer than {MAX_COMMENT_CHARS} characters")
        if any(ord(c) < 32 and c not in "\n\t" for c in text):
            raise ValidationError("comment", "contains control characters")
        return cls(kind=shape, points=_points(shape, points), comment=text)

    def check_within(self, width: int, height: int) -> None:
        """Every point lies on the slide (``width`` × ``height`` level-0 pixels)."""
        for x, y in self.points:
            if x > width or y > height:
                raise ValidationError(
                    "points", f"lie outside the slide ({width} x {height} pixels at level 0)"
                )

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the shape."""
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True, slots=True)
class SlideAnnotation:
    """A stored annotation of slide ``slide_id`` of case ``case_id``."""

    id: str
    case_id: str
    slide_id: str
    kind: ShapeKind
    points: tuple[Point, ...]
    comment: str
    author: str
    created_at: datetime

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "case_id": self.case_id,
            "slide_id": self.slide_id,
            "kind": self.kind.value,
            "points": [list(p) for p in self.points],
            "comment": self.comment,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict) -> SlideAnnotation:
        return cls(
            id=d["id"],
            case_id=d["case_id"],
            slide_id=d["slide_id"],
            kind=ShapeKind(d["kind"]),
            points=tuple((float(x), float(y)) for x, y in d["points"]),
            comment=d["comment"],
            author=d["author"],
            created_at=datetime.fromisoformat(d["created_at"].replace("Z", "+00:00")),
        )
