"""Argon2id hashing and the password policy (no database)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from cpms_hub.accounts.passwords import (
    MIN_PASSWORD_LENGTH,
    PasswordHashing,
    check_password_policy,
    default_hasher,
)
from cpms_hub.domain.errors import ValidationError

CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


def test_hash_is_argon2id_and_verifies() -> None:
    hashing = PasswordHashing(CHEAP)
    stored = hashing.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert hashing.verify(stored, "correct horse battery")
    assert not hashing.verify(stored, "correct horse batterz")


def test_verify_tolerates_missing_and_garbage_hashes() -> None:
    hashing = PasswordHashing(CHEAP)
    assert not hashing.verify(None, "whatever password")
    assert not hashing.verify("", "whatever password")
    assert not hashing.verify("not-a-hash", "whatever password")


def test_needs_rehash_when_parameters_change() -> None:
    old = PasswordHashing(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    new = PasswordHashing(PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1))
    stored = old.hash("a long enough password")
    assert not old.needs_rehash(stored)
    assert new.needs_rehash(stored)
    assert new.verify(stored, "a long enough password")  # old hashes keep working


def test_default_is_rfc9106_low_memory() -> None:
    hasher = default_hasher()
    assert hasher.time_cost == RFC_9106_LOW_MEMORY.time_cost
    assert hasher.memory_cost == RFC_9106_LOW_MEMORY.memory_cost
    assert hasher.parallelism == RFC_9106_LOW_MEMORY.parallelism
    assert hasher.type is RFC_9106_LOW_MEMORY.type


@pytest.mark.parametrize(
    ("password", "username", "fragment"),
    [
        ("", "alice", "required"),
        ("short", "alice", f"at least {MIN_PASSWORD_LENGTH}"),
        ("x" * 11, "alice", f"at least {MIN_PASSWORD_LENGTH}"),
        ("x" * 1025, "alice", "at most"),
        ("dr-alice-smith", "dr-alice-smith", "user name"),
        ("DR-ALICE-SMITH", "dr-alice-smith", "user name"),
    ],
)
def test_policy_refusals_name_the_field(password: str, username: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_password_policy(password, username=username)
    assert info.value.field == "password"
    assert fragment in info.value.reason
    if password:
        assert password not in str(info.value)  # never echo the password


def test_policy_accepts_twelve_characters() -> None:
    check_password_policy("x" * 12, username="alice")
    check_password_policy("  spaces are fine  ", username="alice")
