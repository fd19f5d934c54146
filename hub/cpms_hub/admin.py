"""``cpms-admin``: the operator's command line.

Works on the state folder directly (it holds the keys, so run it as the
account that owns the state) and, for changes the running hub must know
about (groups, tokens), calls the hub's API with the ``cpms-admin`` service
token kept in the state folder. Commands print no secrets except where that
is their purpose (``totp`` for the demo and tests, ``token`` for scripts).
Exit status: 0 success, 1 the command failed (message on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

from cpms_hub.domain import AccountRequest, CpmsError, Role
from cpms_hub.hubapi import HubApi, HubApiError
from cpms_hub.settings import CpmsSettings
from cpms_hub.state import State, init_state, open_state
from cpms_hub.store import AuditContext

__all__ = ["main"]


def _hub(settings: CpmsSettings) -> HubApi | None:
    token_file = settings.admin_token_file
    if not token_file.exists():
        return None
    api_url = os.environ.get("CPMS_HUB_API_URL") or f"http://127.0.0.1:{settings.hub_port}/hub/api"
    return HubApi(api_url, token_file.read_text().strip(), timeout=5)


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def cmd_init(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = init_state(settings)
    state.close()
    if not settings.admin_token_file.exists():
        _write_secret(settings.admin_token_file, secrets.token_hex(32))
    print(f"state ready in {settings.state_dir}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("passwords differ")
    return first


def _sync(settings: CpmsSettings, what: str, fn) -> None:  # noqa: ANN001
    hub = _hub(settings)
    if hub is None:
        return
    try:
        fn(hub)
    except HubApiError as exc:
        print(
            f"note: hub not updated ({what}): {exc}; it reloads groups at its next start",
            file=sys.stderr,
        )
    finally:
        hub.close()


def cmd_account(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    reg = state.accounts
    try:
        if args.verb in ("request", "create"):
            roles = frozenset(Role(r.strip()) for r in args.roles.split(",") if r.strip())
            req = AccountRequest(
                name=args.name,
                email=args.email,
                full_name=args.full_name,
                hospital=args.hospital,
                network=args.network,
                roles=roles,
            )
            password = _read_password(args)
            if args.verb == "request":
                account = reg.request(req, password)
            else:
                account = reg.create_active(
                    req, password, by="cpms-admin", expertise=_expertise(args.expertise)
                )
                _sync(settings, "groups", lambda h: h.set_groups(account.name, account.roles))
            print(f"{account.name}: {account.status.value}")
        elif args.verb == "expertise":
            account = reg.set_profile(
                args.name,
                by=args.by,
                expertise=_expertise(args.set) if args.set is not None else None,
                timezone=args.timezone,
            )
            print(f"{account.name}: {', '.join(account.expertise) or '-'} ({account.timezone})")
        elif args.verb == "sync":
            account = reg.get(args.name)
            if account.is_active:
                _sync(settings, "groups", lambda h: h.set_groups(account.name, account.roles))
            else:
                _sync(settings, "revocation", lambda h: h.revoke_everything(account.name))
            print(f"{account.name}: hub groups follow its roles ({account.status.value})")
        elif args.verb == "list":
            accounts = reg.list()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "name": a.name,
                                "roles": sorted(r.value for r in a.roles),
                                "hospital": a.hospital,
                                "network": a.network,
                                "status": a.status.value,
                                "mfa_enrolled": a.mfa_enrolled,
                            }
                            for a in accounts
                        ],
                        indent=2,
                    )
                )
            else:
                for a in accounts:
                    roles = ",".join(sorted(r.value for r in a.roles))
                    print(f"{a.name:20} {a.status.value:10} {roles:30} {a.hospital} / {a.network}")
        else:
            method = getattr(reg, args.verb.replace("-", "_"))
            account = method(args.name, by=args.by)
            if args.verb in ("approve", "enable"):
                _sync(settings, "groups", lambda h: h.set_groups(account.name, account.roles))
            elif args.verb == "disable":
                _sync(settings, "revocation", lambda h: h.revoke_everything(account.name))
            print(f"{account.name}: {account.status.value}")
    finally:
        state.close()
    return 0


def cmd_totp(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    try:
        print(state.accounts.current_code(args.name))
    finally:
        state.close()
    return 0


def cmd_token(args: argparse.Namespace, settings: CpmsSettings) -> int:
    from cpms_hub.hubconfig import scopes_for

    state = open_state(settings)
    try:
        account = state.accounts.get(args.name)
    finally:
        state.close()
    if not account.is_active:
        raise CpmsError(f"account {args.name} is {account.status.value}")
    hub = _hub(settings)
    if hub is None:
        raise CpmsError("no cpms-admin service token: run `cpms-admin init`")
    try:
        hub.set_groups(account.name, account.roles)
        token = hub.new_token(
            account.name,
            note=args.note,
            scopes=scopes_for(account.roles),
            expires_in=args.expires_in,
        )
    except HubApiError as exc:
        raise CpmsError(f"{exc} (is the hub running?)") from None
    finally:
        hub.close()
    print(token)
    return 0


def cmd_rotate(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    try:
        moved = state.rotate_keys()
        print(f"new primary key {state.keyring.primary_id}; {moved} data keys re-wrapped")
    finally:
        state.close()
    return 0


def cmd_verify_audit(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    try:
        report = state.verify_audit()
    finally:
        state.close()
    if report.ok:
        print(f"audit trail intact: {report.entries} entries")
        return 0
    print(f"audit trail BROKEN ({report.entries} entries):", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def _expertise(text: str | None) -> list[str]:
    """``"ORPHA:558, cardiology"`` -> ``["ORPHA:558", "cardiology"]``."""
    return [e.strip() for e in (text or "").split(",") if e.strip()]


def cmd_verify_outcome(args: argparse.Namespace, settings: CpmsSettings) -> int:
    """Exit 0 when every signature verifies over the stored canonical outcome."""
    state = open_state(settings)
    try:
        problems = state.review.verify_outcome(
            args.case_id, ctx=AuditContext(actor="cpms-admin", client="cli")
        )
    finally:
        state.close()
    if not problems:
        print(f"outcome of case {args.case_id}: every signature verifies")
        return 0
    print(f"outcome of case {args.case_id} does NOT verify:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_erase(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    try:
        blobs = state.cases.erase_case(args.case_id, ctx=AuditContext(actor=args.by, client="cli"))
        print(f"case {args.case_id} erased: data key destroyed, {blobs} files removed")
    finally:
        state.close()
    return 0


def cmd_purge_uploads(args: argparse.Namespace, settings: CpmsSettings) -> int:
    state = open_state(settings)
    try:
        removed = state.uploads.purge(
            idle_for=timedelta(days=args.idle_days),
            ctx=AuditContext(actor="cpms-admin", client="cli"),
        )
    finally:
        state.close()
    print(f"{removed} idle or orphaned uploads removed")
    return 0


def cmd_demo(args: argparse.Namespace, settings: CpmsSettings) -> int:
    from cpms_hub.demo import seed

    cmd_init(args, settings)
    state: State = open_state(settings)
    try:
        seed(state, quiet=False)
    finally:
        state.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpms-admin", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("init", help="create keys, database and folders (idempotent)").set_defaults(
        fn=cmd_init
    )

    acc = sub.add_parser("account", help="manage accounts")
    acc_sub = acc.add_subparsers(dest="verb", required=True)
    for verb in ("request", "create"):
        a = acc_sub.add_parser(
            verb,
            help=f"{verb} an account"
            + (" (active at once: demo and operators)" if verb == "create" else ""),
        )
        a.add_argument("name")
        a.add_argument("--email", required=True)
        a.add_argument("--full-name", required=True)
        a.add_argument("--hospital", required=True)
        a.add_argument("--network", required=True)
        a.add_argument("--roles", required=True, help="comma-separated: " + ", ".join(Role))
        a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        a.add_argument(
            "--expertise", default="", help="comma-separated: ORPHA codes, specialties"
        )
    for verb in ("approve", "reject", "disable", "enable", "reset-mfa"):
        a = acc_sub.add_parser(verb, help=f"{verb} an account")
        a.add_argument("name")
        a.add_argument("--by", default="cpms-admin", help="who decides (for the audit trail)")
    ex = acc_sub.add_parser("expertise", help="set what an account is expert in, its time zone")
    ex.add_argument("name")
    ex.add_argument("--set", default=None, help="comma-separated: ORPHA codes, specialties")
    ex.add_argument("--timezone", default=None, help="IANA time zone, e.g. Europe/Paris")
    ex.add_argument("--by", default="cpms-admin")
    sy = acc_sub.add_parser("sync", help="make the running hub's groups match the account")
    sy.add_argument("name")
    lst = acc_sub.add_parser("list", help="list accounts")
    lst.add_argument("--json", action="store_true")
    acc.set_defaults(fn=cmd_account)

    t = sub.add_parser("totp", help="print an account's current one-time code (demo and tests)")
    t.add_argument("name")
    t.set_defaults(fn=cmd_totp)

    tok = sub.add_parser("token", help="issue an API token for an account's scripts (hub running)")
    tok.add_argument("name")
    tok.add_argument("--note", default="cpms-admin token")
    tok.add_argument("--expires-in", type=int, default=None, help="seconds")
    tok.set_defaults(fn=cmd_token)

    sub.add_parser("rotate-keys", help="new key-encryption key; re-wrap data keys").set_defaults(
        fn=cmd_rotate
    )
    sub.add_parser("verify-audit", help="check the audit hash chain").set_defaults(
        fn=cmd_verify_audit
    )
    vo = sub.add_parser(
        "verify-outcome", help="check every signature of a case's outcome (exit 1 if one fails)"
    )
    vo.add_argument("case_id")
    vo.set_defaults(fn=cmd_verify_outcome)

    e = sub.add_parser("erase-case", help="crypto-shred a case (GDPR Art. 17)")
    e.add_argument("case_id")
    e.add_argument("--by", default="cpms-admin")
    e.set_defaults(fn=cmd_erase)

    pu = sub.add_parser(
        "purge-uploads", help="remove uploads idle for days and partial files left by erasure"
    )
    pu.add_argument("--idle-days", type=float, default=7.0)
    pu.set_defaults(fn=cmd_purge_uploads)

    sub.add_parser("demo", help="init and seed demo accounts and synthetic cases").set_defaults(
        fn=cmd_demo
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = CpmsSettings()
    try:
        return args.fn(args, settings)
    except CpmsError as exc:
        print(f"cpms-admin: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
