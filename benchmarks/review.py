"""Benchmark of the review apps (``cpms-review``) in Chromium, on a real deployment.

Run from the repository root::

    .venv/bin/python benchmarks/review.py

It starts a throw-away deployment (hub, proxy, ``cpms-store``, ``cpms-review``)
on the embedded default (SQLite, local processes) in a temporary folder and
builds, through the store API as the people concerned would:

* a *heavy* case: a panel of 50 experts who all accepted and wrote their
  opinion (50 contributions) and 500 discussion messages (every fourth a
  reply, some with a mention);
* a *light* case (the baseline): a panel of two who accepted, nothing written.

The panel lead logs in once through the hub's login page (password + TOTP);
every page below is a new browser context with that login's cookies, so each
load is a new Panel session that reads everything from the store as the lead.

Measured (Debian's Chromium through Playwright, in this process):

* ``workspace_tti_ms`` — the review workspace of the heavy case: from
  navigation to the case's title and tabs shown and the page answering input
  (median of several loads); the same for the light case is the baseline
  (``tti_vs_light``); and the time from clicking "Discussion" to the last of
  the 500 messages on screen;
* ``page_p50_ms_20`` / ``page_p99_ms_20`` — 20 Panel sessions (20 tabs of one
  browser profile with a warm cache) loading the light case's workspace at
  the same time (several rounds), against one session alone
  (``page_p50_ms_1``): the service is one Panel process, and the 20 pages
  render in one Chromium on the same 2 cores.

The last line printed is::

    RESULT workspace_tti_ms=<float> page_p99_ms_20=<float> tti_vs_light=<float> ...

This machine has 2 cores shared by Chromium, the load generator, the hub,
the proxy, the store and the Panel process: absolute times are upper bounds;
the ratios are the robust figures.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cpms_widgets import CaseStoreClient  # noqa: E402
from tests.deployment import Deployment  # noqa: E402
from tests.jupyterlab import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.review_cases import submitted_case  # noqa: E402

EXPERTS = 50
PANEL_MAX = 30
MESSAGES = 500
TTI_RUNS = 5
SESSIONS = 20
ROUNDS = 3
HEAVY_TITLE = "Benchmark heavy case"
LIGHT_TITLE = "Benchmark light case"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _build(dep: Deployment) -> tuple[str, str, dict[str, CaseStoreClient]]:
    names = [f"bm-m{i:02d}" for i in range(EXPERTS)]
    with ThreadPoolExecutor(4) as pool:
        toks = dict(zip(names, pool.map(dep.token, names), strict=True))
    clients = {n: CaseStoreClient(dep.direct_api, t) for n, t in toks.items()}
    owner = CaseStoreClient(dep.direct_api, dep.token("bm-owner"))
    coord = CaseStoreClient(dep.direct_api, dep.token("bm-coord"))
    deadline = date.today() + timedelta(days=30)

    heavy = submitted_case(owner, HEAVY_TITLE).id
    light = submitted_case(owner, LIGHT_TITLE).id
    # the store takes at most PANEL_MAX people per panel: 50 opinions come from two
    # rounds of members (the panel changed while it discusses), as a long review would
    first = names[:PANEL_MAX]
    second = [names[0], *names[PANEL_MAX:], *names[1 : PANEL_MAX - (EXPERTS - PANEL_MAX)]]
    coord.assemble_panel(light, [(names[0], "lead"), (names[1], "member")], deadline=deadline)

    def member_work(name: str) -> None:
        c = clients[name]
        if c.get_panel(heavy).member(name).status.value == "invited":
            c.accept_invitation(heavy)
        c.contribute(heavy, f"Opinion of {name}: " + "consistent with the diagnosis. " * 8)

    for members in (first, second):
        coord.assemble_panel(
            heavy,
            [(n, "lead" if n == names[0] else "member") for n in members],
            deadline=deadline,
        )
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(member_work, members))
    for n in names[:2]:
        clients[n].accept_invitation(light)
    active = second
    print(f"contributions on the heavy case: {len(clients[names[0]].contributions(heavy))}")

    def post(k: int, parent: str | None = None) -> str:
        author = clients[active[k % len(active)]]
        mention = [active[(k + 1) % len(active)]] if k % 10 == 0 else []
        text = f"Message {k}: " + "what about the EEG findings? " * 3
        return author.post_message(heavy, text, parent_id=parent, mentions=mention).id

    # every fourth message is a reply to the one before it
    with ThreadPoolExecutor(4) as pool:
        tops = [k for k in range(MESSAGES) if k % 4 != 3]
        ids = dict(zip(tops, pool.map(post, tops), strict=True))
        replies = [k for k in range(MESSAGES) if k % 4 == 3]
        list(pool.map(lambda k: post(k, ids[k - 1]), replies))
    owner.close()
    coord.close()
    return heavy, light, clients


async def _login(browser, dep: Deployment, name: str) -> dict:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    acc = dep.accounts[name]
    await page.goto(dep.review_url)
    await page.wait_for_url("**/hub/login**")
    await page.fill("#username_input", acc.name)
    await page.fill("#password_input", acc.password)
    await page.fill("#otp_input", acc.code())
    await page.click("#login_submit")
    await page.wait_for_url("**/services/cpms-review/")
    await page.get_by_text(f"signed in as {name}").wait_for()
    state = await ctx.storage_state()
    await ctx.close()
    return state


async def _load(browser, state: dict, url: str, title: str, *, discussion: bool = False, ctx=None):
    """(ms to interactive, ms to show the whole discussion or None).

    Without ``ctx`` a new browser context (cold cache, the login's cookies); with one,
    a new tab in it (its cache is warm after the first load, as for a returning user).
    """
    own = ctx is None
    if own:
        ctx = await browser.new_context(
            storage_state=state, viewport={"width": 1300, "height": 900}
        )
        ctx.set_default_timeout(120_000)
    page = await ctx.new_page()
    try:
        t0 = time.perf_counter()
        await page.goto(url)
        await page.get_by_text(title).first.wait_for()
        await page.get_by_text("Outcome", exact=True).first.wait_for()
        # interactive: a round trip through the page's event loop is answered
        await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(1)))")
        tti = (time.perf_counter() - t0) * 1000
        disc = None
        if discussion:
            t1 = time.perf_counter()
            await page.get_by_text("Discussion", exact=True).first.click()
            # (the reply selector lists messages too: look in the discussion's text)
            await page.locator("p", has_text=f"Message {MESSAGES - 1}:").first.wait_for()
            disc = (time.perf_counter() - t1) * 1000
        return tti, disc
    finally:
        if own:
            await ctx.close()
        else:
            await page.close()


async def _measure(dep: Deployment, heavy: str, light: str) -> dict[str, float]:
    from playwright.async_api import async_playwright

    out: dict[str, float] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            state = await _login(browser, dep, "bm-m00")
            heavy_url = f"{dep.review_url}?case={heavy}"
            light_url = f"{dep.review_url}?case={light}"
            # warm-up: Python imports, first bundle delivery
            await _load(browser, state, light_url, LIGHT_TITLE)
            heavy_t, light_t, disc_t = [], [], []
            for _ in range(TTI_RUNS):
                t, d = await _load(browser, state, heavy_url, HEAVY_TITLE, discussion=True)
                heavy_t.append(t)
                disc_t.append(d)
                light_t.append((await _load(browser, state, light_url, LIGHT_TITLE))[0])
            out["workspace_tti_ms"] = statistics.median(heavy_t)
            out["light_tti_ms"] = statistics.median(light_t)
            out["discussion_500_ms"] = statistics.median(disc_t)
            print(f"heavy workspace loads (ms): {[round(x) for x in heavy_t]}")
            print(f"light workspace loads (ms): {[round(x) for x in light_t]}")
            print(f"500 messages shown after the click (ms): {[round(x) for x in disc_t]}")

            # 20 sessions: tabs of one browser profile whose cache is warm (Bokeh and
            # Panel's scripts are not fetched again), each tab its own Panel session
            warm = await browser.new_context(
                storage_state=state, viewport={"width": 1300, "height": 900}
            )
            warm.set_default_timeout(180_000)
            await _load(browser, state, light_url, LIGHT_TITLE, ctx=warm)
            alone = [
                (await _load(browser, state, light_url, LIGHT_TITLE, ctx=warm))[0] for _ in range(5)
            ]
            out["page_p50_ms_1"] = statistics.median(alone)
            loads: list[float] = []
            for r in range(ROUNDS):
                got = await asyncio.gather(
                    *(
                        _load(browser, state, light_url, LIGHT_TITLE, ctx=warm)
                        for _ in range(SESSIONS)
                    )
                )
                loads += [t for t, _ in got]
                print(
                    f"round {r + 1}: {SESSIONS} sessions, page loads (ms) "
                    f"{sorted(round(t) for t, _ in got)}"
                )
            await warm.close()
            out["page_p50_ms_20"] = _pct(loads, 0.50)
            out["page_p99_ms_20"] = _pct(loads, 0.99)
        finally:
            await browser.close()
    return out


def main() -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="cpms-bench-review-"))
    dep = Deployment(root)
    try:
        dep.init()
        dep.add_account("bm-owner", ("clinician",), hospital="Hospital A")
        dep.add_account("bm-coord", ("coordinator",), hospital="Hospital D")
        for i in range(EXPERTS):
            dep.add_account(f"bm-m{i:02d}", ("panel-member",), hospital=f"Hospital {i}")
        dep.start()
        print(f"deployment up in {time.monotonic() - started:.1f} s")
        t = time.monotonic()
        heavy, light, clients = _build(dep)
        print(
            f"built: {EXPERTS} contributions and {MESSAGES} messages in "
            f"{time.monotonic() - t:.1f} s"
        )
        res = asyncio.run(_measure(dep, heavy, light))
        for c in clients.values():
            c.close()
    finally:
        dep.stop()
        shutil.rmtree(root, ignore_errors=True)
    tti_ratio = res["workspace_tti_ms"] / res["light_tti_ms"]
    conc_ratio = res["page_p50_ms_20"] / res["page_p50_ms_1"]
    print()
    print(f"workspace, 50 contributions + 500 messages: {res['workspace_tti_ms']:.0f} ms")
    print(f"workspace, empty case (baseline):           {res['light_tti_ms']:.0f} ms")
    print(f"  ratio heavy / light = {tti_ratio:.2f}")
    print(f"Discussion tab, 500 messages on screen:     {res['discussion_500_ms']:.0f} ms")
    print(f"one session alone, page p50:                {res['page_p50_ms_1']:.0f} ms")
    print(
        f"{SESSIONS} sessions at once, page p50 / p99:     "
        f"{res['page_p50_ms_20']:.0f} / {res['page_p99_ms_20']:.0f} ms "
        f"(p50 ratio to alone {conc_ratio:.2f})"
    )
    print(f"total run time {time.monotonic() - started:.1f} s")
    print(
        f"RESULT workspace_tti_ms={res['workspace_tti_ms']:.1f} "
        f"page_p99_ms_20={res['page_p99_ms_20']:.1f} "
        f"tti_vs_light={tti_ratio:.3f} discussion_500_ms={res['discussion_500_ms']:.1f} "
        f"page_p50_ms_1={res['page_p50_ms_1']:.1f} page_p50_ms_20={res['page_p50_ms_20']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
