"""QIDO-RS: one relational search against the hierarchical walk it replaces.

Run from the repository root::

    .venv/bin/python benchmarks/qido.py [--studies 4 --slices 100 --rounds 5]

It starts a real deployment (``tests/deployment.py``: hub, proxy and store service on
loopback) with one clinician, imports ``--studies`` synthetic CT studies of ``--slices``
instances each (``tests/data_gen.py``, 32x32 pixels: the searches read headers only),
then times, through the proxy with ``http.client`` on one kept-alive connection:

* ``walk``: the baseline, what a client without the relational resources does to list
  every instance of the case: ``/studies``, then ``/studies/{study}/series`` for each
  study, then ``.../series/{series}/instances`` for each series (1 + 2 x studies requests);
* ``all``: the same list from one ``/instances`` request (PS3.18 10.6.1, All Instances),
  each instance with its series' and study's attributes;
* ``by_series``: ``/instances?SeriesInstanceUID=...`` (one series, found across the case)
  against ``/studies/{study}/series/{series}/instances`` (the path naming it).

Each figure is the median of ``--rounds`` rounds after one warm-up round (the service
keeps the de-identified headers it has read in an LRU, so the warm figures are what a
client browsing a case sees). Both ways must list the same instances. The last line is::

    RESULT all_ms=<ms> walk_ms=<ms> walk_over_all=<x> by_series_ms=<ms> path_series_ms=<ms>

The machine may be shared: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class _Qido:
    """GETs of DICOM JSON on one kept-alive connection, as a DICOMweb client makes them."""

    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.headers = {"Authorization": f"token {token}", "Accept": "application/dicom+json"}

    def get(self, path: str, **params: str) -> list[dict]:
        query = f"?{urlencode(params)}" if params else ""
        self.conn.request("GET", f"{self.path}{path}{query}", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"GET {path} answered {response.status}: {body[:300]!r}")
        return json.loads(body)


def _uid(item: dict, tag: str) -> str:
    return item[tag]["Value"][0]


def _walk(web: _Qido) -> list[str]:
    sops = []
    for study in web.get("/studies"):
        st = _uid(study, "0020000D")
        for series in web.get(f"/studies/{st}/series"):
            se = _uid(series, "0020000E")
            sops += [_uid(i, "00080018") for i in web.get(f"/studies/{st}/series/{se}/instances")]
    return sops


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    from cpms_widgets.client import CaseStoreClient
    from tests.data_gen import ct_series
    from tests.deployment import running_deployment

    print(f"{args.studies} studies x {args.slices} instances; {_load()} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="cpms-qido-bench-") as tmp:
        root = Path(tmp)
        with running_deployment(root / "deployment", {"bench-c": ("clinician",)}) as dep:
            token = dep.token("bench-c")
            with CaseStoreClient(dep.api, token, timeout=600) as client:
                case = client.create_case("qido benchmark", "imaging")
                t0 = time.perf_counter()
                for n in range(args.studies):
                    folder = root / f"study{n}"
                    ct_series(folder, slices=args.slices, size=32, seed=n)
                    report = client.import_dicom(case.id, folder)
                    if report["stored"] != args.slices:
                        sys.exit(f"import stored {report['stored']} of {args.slices}")
                print(f"imported in {time.perf_counter() - t0:.1f} s")
            web = _Qido(f"{dep.api}/cases/{case.id}/dicomweb", token)
            total = args.studies * args.slices

            walked = _walk(web)  # warm-up: the headers come into the service's cache
            everything = [_uid(i, "00080018") for i in web.get("/instances")]
            if sorted(walked) != sorted(everything) or len(everything) != total:
                sys.exit(f"the walk found {len(walked)}, /instances {len(everything)}")
            study = _uid(web.get("/studies")[-1], "0020000D")
            series = _uid(web.get(f"/studies/{study}/series")[0], "0020000E")

            walk_ms, all_ms, by_series_ms, path_ms = [], [], [], []
            for _ in range(args.rounds):
                walk_ms.append(_timed(lambda: _walk(web))[0])
                all_ms.append(_timed(lambda: web.get("/instances"))[0])
                ms, found = _timed(lambda: web.get("/instances", SeriesInstanceUID=series))
                by_series_ms.append(ms)
                if len(found) != args.slices:
                    sys.exit(f"/instances?SeriesInstanceUID found {len(found)}")
                path_ms.append(
                    _timed(lambda: web.get(f"/studies/{study}/series/{series}/instances"))[0]
                )
            web.conn.close()

    walk, every = statistics.median(walk_ms), statistics.median(all_ms)
    by_series, path_series = statistics.median(by_series_ms), statistics.median(path_ms)
    print(
        f"walk ({1 + 2 * args.studies} requests): {walk:8.1f} ms   "
        f"/instances (1 request): {every:8.1f} ms   ({total} instances)"
    )
    print(
        f"/instances?SeriesInstanceUID: {by_series:8.1f} ms   "
        f"/studies/{{s}}/series/{{s}}/instances: {path_series:8.1f} ms   ({args.slices} instances)"
    )
    print(_load())
    print(
        f"RESULT all_ms={every:.1f} walk_ms={walk:.1f} walk_over_all={walk / every:.2f} "
        f"by_series_ms={by_series:.1f} path_series_ms={path_series:.1f}"
    )


if __name__ == "__main__":
    main()
