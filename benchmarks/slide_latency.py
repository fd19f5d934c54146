"""Where the time of a stored tile over HTTP goes: concurrency, the proxy, the load generator.

Run from the repository root::

    .venv/bin/python benchmarks/slide_latency.py [--width 20000 --height 15000 --n 1500]

A real deployment (``tests/deployment.py``) serves a generated Aperio-style slide (made and
imported as in ``benchmarks/slides.py``). Stored-level tiles (encrypted passthrough) and,
as the baseline, the store's ``/health`` route (no work at all) are fetched with 1, 2, 4
and 8 concurrent closed-loop clients (each sends its next request when the previous one
is answered), once **through the proxy** (as browsers do) and once **straight to the
store** (as user servers do). For every run it reports p50 / p99 latency, throughput, and
the CPU time spent per request by each process involved: the load generator (this
process), configurable-http-proxy and the store service, read from the kernel's
accounting (psutil), so the time is attributed rather than guessed.

With ``c`` closed-loop clients and a throughput of ``X`` requests/s, the mean latency is
``c / X`` (Little's law): once the two cores are saturated, adding clients adds queueing
latency and nothing else. The per-request CPU figures show what saturates them.

With ``--workers 1,2`` (the default) it does all that twice, the second time with the
store in two worker processes (``CPMS_STORE_WORKERS=2``: both cores for the store's
Python code), and ends with the tile p99 through the proxy per client count for each; the
RESULT line is of the first (one worker, the default deployment). CPU time of the store
is that of all its processes.

The last line printed is::

    RESULT tile_p99_ms_c1_proxy=<ms> tile_p99_ms_c8_proxy=<ms> tile_p99_ms_c8_direct=<ms> \
health_p99_ms_c8_proxy=<ms> tile_vs_health_c8_proxy=<x> cpu_ms_client=<ms> \
cpu_ms_proxy=<ms> cpu_ms_store=<ms>

``tile_vs_health`` is tile throughput over ``/health`` throughput in the same run (1.0:
a tile costs no more than the emptiest route); the ``cpu_ms_*`` figures are per stored
tile through the proxy at 8 clients.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.slides import _http_run, _ms, make_slide, serve_slide  # noqa: E402
from tests.deployment import Deployment  # noqa: E402

CLIENTS = (1, 2, 4, 8)


def _processes(dep: Deployment) -> dict[str, list[psutil.Process]]:
    """The proxy and the store service (with its worker processes, if any)."""
    found = {"proxy": dep.proxy_processes(), "store": dep.store_processes()}
    missing = {name for name, procs in found.items() if not procs}
    if missing:
        raise RuntimeError(f"could not find {missing} among the hub's processes")
    return found


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        t = proc.cpu_times()
        total += t.user + t.system
    return total


def _run(urls, headers, clients, procs) -> dict:  # noqa: ANN001
    before = {k: _cpu(p) for k, p in procs.items()}
    me = time.process_time()
    times, wall = _http_run(urls, headers, clients)
    n = len(times)
    cpu = {k: (_cpu(p) - before[k]) * 1000 / n for k, p in procs.items()}
    cpu["client"] = (time.process_time() - me) * 1000 / n
    return {
        "p50": _ms(times, 50),
        "p99": _ms(times, 99),
        "rps": n / wall,
        "cpu": cpu,
        "busy": sum(cpu.values()) * n / 1000 / wall,  # cores kept busy on average
    }


def measure(plain: Path, root: Path, args: argparse.Namespace, workers: int) -> dict:
    """The table for one deployment whose store runs ``workers`` processes."""
    rng = random.Random(7)
    env = {"CPMS_STORE_WORKERS": str(workers)}
    with Deployment(root, extra_env=env) as dep:
        dep.init()
        dep.start()
        grant, headers, props = serve_slide(dep, plain)
        top, size = props["deepzoom_levels"] - 1, props["tile_size"]
        cols, rows = -(-props["width"] // size), -(-props["height"] // size)
        direct_root = f"http://127.0.0.1:{dep.env['CPMS_STORE_PORT']}"
        roots = {"proxy": dep.url, "direct": direct_root}
        procs = _processes(dep)

        def tiles(root: str, n: int) -> list[str]:
            picks = rng.sample(range(cols * rows), min(n, cols * rows))
            base = root + grant["tiles_url"]
            return [f"{base}{top}/{i % cols}_{i // cols}.jpeg" for i in picks]

        # warm-up: connections, the open-slide cache, the grant's first-use audit (in
        # every worker process: 64 connections are spread over them)
        for root in roots.values():
            _http_run(tiles(root, 64 * workers), headers, 8 * workers)
            _http_run([root + "/services/cpms-store/api/v1/health"] * 64, {}, 8)
        results: dict[tuple[str, str, int], dict] = {}
        print(
            f"store worker processes: {workers}\n"
            f"{'route':<7}{'path':<8}{'clients':>8}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}"
            f"{'cores':>7}  CPU ms per request: client / proxy / store"
        )
        for where, root in roots.items():
            for clients in CLIENTS:
                for route in ("health", "tile"):
                    if route == "health":
                        urls = [root + "/services/cpms-store/api/v1/health"] * args.n
                        r = _run(urls, {}, clients, procs)
                    else:
                        r = _run(tiles(root, args.n), headers, clients, procs)
                    results[(route, where, clients)] = r
                    c = r["cpu"]
                    print(
                        f"{route:<7}{where:<8}{clients:>8}{r['p50']:>9.2f}{r['p99']:>9.2f}"
                        f"{r['rps']:>8.0f}{r['busy']:>7.2f}  {c['client']:.3f} / "
                        f"{c['proxy']:.3f} / {c['store']:.3f}",
                        flush=True,
                    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=20_000)
    parser.add_argument("--height", type=int, default=15_000)
    parser.add_argument("--n", type=int, default=1500, help="requests per run")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="store worker process counts to measure (CPMS_STORE_WORKERS), e.g. 1 or 1,2; "
        "the RESULT line is of the first",
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    print(f"{psutil.cpu_count()} CPUs; load average now {psutil.getloadavg()[0]:.1f}")
    tables = {}
    with tempfile.TemporaryDirectory(prefix="cpms-latency-") as tmp:
        plain = Path(tmp) / "slide.svs"
        make_slide(plain, args.width, args.height)
        for workers in counts:
            tables[workers] = measure(plain, Path(tmp) / f"deployment-{workers}", args, workers)
    if len(counts) > 1:
        print("tile p99 ms through the proxy by clients (rows: store worker processes)")
        print(f"{'workers':<8}" + "".join(f"{c:>8}" for c in CLIENTS) + f"{'req/s@8':>9}")
        for workers, t in tables.items():
            row = "".join(f"{t[('tile', 'proxy', c)]['p99']:>8.2f}" for c in CLIENTS)
            print(f"{workers:<8}{row}{t[('tile', 'proxy', 8)]['rps']:>9.0f}")
    results = tables[counts[0]]
    t8 = results[("tile", "proxy", 8)]
    h8 = results[("health", "proxy", 8)]
    print(
        "RESULT "
        f"tile_p99_ms_c1_proxy={results[('tile', 'proxy', 1)]['p99']:.2f} "
        f"tile_p99_ms_c8_proxy={t8['p99']:.2f} "
        f"tile_p99_ms_c8_direct={results[('tile', 'direct', 8)]['p99']:.2f} "
        f"health_p99_ms_c8_proxy={h8['p99']:.2f} "
        f"tile_vs_health_c8_proxy={t8['rps'] / h8['rps']:.2f} "
        f"cpu_ms_client={t8['cpu']['client']:.3f} cpu_ms_proxy={t8['cpu']['proxy']:.3f} "
        f"cpu_ms_store={t8['cpu']['store']:.3f}"
    )


if __name__ == "__main__":
    main()
