"""Errors specific to imaging: the one kind the flat CPMS hierarchy does not already name.

Everything else raised by :mod:`cpms_hub.imaging` is a
:class:`~cpms_hub.domain.errors.ValidationError` (malformed, truncated or absurd input) or an
:class:`~cpms_hub.domain.errors.IntegrityError` (an encrypted blob failed authentication).
"""

from __future__ import annotations

from cpms_hub.domain.errors import CpmsError

__all__ = ["UnsupportedFormatError"]


class UnsupportedFormatError(CpmsError):
    """A well-formed image in a format CPMS cannot de-identify or serve; names the format."""

    def __init__(self, detected: str, reason: str) -> None:
        super().__init__(f"unsupported slide format {detected!r}: {reason}")
        self.detected = detected
        self.reason = reason
