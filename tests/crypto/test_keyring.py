"""Keyring: key file handling, wrapping, rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from cpms_hub.crypto import Keyring, new_data_key
from cpms_hub.domain.errors import ConfigurationError, IntegrityError, KeyUnavailableError

CONTEXT = "case:0b6c1f0e-4a57-4e0e-9d55-3d7f6f1d2c11"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "cpms-keyring.json"


@pytest.fixture
def keyring(key_path: Path) -> Keyring:
    key_path.parent.mkdir()
    return Keyring.generate(key_path)


def _key_strings(path: Path) -> list[str]:
    document = json.loads(path.read_text())
    return [entry["key"] for entry in document["keks"]] + [document["index_key"]]


def test_new_data_key_is_random_256_bit() -> None:
    first, second = new_data_key(), new_data_key()
    assert len(first) == 32 and len(second) == 32
    assert first != second


def test_generate_creates_private_file_and_load_round_trips(
    keyring: Keyring, key_path: Path
) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    loaded = Keyring.load(key_path)
    assert loaded.key_ids == keyring.key_ids == (keyring.primary_id,)
    assert loaded.index_key == keyring.index_key
    assert len(loaded.index_key) == 32
    data_key = new_data_key()
    assert loaded.unwrap(keyring.wrap(data_key, context=CONTEXT), context=CONTEXT) == data_key


def test_generate_refuses_to_overwrite(keyring: Keyring, key_path: Path) -> None:
    before = key_path.read_bytes()
    with pytest.raises(ConfigurationError, match="already exists") as info:
        Keyring.generate(key_path)
    assert str(key_path) in str(info.value)
    assert key_path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_group_or_world_accessible_file(
    keyring: Keyring, key_path: Path, mode: int
) -> None:
    key_path.chmod(mode)
    with pytest.raises(ConfigurationError, match="chmod 600") as info:
        Keyring.load(key_path)
    assert f"{mode:04o}" in str(info.value)
    for secret in _key_strings(key_path):
        assert secret not in str(info.value)


def test_load_accepts_owner_read_only(keyring: Keyring, key_path: Path) -> None:
    key_path.chmod(0o400)
    assert Keyring.load(key_path).primary_id == keyring.primary_id


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Keyring.load(tmp_path / "nope.json")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda doc: "{not json", "not valid JSON"),
        (lambda doc: json.dumps({**doc, "format": "other"}), "not a CPMS keyring"),
        (lambda doc: json.dumps({**doc, "version": 99}), "unsupported format version"),
        (lambda doc: json.dumps({**doc, "keks": []}), "no key-encryption keys"),
        (
            lambda doc: json.dumps(
                {**doc, "keks": [{"id": "k1", "key": base64.b64encode(b"short").decode()}]}
            ),
            "must be 32 bytes",
        ),
        (
            lambda doc: json.dumps({**doc, "keks": [{"id": "k1", "key": "%%%"}]}),
            "not valid base64",
        ),
        (lambda doc: json.dumps({**doc, "keks": doc["keks"] * 2}), "twice"),
        (lambda doc: json.dumps({**doc, "index_key": None}), "index_key"),
    ],
)
def test_load_malformed_file(keyring: Keyring, key_path: Path, mutate, message: str) -> None:
    document = json.loads(key_path.read_text())
    secrets = _key_strings(key_path)
    _write_private(key_path, mutate(document))
    with pytest.raises(ConfigurationError, match=message) as info:
        Keyring.load(key_path)
    # No chained exception (e.g. a JSONDecodeError holding the whole file) may leak out.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    for secret in secrets:
        assert secret not in str(info.value)


def test_repr_hides_key_material(keyring: Keyring, key_path: Path) -> None:
    text = repr(keyring)
    assert keyring.primary_id in text
    for secret in _key_strings(key_path):
        assert secret not in text
    assert repr(keyring.index_key) not in text


def test_wrap_is_self_describing_and_randomised(keyring: Keyring) -> None:
    data_key = new_data_key()
    first = keyring.wrap(data_key, context=CONTEXT)
    second = keyring.wrap(data_key, context=CONTEXT)
    assert first != second
    assert data_key not in first
    assert keyring.wrapped_key_id(first) == keyring.primary_id
    assert not keyring.needs_rewrap(first)


def test_wrap_rejects_wrong_key_size(keyring: Keyring) -> None:
    with pytest.raises(ValueError):
        keyring.wrap(b"x" * 16, context=CONTEXT)


def test_unwrap_with_other_context_fails(keyring: Keyring) -> None:
    wrapped = keyring.wrap(new_data_key(), context=CONTEXT)
    with pytest.raises(IntegrityError):
        keyring.unwrap(wrapped, context="case:someone-else")


def test_unwrap_detects_tampering_anywhere(keyring: Keyring) -> None:
    wrapped = keyring.wrap(new_data_key(), context=CONTEXT)
    for position in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[position] ^= 0x01
        with pytest.raises((IntegrityError, KeyUnavailableError)) as info:
            keyring.unwrap(bytes(tampered), context=CONTEXT)
        assert wrapped.hex() not in str(info.value)
    for cut in (0, 1, 5, len(wrapped) - 1):
        with pytest.raises(IntegrityError):
            keyring.unwrap(wrapped[:cut], context=CONTEXT)


def test_unknown_key_id_is_key_unavailable(keyring: Keyring, tmp_path: Path) -> None:
    other = Keyring.generate(tmp_path / "other.json")
    wrapped = other.wrap(new_data_key(), context=CONTEXT)
    with pytest.raises(KeyUnavailableError, match=other.primary_id):
        keyring.unwrap(wrapped, context=CONTEXT)


def test_rotation(keyring: Keyring, key_path: Path) -> None:
    data_key = new_data_key()
    old_wrapped = keyring.wrap(data_key, context=CONTEXT)

    rotated = Keyring.rotate(key_path)
    assert rotated.primary_id != keyring.primary_id
    assert rotated.key_ids == (rotated.primary_id, keyring.primary_id)
    assert rotated.index_key == keyring.index_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in key_path.parent.iterdir()) == [key_path.name]
    assert Keyring.load(key_path).key_ids == rotated.key_ids

    # Old wrapped keys stay readable and are flagged for re-wrapping.
    assert rotated.unwrap(old_wrapped, context=CONTEXT) == data_key
    assert rotated.needs_rewrap(old_wrapped)

    new_wrapped = rotated.rewrap(old_wrapped, context=CONTEXT)
    assert rotated.wrapped_key_id(new_wrapped) == rotated.primary_id
    assert not rotated.needs_rewrap(new_wrapped)
    assert rotated.unwrap(new_wrapped, context=CONTEXT) == data_key
    # Idempotent once under the primary.
    assert rotated.rewrap(new_wrapped, context=CONTEXT) == new_wrapped
    # The old keyring cannot read keys wrapped under the new primary.
    with pytest.raises(KeyUnavailableError):
        keyring.unwrap(new_wrapped, context=CONTEXT)


def test_rotate_on_instance_uses_the_file(keyring: Keyring, key_path: Path) -> None:
    once = keyring.rotate(key_path)
    # The stale instance must not drop the key added by the first rotation.
    twice = keyring.rotate(key_path)
    assert len(twice.key_ids) == 3
    assert once.primary_id in twice.key_ids


def test_rewrap_checks_authenticity(keyring: Keyring, key_path: Path) -> None:
    wrapped = keyring.wrap(new_data_key(), context=CONTEXT)
    rotated = Keyring.rotate(key_path)
    with pytest.raises(IntegrityError):
        rotated.rewrap(wrapped, context="case:other")


def test_rotate_refuses_insecure_file(keyring: Keyring, key_path: Path) -> None:
    key_path.chmod(0o644)
    with pytest.raises(ConfigurationError):
        Keyring.rotate(key_path)


def test_constructor_validates(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Keyring([], b"i" * 32)
    with pytest.raises(ConfigurationError):
        Keyring([("k1", b"k" * 31)], b"i" * 32)
    with pytest.raises(ConfigurationError):
        Keyring([("bad id", b"k" * 32)], b"i" * 32)
    with pytest.raises(ConfigurationError):
        Keyring([("k1", b"k" * 32)], b"i" * 16)
    ring = Keyring([("k2", b"a" * 32), ("k1", b"b" * 32)], b"i" * 32)
    assert ring.primary_id == "k2"
    assert ring.key_ids == ("k2", "k1")


def test_concurrent_rotations_keep_every_key(keyring: Keyring, key_path: Path) -> None:
    results: list[Keyring] = []
    threads = [
        threading.Thread(target=lambda: results.append(Keyring.rotate(key_path))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = Keyring.load(key_path)
    assert len(final.key_ids) == 5
    assert {ring.primary_id for ring in results} <= set(final.key_ids)
