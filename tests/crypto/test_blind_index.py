"""BlindIndex: deterministic, keyed, purpose-separated, normalised."""

from __future__ import annotations

import pytest

from cpms_hub.crypto import BlindIndex

KEY = bytes(range(32))


@pytest.fixture
def index() -> BlindIndex:
    return BlindIndex(KEY)


def test_deterministic_hex_sha256(index: BlindIndex) -> None:
    value = index.compute("PSN-0042", purpose="pseudonym")
    assert value == index.compute("PSN-0042", purpose="pseudonym")
    assert value == BlindIndex(KEY).compute("PSN-0042", purpose="pseudonym")
    assert len(value) == 64 and int(value, 16) >= 0
    assert value != index.compute("PSN-0043", purpose="pseudonym")


def test_keyed(index: BlindIndex) -> None:
    other = BlindIndex(bytes(32))
    assert index.compute("x@example.org", purpose="email") != other.compute(
        "x@example.org", purpose="email"
    )


def test_purpose_separated(index: BlindIndex) -> None:
    assert index.compute("same", purpose="pseudonym") != index.compute("same", purpose="email")
    # Length-prefixed purpose: shifting characters between purpose and value cannot collide.
    assert index.compute("bc", purpose="a") != index.compute("c", purpose="ab")


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Alice@Example.org", "alice@example.org"),
        ("  alice@example.org\t\n", "alice@example.org"),
        ("Ren\u00e9", "Rene\u0301"),  # NFC: precomposed vs combining accent
        ("STRASSE", "straße"),  # case folding, not just lower()
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),
    ],
)
def test_normalisation(index: BlindIndex, left: str, right: str) -> None:
    assert index.compute(left, purpose="name") == index.compute(right, purpose="name")


def test_inner_whitespace_kept(index: BlindIndex) -> None:
    assert index.compute("van der berg", purpose="name") != index.compute(
        "vanderberg", purpose="name"
    )


def test_validation_and_repr(index: BlindIndex) -> None:
    with pytest.raises(ValueError):
        BlindIndex(b"short")
    with pytest.raises(ValueError):
        index.compute("x", purpose="")
    with pytest.raises(TypeError):
        index.compute(b"x", purpose="p")  # type: ignore[arg-type]
    assert KEY.hex() not in repr(index) and repr(KEY) not in repr(index)
