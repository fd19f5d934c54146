"""FieldCipher: AES-GCM field encryption bound to table, row, field and schema version."""

from __future__ import annotations

import pytest

from cpms_hub.crypto import FieldCipher, new_data_key
from cpms_hub.domain.errors import IntegrityError

WHERE = {"table": "patients", "row_id": "6f1c2d3e-0000-4000-8000-000000000001", "field": "name"}
SECRET = "Jöhanna de Vries-Ørsted"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(new_data_key())


def test_round_trip_bytes_and_text(cipher: FieldCipher) -> None:
    for plaintext in (b"", b"x", bytes(range(256)) * 20):
        assert cipher.decrypt(cipher.encrypt(plaintext, **WHERE), **WHERE) == plaintext
    sealed = cipher.encrypt_text(SECRET, **WHERE)
    assert cipher.decrypt_text(sealed, **WHERE) == SECRET
    assert cipher.decrypt(cipher.encrypt(SECRET, **WHERE), **WHERE) == SECRET.encode()


def test_ciphertext_format_and_randomness(cipher: FieldCipher) -> None:
    first = cipher.encrypt(b"same", **WHERE)
    second = cipher.encrypt(b"same", **WHERE)
    assert first != second
    assert first[0] == 1
    assert len(first) == 1 + 12 + 4 + 16
    assert b"same" not in first


def test_flipped_bit_fails(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt_text(SECRET, **WHERE)
    for position in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[position] ^= bit
            with pytest.raises(IntegrityError):
                cipher.decrypt(bytes(tampered), **WHERE)


@pytest.mark.parametrize(
    "moved",
    [
        {"row_id": "6f1c2d3e-0000-4000-8000-000000000002"},
        {"field": "date_of_birth"},
        {"table": "contacts"},
        {"schema_version": 2},
    ],
)
def test_ciphertext_moved_elsewhere_fails(cipher: FieldCipher, moved: dict) -> None:
    sealed = cipher.encrypt_text(SECRET, **WHERE)
    with pytest.raises(IntegrityError):
        cipher.decrypt(sealed, **{**WHERE, **moved})


def test_associated_data_is_unambiguous(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt(b"v", table="ab", row_id="c", field="f")
    with pytest.raises(IntegrityError):
        cipher.decrypt(sealed, table="a", row_id="bc", field="f")
    sealed = cipher.encrypt(b"v", table="t", row_id="r", field="f:x")
    with pytest.raises(IntegrityError):
        cipher.decrypt(sealed, table="t", row_id="r:f", field="x")


def test_wrong_data_key_fails(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt_text(SECRET, **WHERE)
    with pytest.raises(IntegrityError):
        FieldCipher(new_data_key()).decrypt(sealed, **WHERE)


@pytest.mark.parametrize("sealed", [b"", b"\x01", b"\x01" + b"\x00" * 27, b"\x02" + b"\x00" * 40])
def test_malformed_ciphertext_fails(cipher: FieldCipher, sealed: bytes) -> None:
    with pytest.raises(IntegrityError):
        cipher.decrypt(sealed, **WHERE)


def test_error_message_names_table_and_field_only(cipher: FieldCipher) -> None:
    sealed = cipher.encrypt_text(SECRET, **WHERE)
    with pytest.raises(IntegrityError) as info:
        cipher.decrypt(sealed, **{**WHERE, "row_id": "other-row"})
    message = str(info.value)
    assert "patients.name" in message
    assert WHERE["row_id"] not in message and "other-row" not in message
    assert SECRET not in message and sealed.hex() not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_constructor_and_repr(cipher: FieldCipher) -> None:
    with pytest.raises(ValueError):
        FieldCipher(b"short")
    key = new_data_key()
    assert key.hex() not in repr(FieldCipher(key)) and repr(key) not in repr(FieldCipher(key))
    with pytest.raises(ValueError):
        cipher.encrypt(b"x", **WHERE, schema_version=-1)
