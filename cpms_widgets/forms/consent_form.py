"""The consent form as data: what to record, and the patient's state at a glance.

Recording uploads the signed form (a PDF or image) to the case first, then
records the consent pointing at it; the store checks the file really is a
PDF or image. :func:`consent_summary` turns the store's consent state into
the lines a clinician reads: what is granted, what was withdrawn and why
submission is blocked.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpms_hub.domain import ConsentScope, ValidationError
from cpms_hub.domain.consent import FORM_MEDIA_TYPES, looks_like

if TYPE_CHECKING:
    from cpms_widgets.client import CaseStoreClient

__all__ = ["ConsentFormModel", "consent_summary", "SCOPE_LABELS"]

SCOPE_LABELS: dict[ConsentScope, str] = {
    ConsentScope.PANEL_DISCUSSION: "Care and panel discussion (required to submit)",
    ConsentScope.REGISTRIES: "Network databases and registries",
    ConsentScope.RESEARCH_CONTACT: "Being contacted for research",
}


@dataclass
class ConsentFormModel:
    scopes: set[ConsentScope] = field(default_factory=set)
    form_version: str = ""
    language: str = "en"
    signed_on: date | None = None
    form_path: str = ""

    def validate(self) -> list[str]:
        problems = []
        if not self.scopes:
            problems.append("scopes: tick at least one scope the patient agreed to")
        if not self.form_version.strip():
            problems.append("form_version: is required")
        if len(self.language) not in (2, 5):
            problems.append("language: a code such as fr or fr-BE")
        if self.signed_on is None:
            problems.append("signed_on: is required")
        elif self.signed_on > date.today():
            problems.append("signed_on: cannot be in the future")
        if not self.form_path:
            problems.append("form: attach the signed form (PDF or image)")
        else:
            path = Path(self.form_path)
            if not path.is_file():
                problems.append("form: no such file")
            elif self.media_type() not in FORM_MEDIA_TYPES:
                problems.append("form: must be a PDF or an image (PNG, JPEG, TIFF)")
            elif path.stat().st_size == 0:
                problems.append("form: the file is empty")
            elif not _looks_like(path, self.media_type()):
                problems.append(f"form: the file's content is not {self.media_type()}")
        return problems

    def media_type(self) -> str:
        return mimetypes.guess_type(self.form_path)[0] or "application/octet-stream"

    def record(self, client: CaseStoreClient, case_id: str, *, progress=None):  # noqa: ANN001, ANN201
        problems = self.validate()
        if problems:
            raise ValidationError.of(problems)
        form = client.upload(
            case_id, self.form_path, media_type=self.media_type(), progress=progress
        )
        return client.record_consent(
            case_id,
            scopes=sorted(self.scopes),
            form_version=self.form_version,
            language=self.language,
            signed_on=self.signed_on,
            form_file_id=form.id,
        )


def _looks_like(path: Path, media_type: str) -> bool:
    # checked before uploading, so a wrong file never reaches the case
    with path.open("rb") as fh:
        return looks_like(fh.read(8), media_type)


def consent_summary(state: dict[str, Any]) -> list[str]:
    """Readable lines from ``CaseStoreClient.consents(case_id)``."""
    lines = []
    granted = set(state.get("granted", []))
    withdrawn = set(state.get("withdrawn", []))
    for scope, label in SCOPE_LABELS.items():
        if scope.value in granted:
            lines.append(f"✔ {label}")
        elif scope.value in withdrawn:
            lines.append(f"✘ {label} — withdrawn")
        else:
            lines.append(f"– {label} — not granted")
    for reason in state.get("blocking_submission", []):
        lines.append(f"Submission blocked: {reason.partition(': ')[2] or reason}")
    return lines
