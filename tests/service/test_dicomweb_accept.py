"""WADO-RS / QIDO-RS content negotiation: what each Accept header gets, and 406."""

from __future__ import annotations

import pytest

from cpms_hub.domain.errors import NotAcceptableError
from cpms_hub.service.dicomweb_accept import negotiate, parse_accept

CT = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.90"


def test_parse_keeps_quoted_commas_and_orders_by_quality() -> None:
    ranges = parse_accept(
        'application/json;q=0.5, multipart/related; type="application/dicom"; '
        "transfer-syntax=*, image/png;q=0"
    )
    assert [r.media for r in ranges] == ["multipart/related", "application/json"]
    assert ranges[0].params == {"type": "application/dicom", "transfer-syntax": "*"}


@pytest.mark.parametrize(
    ("accept", "resource", "syntaxes", "want"),
    [
        (None, "instances", {CT}, "application/dicom"),
        ("*/*", "instances", {CT}, "application/dicom"),
        ('multipart/related; type="application/dicom"', "instances", {CT}, "application/dicom"),
        (
            f'multipart/related; type="application/dicom"; transfer-syntax={CT}',
            "instances",
            {CT},
            "application/dicom",
        ),
        (
            'multipart/related; type="application/dicom"; transfer-syntax=*',
            "instances",
            {CT, J2K},
            "application/dicom",
        ),
        (
            'multipart/related; type="application/octet-stream"',
            "frames",
            (),
            "application/octet-stream",
        ),
        ("multipart/related", "frames", (), "application/octet-stream"),
        (
            f'multipart/related; type="application/octet-stream"; transfer-syntax={CT}',
            "frames",
            (),
            "application/octet-stream",
        ),
        ("application/dicom+json", "json", (), "application/dicom+json"),
        ("application/json", "json", (), "application/dicom+json"),
        ("image/png, */*;q=0.1", "json", (), "application/dicom+json"),
    ],
)
def test_acceptable(accept, resource, syntaxes, want) -> None:
    assert negotiate(accept, resource, stored_syntaxes=syntaxes) == want


@pytest.mark.parametrize(
    ("accept", "resource", "syntaxes"),
    [
        ('multipart/related; type="application/dicom+xml"', "json", ()),
        ("application/dicom", "instances", {CT}),  # single part: PS3.18 says multipart
        (f'multipart/related; type="application/dicom"; transfer-syntax={J2K}', "instances", {CT}),
        (  # instances stored in two syntaxes cannot all be sent in one
            f'multipart/related; type="application/dicom"; transfer-syntax={CT}',
            "instances",
            {CT, J2K},
        ),
        ('multipart/related; type="image/jpeg"', "frames", ()),
        (
            f'multipart/related; type="application/octet-stream"; transfer-syntax={J2K}',
            "frames",
            (),
        ),
        ("application/dicom+json;q=0", "json", ()),
    ],
)
def test_not_acceptable(accept, resource, syntaxes) -> None:
    with pytest.raises(NotAcceptableError) as err:
        negotiate(accept, resource, stored_syntaxes=syntaxes)
    assert err.value.reasons[0].startswith("Accept:")
