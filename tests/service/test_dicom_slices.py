"""The viewer's batch selection of slices (``.../dicom/series/{uid}/slices/{selection}``)."""

from __future__ import annotations

import pytest

from cpms_hub.domain import NotFoundError, ValidationError
from cpms_hub.service.dicom_routes import MAX_BATCH_SLICES, parse_slices


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("0", [0]),
        ("0-3", [0, 1, 2, 3]),
        ("5-2", [5, 4, 3, 2]),  # a range may count down: the order asked is the order sent
        ("7,8,6,9-10", [7, 8, 6, 9, 10]),
        ("3,3,2-4", [3, 2, 4]),  # each slice at most once
    ],
)
def test_selections(text: str, want: list[int]) -> None:
    assert parse_slices(text, 20) == want


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "1--2", "1,,2", "1.5", "0x10", "9" * 20])
def test_bad_selections_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_slices(text, 20)
    assert err.value.field == "slices"


def test_beyond_the_series_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        parse_slices("18-20", 20)


def test_at_most_a_batch() -> None:
    assert len(parse_slices(f"0-{MAX_BATCH_SLICES - 1}", 1000)) == MAX_BATCH_SLICES
    for text in (f"0-{MAX_BATCH_SLICES}", ",".join(str(i) for i in range(MAX_BATCH_SLICES + 1))):
        with pytest.raises(ValidationError):
            parse_slices(text, 1000)
