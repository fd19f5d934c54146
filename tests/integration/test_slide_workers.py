"""Slide tiles with two store worker processes (``CPMS_STORE_WORKERS=2``), for real.

A viewer's connections land on either worker. A grant issued by one worker must open
tiles on the other (the grant key is derived from the keyring every worker loads), and
the grant's first use must be audited once in all, not once per worker.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.deployment import Deployment, two_worker_deployment
from tests.integration.test_slides_http import SAMPLE

pytestmark = pytest.mark.deployment
GRANT = "X-CPMS-Grant"


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Deployment]:
    if not SAMPLE.exists():
        pytest.skip(f"sample slide not found at {SAMPLE}")
    accounts = {"clin-w": ("clinician",), "audit-w": ("auditor",)}
    with two_worker_deployment("cpms-slide-workers-", accounts) as dep:
        yield dep


def test_grant_works_on_both_workers_and_is_audited_once(two_workers: Deployment) -> None:
    dep = two_workers
    auth = {"Authorization": f"token {dep.token('clin-w')}"}
    with httpx.Client(base_url=dep.direct_api, headers=auth, trust_env=False, timeout=60) as c:
        case_id = c.post("/cases", json={"title": "slides", "clinical_summary": "biopsy"})
        case_id = case_id.json()["id"]
        up = c.post(
            f"/cases/{case_id}/files",
            content=SAMPLE.read_bytes(),
            headers={"X-CPMS-Filename": "slide.svs", "Content-Type": "image/tiff"},
        )
        assert up.status_code == 201, up.text
        slide = c.post(f"/cases/{case_id}/slides", json={"file_id": up.json()["id"]})
        assert slide.status_code == 201, slide.text
        slide_id = slide.json()["id"]
        grant = c.post(f"/cases/{case_id}/slides/{slide_id}/grant").json()
    tiles = f"{dep.direct_api}/cases/{case_id}/slides/{slide_id}/tiles/12/"
    port = int(dep.env["CPMS_STORE_PORT"])
    workers = {p.pid: p for p in dep.store_processes()[1:]}
    assert len(workers) >= 2
    clients: list[httpx.Client] = []
    serving: set[int] = set()
    try:
        # keep-alive connections, opened until both workers hold one (the supervisor's
        # socket is shared: which process accepts a connection is the kernel's choice)
        while len(serving) < 2 and len(clients) < 64:
            c = httpx.Client(trust_env=False, timeout=60, headers={GRANT: grant["grant"]})
            clients.append(c)
            n = len(clients)
            r = c.get(f"{tiles}{n % 10}_{n % 13}.jpeg")
            assert r.status_code == 200, r.text
            mine = r.extensions["network_stream"].get_extra_info("client_addr")[1]
            for pid, proc in workers.items():
                conns = proc.net_connections(kind="tcp")
                if any(k.laddr.port == port and k.raddr and k.raddr.port == mine for k in conns):
                    serving.add(pid)
        assert len(serving) == 2, "the kernel gave every connection to one worker"
        for c in clients:  # every connection, on either worker, again and again
            for col in range(3):
                assert c.get(f"{tiles}{col}_1.jpeg").status_code == 200
    finally:
        for c in clients:
            c.close()
    audit = httpx.get(
        f"{dep.direct_api}/audit",
        params={"case_id": case_id, "limit": 10000},
        headers={"Authorization": f"token {dep.token('audit-w')}"},
        trust_env=False,
        timeout=60,
    )
    assert audit.status_code == 200, audit.text
    views = [e for e in audit.json() if e["action"] == "slide.view"]
    assert len(views) == 1, views
    assert grant["grant"] not in views[0]["detail"]
