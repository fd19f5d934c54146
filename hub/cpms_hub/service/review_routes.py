"""HTTP routes of panel review: panels, invitations, discussion, meetings, outcome, inbox.

All paths are below the API root (``/services/cpms-store/api/v1``); bodies and answers
are JSON unless said otherwise; errors have the one shape ``{status, error, reasons}``.
Each route is decided by :func:`cpms_hub.policy.decide` and carried out by
:class:`cpms_hub.store.review.ReviewStore`, which checks the lifecycle
(:data:`cpms_hub.domain.review.TRANSITIONS`: an illegal step is 409 with the reason) and
audits every read and write of patient data in the same transaction.

Coordination (coordinators of the case's network; ``custom:cpms:panels``)

* ``GET /panels?scope=mine|network`` - ``mine``: panels the caller is on or owns;
  ``network``: every case submitted to the coordinator's network, with or without a
  panel. ``[PanelSummary]``: ``{case_id, network, status, urgency, deadline, lead,
  members: int, accepted: int, contributions: int, overdue: bool, submitted_at,
  closed_at}`` (no clinical content).
* ``GET /experts?q=&network=`` - people who may sit on panels (panel members; guests
  from other networks included when ``network`` is empty), matched case-insensitively
  on expertise, name or hospital: ``[{name, full_name, hospital, network, expertise:
  [str], timezone}]``.
* ``PUT /cases/{case_id}/panel`` ``{members: [{user, role: lead|member|guest}],
  urgency: routine|urgent|emergency, deadline: "YYYY-MM-DD", invitation_days: int = 7}``
  assembles (or changes) the panel: exactly one lead; every member becomes a
  ``panel-member`` of the case and gets an invitation (in-app + e-mail). Answers a
  ``Panel``: ``{case_id, network, status, urgency, deadline, assembled_by, assembled_at,
  lead, allowed_actions: [str], members: [{user, role, status:
  invited|accepted|declined|expired, network, invited_at, expires_at, responded_at,
  reason}]}`` (``reason`` only for coordinators).
* ``GET /cases/{case_id}/panel`` - the ``Panel`` (panel members, the case's clinicians,
  the network's coordinators).
* ``POST /cases/{case_id}/panel/{action}`` with ``action`` one of ``start-discussion``
  (coordinator or lead), ``close``, ``reopen`` (coordinator) - the ``Panel``; 409 with
  the reason when the lifecycle forbids it.
* ``GET /reports/monitor`` - ``{open: [PanelSummary], overdue: [...], few_contributions:
  [...]}`` for the coordinator's network (``few_contributions``: open panels that would
  close with fewer than two contributions).
* ``GET /reports/activity`` - aggregates only: ``{cases_per_month: [{month, network,
  cases}], time_to_closure: [{case_id, network, days}], contributions_per_panel:
  [{case_id, network, contributions}], by_network: [{network, submitted, open, closed}]}``.

Panel members

* ``GET /invitations`` - the caller's inbox: ``[{case_id, network, role, status, urgency,
  deadline, invited_by, invited_at, expires_at}]``.
* ``POST /cases/{case_id}/invitation/{answer}`` ``{reason}`` with ``answer`` ``accept`` or
  ``decline`` (a reason is required to decline); an expired invitation is 409.
* ``GET /cases/{case_id}/contributions`` - ``[{id, case_id, author, body, created_at,
  updated_at}]``; ``GET .../contributions/mine`` (404 when none yet);
  ``PUT .../contributions/mine`` ``{body}`` writes the caller's own (not empty; frozen once
  the outcome is drafted).
* ``GET /cases/{case_id}/messages`` - ``[{id, case_id, author, body, created_at,
  parent_id, mentions: [user]}]``; ``POST`` ``{body, parent_id, mentions}`` (mentions must
  be on the panel; each is notified).
* ``GET /cases/{case_id}/information-requests`` - ``[{id, case_id, asked_by, question,
  asked_at, answer, answered_by, answered_at}]`` (panel, clinicians, coordinator);
  ``POST`` ``{question}`` (panel members); ``POST .../{request_id}/answer`` ``{answer}``
  (the case's owner or assistants, from the notebook or the app).
* ``GET /cases/{case_id}/meetings`` - ``[{id, case_id, title, starts_at,
  duration_minutes, scheduled_by, participants: [{user, timezone, local_start}],
  attended: [user], minutes, recorded_at}]``; ``POST`` ``{title, starts_at (ISO 8601 with
  offset, in the future), duration_minutes}``; ``GET .../{meeting_id}/ics`` is
  ``text/calendar`` (RFC 5545); ``PUT .../{meeting_id}/record`` ``{attended: [user],
  minutes}``.

Outcome

* ``PUT /cases/{case_id}/outcome`` (panel lead) ``{diagnosis_code: "ORPHA:n",
  diagnosis_label, investigations: [str], treatment_plan, follow_up: "YYYY-MM-DD",
  summary}`` drafts or redrafts it (a redraft voids the signatures given).
* ``GET /cases/{case_id}/outcome`` - ``{case_id, version, drafted_by, drafted_at,
  diagnosis_code, diagnosis_label, investigations, treatment_plan, follow_up, summary,
  signed: bool, sha256 (of the canonical form), endorsements: [{signer, decision:
  endorse|dissent, reason, signed_at, signature, public_key}] (base64), pending: [user]}``
  (panel, the case's clinicians, the network's coordinators).
* ``GET /cases/{case_id}/outcome/pdf`` - the report as ``application/pdf`` (deterministic).
* ``POST /cases/{case_id}/outcome/endorsements`` ``{decision: endorse|dissent, reason,
  totp}`` signs with the member's Ed25519 key; ``totp`` is the member's current
  authenticator code (step-up: a stolen token alone cannot sign). A second signature by
  the same member is 409; when every active member has signed the case becomes
  ``outcome-signed`` and the owner is notified.

Everyone

* ``GET /notifications?unread=true`` - ``[{id, user, kind, case_id, link, created_at,
  read_at}]``; ``POST /notifications/{notification_id}/read``.
* ``PUT /accounts/{name}/expertise`` ``{expertise: [str], timezone}`` (helpdesk).
"""

from __future__ import annotations

__all__ = ["REVIEW_ROUTES_DOC"]

#: the routes this module adds (method, path below the API root), for ``ROUTES_DOC``
REVIEW_ROUTES_DOC: tuple[tuple[str, str], ...] = (
    ("GET", "/panels"),
    ("GET", "/experts"),
    ("PUT", "/cases/{case_id}/panel"),
    ("GET", "/cases/{case_id}/panel"),
    ("POST", "/cases/{case_id}/panel/{action}"),
    ("GET", "/invitations"),
    ("POST", "/cases/{case_id}/invitation/{answer}"),
    ("GET", "/cases/{case_id}/contributions"),
    ("GET", "/cases/{case_id}/contributions/mine"),
    ("PUT", "/cases/{case_id}/contributions/mine"),
    ("GET", "/cases/{case_id}/messages"),
    ("POST", "/cases/{case_id}/messages"),
    ("GET", "/cases/{case_id}/information-requests"),
    ("POST", "/cases/{case_id}/information-requests"),
    ("POST", "/cases/{case_id}/information-requests/{request_id}/answer"),
    ("GET", "/cases/{case_id}/meetings"),
    ("POST", "/cases/{case_id}/meetings"),
    ("GET", "/cases/{case_id}/meetings/{meeting_id}/ics"),
    ("PUT", "/cases/{case_id}/meetings/{meeting_id}/record"),
    ("PUT", "/cases/{case_id}/outcome"),
    ("GET", "/cases/{case_id}/outcome"),
    ("GET", "/cases/{case_id}/outcome/pdf"),
    ("POST", "/cases/{case_id}/outcome/endorsements"),
    ("GET", "/notifications"),
    ("POST", "/notifications/{notification_id}/read"),
    ("GET", "/reports/monitor"),
    ("GET", "/reports/activity"),
    ("PUT", "/accounts/{name}/expertise"),
)
