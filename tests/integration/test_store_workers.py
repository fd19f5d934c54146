"""The store service with two worker processes (``CPMS_STORE_WORKERS=2``), for real.

A deployment of its own (hub, proxy, the store under uvicorn's supervisor) on SQLite:
concurrent reads and writes spread over both workers must leave one unbroken audit
chain with an entry for every request; disabling an account through one worker must
cut its token on every worker at the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.deployment import Deployment, two_worker_deployment


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Deployment]:
    accounts = {"clin-w": ("clinician",), "help-w": ("helpdesk",)}
    with two_worker_deployment("cpms-workers-", accounts) as dep:
        yield dep


def test_two_workers_serve_one_audit_chain(two_workers: Deployment) -> None:
    dep = two_workers
    processes = dep.store_processes()
    assert processes, dep.log_text()[-2000:]
    workers = processes[1:]  # the supervisor's children
    assert len(workers) >= 2, [p.cmdline() for p in processes]

    token = dep.token("clin-w")
    auth = {"Authorization": f"token {token}"}

    async def run() -> tuple[list[int], list[int]]:
        async def client(k: int) -> tuple[list[int], list[int]]:
            created, read = [], []
            async with httpx.AsyncClient(
                base_url=dep.direct_api, headers=auth, trust_env=False, timeout=60
            ) as c:
                for j in range(6):
                    r = await c.post(
                        "/cases", json={"title": f"w{k}-{j}", "clinical_summary": "summary"}
                    )
                    created.append(r.status_code)
                    case_id = r.json()["id"]
                    for _ in range(3):
                        read.append((await c.get(f"/cases/{case_id}")).status_code)
            return created, read

        results = await asyncio.gather(*(client(k) for k in range(12)))
        return [s for c, _ in results for s in c], [s for _, r in results for s in r]

    created, read = asyncio.run(run())
    assert set(created) == {201} and len(created) == 72
    assert set(read) == {200} and len(read) == 216

    state = dep.open_state()
    try:
        report = state.verify_audit()
        assert report.ok, report.problems[:5]
        with state.sessions() as s:
            entries = state.audit.entries(s, limit=100_000)
        mine = [e for e in entries if e.actor == "clin-w"]
        assert sum(e.action == "case.create" for e in mine) == 72
        assert sum(e.action == "case.read" for e in mine) == 216
    finally:
        state.close()


def test_disable_cuts_the_token_on_every_worker(two_workers: Deployment) -> None:
    dep = two_workers
    dep.add_account("clin-gone", ("clinician",))
    token = dep.token("clin-gone")
    helpdesk = dep.token("help-w")

    def me_from_many_connections() -> set[int]:
        statuses = set()
        for _ in range(8):  # fresh connections: the supervisor spreads them over the workers
            with httpx.Client(base_url=dep.direct_api, trust_env=False, timeout=30) as c:
                statuses.add(c.get("/me", headers={"Authorization": f"token {token}"}).status_code)
        return statuses

    assert me_from_many_connections() == {200}
    r = httpx.post(
        f"{dep.direct_api}/accounts/clin-gone/disable",
        headers={"Authorization": f"token {helpdesk}"},
        trust_env=False,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert me_from_many_connections() == {401}
