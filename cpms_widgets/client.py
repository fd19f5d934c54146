"""``CaseStoreClient``: the only way user code reaches the case store.

Built from the environment JupyterHub gives a user server
(``JUPYTERHUB_API_TOKEN``) and the store's address (``CPMS_STORE_URL``); it
sends the token in the ``Authorization`` header — never in a URL — and turns
the service's JSON into :mod:`cpms_hub.domain` objects. A refused request
raises the matching :class:`cpms_hub.domain.CpmsError` subclass carrying the
server's ``status`` and ``reasons``. ``repr`` never shows the token.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cpms_hub.domain import (
    Account,
    AccountStatus,
    AnnotationDraft,
    AuthenticationError,
    Case,
    CaseContent,
    CaseFile,
    CaseMember,
    CaseStatus,
    ConflictError,
    ConsentScope,
    CpmsError,
    KeyUnavailableError,
    MemberRole,
    NotFoundError,
    PermissionDeniedError,
    Role,
    ShapeKind,
    SlideAnnotation,
    ValidationError,
)
from cpms_hub.domain.codec import consent_from_json, content_from_json, content_to_json

from .review_client import ReviewClientMixin
from .uploads import upload_file

#: seconds an import may take (de-identification of every instance happens in the request)
IMPORT_TIMEOUT = 900.0

__all__ = ["CaseStoreClient", "ClientSettings", "StoreError"]


class StoreError(CpmsError):
    """The store answered with an error that has no more specific class."""


_STATUS_ERRORS: dict[int, type[CpmsError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: KeyUnavailableError,
}


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where the store is and how long to wait for it."""

    store_url: str
    timeout: float = 30.0

    @classmethod
    def from_env(cls) -> ClientSettings:
        url = os.environ.get("CPMS_STORE_URL")
        if not url:
            raise CpmsError("CPMS_STORE_URL is not set: is this a CPMS user server?")
        return cls(store_url=url.rstrip("/"))


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _case(d: dict[str, Any]) -> Case:
    return Case(
        id=d["id"],
        owner=d["owner"],
        hospital=d["hospital"],
        network=d["network"],
        status=CaseStatus(d["status"]),
        title=d["title"],
        clinical_summary=d["clinical_summary"],
        created_at=_dt(d["created_at"]),
        updated_at=_dt(d["updated_at"]),
        members=tuple(
            CaseMember(m["user"], MemberRole(m["role"]), _dt(m["added_at"])) for m in d["members"]
        ),
        consent=frozenset(ConsentScope(s) for s in d.get("consent", {}).get("granted", [])),
        consent_withdrawn=frozenset(
            ConsentScope(s) for s in d.get("consent", {}).get("withdrawn", [])
        ),
        content=content_from_json(d["content"]) if d.get("content") else None,
    )


def _file(d: dict[str, Any]) -> CaseFile:
    return CaseFile(
        id=d["id"],
        case_id=d["case_id"],
        name=d["name"],
        media_type=d["media_type"],
        size=d["size"],
        sha256=d["sha256"],
        created_by=d["created_by"],
        created_at=_dt(d["created_at"]),
    )


def _account(d: dict[str, Any]) -> Account:
    return Account(
        name=d["name"],
        email=d["email"],
        full_name=d["full_name"],
        hospital=d["hospital"],
        network=d["network"],
        roles=frozenset(Role(r) for r in d["roles"]),
        status=AccountStatus(d["status"]),
        mfa_enrolled=d["mfa_enrolled"],
        created_at=_dt(d["created_at"]),
    )


class CaseStoreClient(ReviewClientMixin):
    """Typed access to the case store as one user (panel review: :mod:`.review_client`)."""

    def __init__(self, store_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.store_url = store_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.store_url,
            headers={"Authorization": f"token {token}"},
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_env(cls) -> CaseStoreClient:
        """The client of the user this server belongs to."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise CpmsError("JUPYTERHUB_API_TOKEN is not set: is this a JupyterHub user server?")
        settings = ClientSettings.from_env()
        return cls(settings.store_url, token, timeout=settings.timeout)

    def __repr__(self) -> str:
        return f"CaseStoreClient({self.store_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CaseStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------

    def _raise_for(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        try:
            body = resp.json()
            reasons = tuple(body.get("reasons") or ()) or (body.get("error", "error"),)
            error = body.get("error", "error")
        except ValueError:
            reasons, error = (f"HTTP {resp.status_code}",), f"HTTP {resp.status_code}"
        if resp.status_code in (400, 413, 422):
            field, _, reason = reasons[0].partition(": ")
            exc: CpmsError = ValidationError(field or "body", reason or error)
            exc.reasons = reasons
        else:
            cls = _STATUS_ERRORS.get(resp.status_code, StoreError)
            exc = cls(f"{error}: {'; '.join(reasons)}", reasons=reasons)
        exc.status = resp.status_code  # type: ignore[attr-defined]
        raise exc

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._http.request(method, path, **kwargs)
        self._raise_for(resp)
        return resp.json() if resp.content else None

    # -- who am I ----------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/me")

    def health(self) -> bool:
        return self._request("GET", "/health").get("status") == "ok"

    # -- cases -------------------------------------------------------------

    def create_case(
        self,
        title: str,
        clinical_summary: str = "",
        *,
        network: str | None = None,
        pseudonym: str | None = None,
        content: CaseContent | None = None,
    ) -> Case:
        """A new draft; with ``content``, created whole or not at all."""
        body: dict[str, Any] = {"title": title, "clinical_summary": clinical_summary}
        if content is not None:
            body["content"] = content_to_json(content)
        if network is not None:
            body["network"] = network
        if pseudonym is not None:
            body["pseudonym"] = pseudonym
        return _case(self._request("POST", "/cases", json=body))

    def list_cases(self) -> list[Case]:
        return [_case(d) for d in self._request("GET", "/cases")]

    def cases_frame(self):  # noqa: ANN201 - pandas is optional at import time
        """The caller's cases as a pandas DataFrame (one row per case)."""
        import pandas as pd

        rows = [
            {
                "id": c.id,
                "title": c.title,
                "status": c.status.value,
                "owner": c.owner,
                "hospital": c.hospital,
                "network": c.network,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
            }
            for c in self.list_cases()
        ]
        return pd.DataFrame(
            rows,
            columns=[
                "id",
                "title",
                "status",
                "owner",
                "hospital",
                "network",
                "created_at",
                "updated_at",
            ],
        )

    def get_case(self, case_id: str) -> Case:
        return _case(self._request("GET", f"/cases/{quote(case_id, safe='')}"))

    def update_case(
        self, case_id: str, *, title: str | None = None, clinical_summary: str | None = None
    ) -> Case:
        body = {
            k: v
            for k, v in (("title", title), ("clinical_summary", clinical_summary))
            if v is not None
        }
        return _case(self._request("PATCH", f"/cases/{quote(case_id, safe='')}", json=body))

    def find_by_pseudonym(self, pseudonym: str) -> list[Case]:
        """Exact look-up; the pseudonym travels in the request body, not the URL."""
        return [
            _case(d) for d in self._request("POST", "/cases/lookup", json={"pseudonym": pseudonym})
        ]

    def set_content(self, case_id: str, content: CaseContent) -> Case:
        """Replace the case's clinical content (codes are checked by the store)."""
        return _case(
            self._request(
                "PUT", f"/cases/{quote(case_id, safe='')}/content", json=content_to_json(content)
            )
        )

    def submit(self, case_id: str) -> Case:
        """Submit the case to its network's panel; a ValidationError lists every problem."""
        return _case(self._request("POST", f"/cases/{quote(case_id, safe='')}/submit"))

    # -- consent -----------------------------------------------------------

    def record_consent(
        self,
        case_id: str,
        *,
        scopes: list[str] | list[ConsentScope],
        form_version: str,
        language: str,
        signed_on: date,
        form_file_id: str | None = None,
    ):  # noqa: ANN201 - a cpms_hub.domain.Consent
        body = {
            "scopes": [str(getattr(s, "value", s)) for s in scopes],
            "form_version": form_version,
            "language": language,
            "signed_on": signed_on.isoformat(),
            "form_file_id": form_file_id,
        }
        return consent_from_json(
            self._request("POST", f"/cases/{quote(case_id, safe='')}/consents", json=body)
        )

    def consents(self, case_id: str) -> dict[str, Any]:
        """Consent records and the state at a glance: granted, withdrawn, what blocks submit."""
        data = self._request("GET", f"/cases/{quote(case_id, safe='')}/consents")
        data["consents"] = [consent_from_json(c) for c in data["consents"]]
        return data

    def withdraw_consent(
        self, case_id: str, consent_id: str, scope: str, reason: str, on: date | None = None
    ):  # noqa: ANN201 - a cpms_hub.domain.Consent
        body: dict[str, Any] = {"scope": str(getattr(scope, "value", scope)), "reason": reason}
        if on is not None:
            body["on"] = on.isoformat()
        path = f"/cases/{quote(case_id, safe='')}/consents/{quote(consent_id, safe='')}/withdraw"
        return consent_from_json(self._request("POST", path, json=body))

    # -- files -------------------------------------------------------------

    def upload(
        self,
        case_id: str,
        path: str | os.PathLike[str],
        *,
        media_type: str = "application/octet-stream",
        progress: Callable[[int, int], None] | None = None,
        resume: bool = True,
    ) -> CaseFile:
        """Send a file of any size in resumable chunks; the store encrypts as they arrive.

        An interrupted upload of the same file to the same case picks up where it
        stopped when called again (``resume=False`` starts over).
        """
        data = upload_file(
            self._http,
            case_id,
            path,
            media_type=media_type,
            progress=progress,
            resume=resume,
            raise_for=self._raise_for,
        )
        return _file(data)

    def list_files(self, case_id: str) -> list[CaseFile]:
        return [_file(d) for d in self._request("GET", f"/cases/{quote(case_id, safe='')}/files")]

    def download(self, case_id: str, file_id: str, dest: str | os.PathLike[str]) -> Path:
        dest = Path(dest)
        url = f"/cases/{quote(case_id, safe='')}/files/{quote(file_id, safe='')}"
        with self._http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._raise_for(resp)
            with dest.open("wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
        return dest

    # -- whole-slide images ------------------------------------------------

    def import_slide(
        self,
        case_id: str,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
        resume: bool = True,
    ) -> dict[str, Any]:
        """Upload the slide at local ``path`` (chunked, resumable: multi-GB files are fine)
        and import it as a de-identified slide of the case.

        ``progress(sent, total)`` follows the upload. The store deletes the uploaded
        original (it holds the slide label); the result's ``report`` names the removed
        images and header fields. A format that cannot be de-identified is refused with
        an error naming the format (HTTP 415); the uploaded file then stays in the case
        as an ordinary file, as it was sent (the store keeps nothing of a failed import).
        """
        uploaded = self.upload(
            case_id, path, media_type="image/tiff", progress=progress, resume=resume
        )
        return self.import_slide_file(case_id, uploaded.id)

    def import_slide_file(self, case_id: str, file_id: str) -> dict[str, Any]:
        """Import a file already in the case (``upload(...)``) as a de-identified slide."""
        return self._request(
            "POST", f"/cases/{quote(case_id, safe='')}/slides", json={"file_id": file_id}
        )

    def list_slides(self, case_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/cases/{quote(case_id, safe='')}/slides")

    def slide_grant(self, case_id: str, slide_id: str) -> dict[str, Any]:
        """A short-lived grant for a browser viewer: ``{grant, header, expires_at, dzi_url,
        tiles_url}``. The viewer sends ``grant`` in the ``X-CPMS-Grant`` header, never in
        a URL."""
        path = f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}/grant"
        return self._request("POST", path)

    def slide_properties(self, case_id: str, slide_id: str) -> dict[str, Any]:
        path = f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}/properties"
        return self._request("GET", path)

    def slide_associated(self, case_id: str, slide_id: str) -> list[str]:
        path = f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}/associated"
        return self._request("GET", path)

    # -- DICOM studies -----------------------------------------------------

    def import_dicom(
        self,
        case_id: str,
        path: str | os.PathLike[str],
        *,
        confirm_burned_in: Iterable[str] = (),
        mask_regions: dict[str, list[list[int]]] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a DICOM file, a folder of them or a ``.zip``, and import it.

        A folder is zipped on the fly (uncompressed, in a private temporary folder that is
        removed afterwards). Every instance is de-identified by the store; the report lists
        each as ``stored``, ``held`` (may carry burned-in text: pass its ``key`` in
        ``confirm_burned_in``, or regions to black out in ``mask_regions``, to
        :meth:`import_dicom_file` with the report's ``file_id``) or ``error``.
        """
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="cpms-dicom-") as tmp:
            if path.is_dir():
                bundle = Path(tmp) / "study.zip"
                with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as z:
                    for i, f in enumerate(sorted(p for p in path.rglob("*") if p.is_file())):
                        # member names carry no file names: those often name the patient
                        z.write(f, f"{i:06d}.dcm")
                stored = self.upload(
                    case_id, bundle, media_type="application/zip", progress=progress, resume=False
                )
            else:
                media = "application/zip" if path.suffix.lower() == ".zip" else "application/dicom"
                stored = self.upload(case_id, path, media_type=media, progress=progress)
        return self.import_dicom_file(
            case_id, stored.id, confirm_burned_in=confirm_burned_in, mask_regions=mask_regions
        )

    def import_dicom_file(
        self,
        case_id: str,
        file_id: str,
        *,
        confirm_burned_in: Iterable[str] = (),
        mask_regions: dict[str, list[list[int]]] | None = None,
    ) -> dict[str, Any]:
        """Import an already uploaded ``.dcm`` or ``.zip`` (see :meth:`import_dicom`)."""
        body: dict[str, Any] = {"file_id": file_id, "confirm_burned_in": list(confirm_burned_in)}
        if mask_regions:
            body["mask_regions"] = mask_regions
        # the store de-identifies every instance before it answers: minutes for a large study
        return self._request(
            "POST",
            f"/cases/{quote(case_id, safe='')}/dicom/imports",
            json=body,
            timeout=IMPORT_TIMEOUT,
        )

    def list_studies(self, case_id: str) -> list[dict[str, Any]]:
        """The case's DICOM studies, each with its series."""
        return self._request("GET", f"/cases/{quote(case_id, safe='')}/dicom/studies")

    def dicom_grant(self, case_id: str, series_uid: str) -> dict[str, Any]:
        """A short-lived grant for a browser viewer of one series: ``{grant, header,
        expires_at, ttl, meta_url, frame_url_template}``; sent in ``X-CPMS-Grant``."""
        path = f"/cases/{quote(case_id, safe='')}/dicom/series/{quote(series_uid, safe='')}/grant"
        return self._request("POST", path)
    # -- shared slide annotations -----------------------------------------

    def slide_annotations(self, case_id: str, slide_id: str) -> list[SlideAnnotation]:
        """The slide's annotations (every panel member's), oldest first."""
        path = f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}/annotations"
        return [SlideAnnotation.from_json(d) for d in self._request("GET", path)]

    def case_annotations(self, case_id: str) -> list[SlideAnnotation]:
        """Every annotation on every slide of the case, oldest first (for the discussion)."""
        path = f"/cases/{quote(case_id, safe='')}/annotations"
        return [SlideAnnotation.from_json(d) for d in self._request("GET", path)]

    def annotate_slide(
        self,
        case_id: str,
        slide_id: str,
        kind: str | ShapeKind,
        points: list[tuple[float, float]] | list[list[float]],
        comment: str,
    ) -> SlideAnnotation:
        """Add a point, rectangle (two corners) or polygon in level-0 pixels, with a comment.

        Checked here first (same rules as the store), so a bad shape fails before a request.
        """
        draft = AnnotationDraft.parse(
            getattr(kind, "value", kind), [list(p) for p in points], comment
        )
        path = f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}/annotations"
        body = {
            "kind": draft.kind.value,
            "points": [list(p) for p in draft.points],
            "comment": draft.comment,
        }
        return SlideAnnotation.from_json(self._request("POST", path, json=body))

    def delete_annotation(self, case_id: str, slide_id: str, annotation_id: str) -> None:
        """Delete one of your own annotations."""
        path = (
            f"/cases/{quote(case_id, safe='')}/slides/{quote(slide_id, safe='')}"
            f"/annotations/{quote(annotation_id, safe='')}"
        )
        self._request("DELETE", path)

    # -- exports -----------------------------------------------------------

    def export_fhir(self, case_id: str) -> dict[str, Any]:
        """The case as a FHIR R4 Bundle (JSON), for the case's own clinicians."""
        return self._request("GET", f"/cases/{quote(case_id, safe='')}/export/fhir")

    def export_phenopacket(self, case_id: str) -> dict[str, Any]:
        """The case as a GA4GH Phenopacket v2 (JSON)."""
        return self._request("GET", f"/cases/{quote(case_id, safe='')}/export/phenopacket")

    # -- anonymised analysis (computed in the store; see cpms_widgets.analysis) --

    def analysis_export(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An analysis answer as the raw response, its SHA-256 checked against the header."""
        resp = self._http.request(method, path, timeout=120, **kwargs)
        self._raise_for(resp)
        sent = resp.headers.get("x-cpms-sha256", "")
        if sent and hashlib.sha256(resp.content).hexdigest() != sent:
            raise StoreError(
                "the answer does not match its fingerprint", reasons=("X-CPMS-SHA256",)
            )
        return resp

    def similar_cases(self, hpo_terms: list[str], top: int = 10) -> dict[str, Any]:
        """Cases whose phenotypes resemble ``hpo_terms`` (the ones you may see)."""
        return self.analysis_export(
            "POST", "/analysis/similar", json={"hpo_terms": list(hpo_terms), "top": top}
        ).json()

    # -- vocabularies (search terms travel in bodies, never in URLs) --------

    def search_hpo(self, text: str, limit: int = 10) -> list[dict[str, Any]]:
        """HPO terms by label or synonym: ``[{"id", "label", "matched", "synonyms"}]``."""
        return self._request("POST", "/vocab/hpo/search", json={"q": text, "limit": limit})

    def hpo_term(self, hpo_id: str) -> dict[str, Any]:
        return self._request("GET", f"/vocab/hpo/{quote(hpo_id, safe=':')}")

    def search_orpha(self, text: str, limit: int = 10) -> list[dict[str, Any]]:
        return self._request("POST", "/vocab/orpha/search", json={"q": text, "limit": limit})

    def search_icd10(self, text: str, limit: int = 10) -> list[dict[str, Any]]:
        return self._request("POST", "/vocab/icd10/search", json={"q": text, "limit": limit})

    def check_hgvs(self, hgvs: str) -> dict[str, Any]:
        return self._request("POST", "/vocab/hgvs/check", json={"hgvs": hgvs})

    # -- helpdesk and audit ------------------------------------------------

    def list_accounts(self, status: str | None = None) -> list[Account]:
        params = {"status": status} if status else None
        return [_account(d) for d in self._request("GET", "/accounts", params=params)]

    def account_action(self, name: str, verb: str) -> Account:
        """``verb``: approve, reject, disable, enable or reset-mfa (helpdesk only)."""
        return _account(self._request("POST", f"/accounts/{quote(name, safe='')}/{verb}"))

    def audit(self, case_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if case_id:
            params["case_id"] = case_id
        return self._request("GET", "/audit", params=params)
