"""What one poll of the JupyterLab case desk costs the store, before and with the list's ETag.

The desk asks for the user's cases every two minutes (and when shown, and after a
cell ran). ``GET /cases`` decrypts every case and writes one audit entry per case;
that is the baseline. With the ETag, a poll while nothing changed costs the store
only the fingerprint of the list (:meth:`CaseStore.list_fingerprint`: clear
columns, nothing decrypted, nothing audited) and answers 304.

In one process, on a fresh store (SQLite, encrypted as every deployment's), one
clinician with ``--cases`` cases (default 50, a busy desk); each way is timed over
``--polls`` polls (median), and the audit entries each poll adds are counted.

The last line is ``RESULT poll_ms_list=... poll_ms_unchanged=... speedup=...
audit_per_poll_list=... audit_per_poll_unchanged=...``.

Run: ``.venv/bin/python benchmarks/case_list_poll.py [--cases N] [--polls N]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cpms_hub.domain import CaseDraft  # noqa: E402
from cpms_hub.policy import Decision  # noqa: E402
from cpms_hub.settings import CpmsSettings  # noqa: E402
from cpms_hub.state import State, init_state  # noqa: E402
from cpms_hub.store import AuditContext  # noqa: E402

USER = "bench-clin"
CTX = AuditContext(actor=USER, client="127.0.0.1")


def allow(_ref: object) -> Decision:
    return Decision(True, ("benchmark",))


def audit_count(state: State) -> int:
    with state.sessions() as s:
        return len(state.audit.entries(s, limit=1_000_000))


def timed(polls: int, fn) -> list[float]:  # noqa: ANN001
    out = []
    for _ in range(polls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cpms-poll-bench-"))
    try:
        state = init_state(
            CpmsSettings(
                state_dir=str(folder),
                db_url=f"sqlite:///{folder / 'cpms.db'}",
                key_file=str(folder / "keys" / "keyring.json"),
                blob_dir=str(folder / "blobs"),
            )
        )
        for i in range(args.cases):
            state.cases.create_case(
                CaseDraft(title=f"Invented case {i}", clinical_summary="Invented. " * 40),
                owner=USER,
                hospital="Hospital A",
                network="ERN-TEST",
                ctx=CTX,
            )
        cases = state.cases

        def listing() -> None:
            cases.list_cases(user=USER, network=None, authorize=allow, ctx=CTX)

        def fingerprint() -> None:
            cases.list_fingerprint(user=USER, network=None, authorize=allow)

        listing(), fingerprint()  # warm-up: connections, caches of keys
        before = audit_count(state)
        list_ms = timed(args.polls, listing)
        after_list = audit_count(state)
        print_ms = timed(args.polls, fingerprint)
        after_print = audit_count(state)
        state.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    list_med, print_med = statistics.median(list_ms), statistics.median(print_ms)
    per_list = (after_list - before) / args.polls
    per_print = (after_print - after_list) / args.polls
    print(f"{args.cases} cases, {args.polls} polls each (median)")
    print(f"  list (before): {list_med:8.2f} ms, {per_list:.0f} audit entries per poll")
    print(f"  unchanged (ETag): {print_med:8.2f} ms, {per_print:.0f} audit entries per poll")
    print(
        f"RESULT poll_ms_list={list_med:.2f} poll_ms_unchanged={print_med:.2f} "
        f"speedup={list_med / print_med:.1f} audit_per_poll_list={per_list:.0f} "
        f"audit_per_poll_unchanged={per_print:.0f}"
    )


if __name__ == "__main__":
    main()
