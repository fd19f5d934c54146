"""Content negotiation of DICOMweb answers: what an ``Accept`` header lets us send.

WADO-RS (PS3.18 8.7) answers in one of a few media types per resource; we offer:

* instances (a study, a series, an instance): ``multipart/related;
  type="application/dicom"`` - the stored de-identified files as they are, so a
  ``transfer-syntax`` parameter must be ``*`` or the stored syntax of every instance
  (we do not transcode);
* frames: ``multipart/related; type="application/octet-stream"`` - decoded pixels,
  Explicit VR Little Endian (``transfer-syntax`` ``*``, absent, or 1.2.840.10008.1.2.1);
* metadata and QIDO-RS results: ``application/dicom+json`` (or ``application/json``).

An absent ``Accept``, ``*/*``, ``multipart/related`` or ``multipart/*`` take the
default; a range with ``q=0`` is refused. When nothing acceptable can be sent,
:func:`negotiate` raises :class:`~cpms_hub.domain.errors.NotAcceptableError`: 406 in the
one JSON error shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cpms_hub.domain.errors import NotAcceptableError

__all__ = [
    "DICOM_JSON",
    "EXPLICIT_LE",
    "MediaRange",
    "negotiate",
    "parse_accept",
]

DICOM_JSON = "application/dicom+json"
#: the transfer syntax of decoded frames: Explicit VR Little Endian
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNCOMPRESSED = {EXPLICIT_LE, "1.2.840.10008.1.2"}


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an Accept header: ``type/subtype`` and its parameters."""

    media: str
    params: dict
    q: float


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside double quotes."""
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (``*/*`` when there is none)."""
    if not header or not header.strip():
        return [MediaRange("*/*", {}, 1.0)]
    out = []
    for item in _split(header[:4096], ","):
        media, *params = _split(item, ";")
        media = media.strip().lower()
        if not media:
            continue
        values: dict[str, str] = {}
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif name:
                values[name] = value
        out.append(MediaRange(media, values, q))
    return sorted((r for r in out if r.q > 0), key=lambda r: -r.q)


def _multipart_ok(r: MediaRange, part: str, syntaxes: set[str]) -> bool:
    if r.media not in ("multipart/related", "multipart/*", "*/*"):
        return False
    if r.media == "*/*":
        return True
    wanted = r.params.get("type", part).lower()
    if wanted not in (part, "*/*", part.split("/")[0] + "/*"):
        return False
    ts = r.params.get("transfer-syntax", "*")
    return ts == "*" or ts in syntaxes


def negotiate(header: str | None, resource: str, *, stored_syntaxes: Iterable[str] = ()) -> str:
    """The media type to answer with for ``resource`` (``instances``, ``frames`` or
    ``json``), given the request's Accept header; raises NotAcceptableError."""
    ranges = parse_accept(header)
    if resource == "json":
        for r in ranges:
            if r.media in (DICOM_JSON, "application/json", "application/*", "*/*"):
                return DICOM_JSON
        offered = DICOM_JSON
    elif resource == "instances":
        syntaxes = set(stored_syntaxes)
        # a transfer syntax is only satisfiable when every instance is stored in it
        common = syntaxes if len(syntaxes) == 1 else set()
        for r in ranges:
            if _multipart_ok(r, "application/dicom", common):
                return "application/dicom"
        offered = 'multipart/related; type="application/dicom" (as stored)'
    elif resource == "frames":
        for r in ranges:
            if _multipart_ok(r, "application/octet-stream", _UNCOMPRESSED):
                return "application/octet-stream"
        offered = 'multipart/related; type="application/octet-stream" (Explicit VR Little Endian)'
    else:  # pragma: no cover - a programming error
        raise ValueError(resource)
    raise NotAcceptableError(
        "not acceptable", reasons=(f"Accept: this resource is available as {offered}",)
    )
