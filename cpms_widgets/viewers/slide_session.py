"""What a slide viewer's Python half does, whichever host shows it (JupyterLab or Panel).

The browser half (``js/slide_viewer.js``) fetches tiles itself, over HTTP, with a
short-lived image grant. Everything done *in the user's name* goes through the Python half
instead, with the user's own :class:`~cpms_widgets.client.CaseStoreClient`:

* **Annotation writes.** The front end sets the ``annotation_request`` trait to
  ``{"op": "add" | "delete" | "refresh" | "renew", ..., "nonce"}``; the host hands it to
  :meth:`SlideSession.handle`, which calls the store and answers with the new
  ``annotations`` list and an ``annotation_status`` ``{nonce, ok, message}``.

  Why not let the browser post annotations with the grant? A grant is a capability to
  *look at* one slide for five minutes; widening it to carry a user and an ``annotate``
  right would make a bearer credential that writes case content in someone's name, sits
  in browser memory and can be replayed until it expires. Routing writes through the
  kernel or Panel app keeps every write on the same authentication, policy decision and
  audit as any other call of that user, and needs nothing more of the host than synced
  traits, which work both in anywidget and in Panel's ``AnyWidgetComponent`` (which has
  no ``model.send`` and no binary buffers). Writes are rare, so the extra hop costs
  nothing noticeable; tiles, which are many, still go straight to the store.
* **Refreshing.** The front end asks for ``refresh`` every ``poll_seconds`` while the page
  is visible (and on its refresh button), so one reviewer sees another's annotations
  within seconds. Each refresh is a read of case content and is audited by the store as
  ``annotation.list``; the default period (10 s) keeps that to a few hundred entries per
  hour of review.
* **Grants.** ``renew`` takes a new grant (the front end asks a minute before expiry), so
  the same code renews in Panel, where there is no kernel timer.

A failed request never raises into the host: it comes back as ``ok: False`` with the
store's reasons (which name fields and rules, never patient data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from cpms_hub.domain import CpmsError, SlideAnnotation

from ..client import CaseStoreClient

__all__ = ["DEFAULT_POLL_SECONDS", "SlideSession", "browser_url"]

#: how often an open viewer fetches the other reviewers' annotations
DEFAULT_POLL_SECONDS = 10.0
_API_MARK = "/cases/"


def browser_url(store_prefix: str, path: str) -> str:
    """``path`` (a store path, e.g. ``/services/cpms-store/api/v1/cases/…/dzi``) below
    ``store_prefix``, the store's API root as the browser reaches it."""
    at = path.find(_API_MARK)
    rel = path[at:] if at >= 0 else "/" + path.lstrip("/")
    return store_prefix.rstrip("/") + rel


def _as_json(annotations: list[SlideAnnotation]) -> list[dict[str, Any]]:
    return [a.to_json() for a in annotations]


@dataclass
class SlideSession:
    """One user's view of one slide: grants, annotations, requests from the front end."""

    client: CaseStoreClient
    case_id: str
    slide_id: str
    store_prefix: str = "/services/cpms-store/api/v1"

    def grant_values(self) -> dict[str, str]:
        """A fresh grant, as the traits the front end reads (``dzi_url`` … ``expires_at``)."""
        g = self.client.slide_grant(self.case_id, self.slide_id)
        return {
            "dzi_url": browser_url(self.store_prefix, g["dzi_url"]),
            "tile_base": browser_url(self.store_prefix, g["tiles_url"]).rstrip("/"),
            "grant": g["grant"],
            "expires_at": g["expires_at"],
        }

    def user_values(self) -> dict[str, Any]:
        """Who is looking, and whether they may annotate (the store decides on each write;
        this only hides the drawing tools from those who would be refused)."""
        me = self.client.me()
        roles = set(me.get("roles", ()))
        case = self.client.get_case(self.case_id)
        member = next((m.role.value for m in case.members if m.user == me["name"]), None)
        can = member in ("owner", "assistant", "panel-member") and bool(
            roles & {"clinician", "panel-member"}
        )
        return {"user": me["name"], "can_annotate": can}

    def annotations(self) -> list[dict[str, Any]]:
        return _as_json(self.client.slide_annotations(self.case_id, self.slide_id))

    def handle(
        self, request: dict[str, Any], *, on_grant: Callable[[dict[str, str]], None] | None = None
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
        """Carry out one front-end request: ``(new annotations or None, status)``."""
        nonce = str(request.get("nonce", ""))
        op = request.get("op")
        try:
            if op == "add":
                made = self.client.annotate_slide(
                    self.case_id,
                    self.slide_id,
                    str(request.get("kind", "")),
                    request.get("points") or [],
                    str(request.get("comment", "")),
                )
                message = f"saved {made.kind.value}"
            elif op == "delete":
                self.client.delete_annotation(self.case_id, self.slide_id, str(request["id"]))
                message = "deleted"
            elif op == "refresh":
                message = "refreshed"
            elif op == "renew":
                values = self.grant_values()
                if on_grant is not None:
                    on_grant(values)
                return None, {"nonce": nonce, "ok": True, "message": "renewed"}
            else:
                return None, {"nonce": nonce, "ok": False, "message": f"unknown request {op!r}"}
            return self.annotations(), {"nonce": nonce, "ok": True, "message": message}
        except CpmsError as exc:
            reasons = "; ".join(getattr(exc, "reasons", ()) or (str(exc),))
            return None, {"nonce": nonce, "ok": False, "message": reasons}
        except httpx.HTTPError as exc:
            # the store is restarting or unreachable: say so, keep the viewer alive
            message = f"the store could not be reached ({type(exc).__name__}); try again"
            return None, {"nonce": nonce, "ok": False, "message": message}
        except (KeyError, TypeError, ValueError) as exc:
            return None, {"nonce": nonce, "ok": False, "message": f"bad request: {exc}"}
