"""`kinship certs` (a local CA and certificates, bearer tokens) and `kinship audit` (keygen, verify, query).

Also the client flags every client command takes: `--tls-dir DIR --as NAME` (mutual
TLS with DIR/NAME.crt), `--token-file` (a bearer JWT), `--case-id` and `--purpose`
(sent as x-case-id / x-purpose, required on searches when security is on).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from kinship.audit import checkpoints, trail
from kinship.security import certs, client, tokens
from kinship.security.policy import ROLES


def register(subparsers: argparse._SubParsersAction) -> None:
    certs_parser = subparsers.add_parser("certs", help="make a local CA, server and client certificates, tokens")
    which = certs_parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    init = which.add_parser(
        "init",
        help="make DIR/ca.crt+key, server.crt+key (localhost, 127.0.0.1, ::1 and --name) and service.crt+key",
    )
    init.add_argument("dir", type=Path, help="folder for the certificates (made if missing)")
    init.add_argument(
        "--name", action="append", default=[], help="another DNS name or IP the servers answer on (repeatable)"
    )
    init.add_argument("--days", type=int, default=365, help="validity in days [default 365]")
    init.add_argument("--force", action="store_true", help="replace an existing CA (invalidates what it issued)")
    init.set_defaults(func=cmd_certs_init)

    issue = which.add_parser("issue", help="make a client certificate DIR/NAME.crt + DIR/NAME.key")
    issue.add_argument("dir", type=Path, help="the folder `certs init` made")
    issue.add_argument("name", help="the caller's name (the certificate's common name)")
    issue.add_argument("--role", required=True, choices=ROLES, help="what the caller may do")
    issue.add_argument("--tenant", help="the agency gallery the caller is bound to (it sees no other)")
    issue.add_argument("--days", type=int, default=365, help="validity in days [default 365]")
    issue.set_defaults(func=cmd_certs_issue)

    token = which.add_parser(
        "token", help="print a signed bearer token (JWT, ES256) for NAME; the signing key is DIR/jwt-signing.key"
    )
    token.add_argument("dir", type=Path, help="folder of the signing key (made on first use, public key beside it)")
    token.add_argument("name", help="the caller's name (sub)")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--tenant")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires [default 3600]")
    token.set_defaults(func=cmd_certs_token)

    audit = subparsers.add_parser("audit", help="make the checkpoint key, verify and query the audit trail")
    action = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    keygen = action.add_parser(
        "keygen",
        help="make the Ed25519 key that signs audit checkpoints: DIR/audit-signing.key (for the services' "
        "KINSHIP_AUDIT_KEY_FILE) and DIR/audit-signing.pub (for `audit verify --key`)",
    )
    keygen.add_argument("dir", type=Path, help="folder for the key pair (made if missing)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_audit_keygen)

    verify = action.add_parser("verify", help="check every event's hash and the chain; exit 1 and say where it breaks")
    verify.add_argument("log", type=Path, help="an audit file (e.g. <data dir>/audit/ranker.audit.jsonl)")
    verify.add_argument(
        "--key",
        type=Path,
        action="append",
        default=[],
        metavar="PUBLIC_KEY_FILE",
        help="the checkpoint key's public half (audit-signing.pub; repeatable, for keys rotated): also check every "
        "signed checkpoint and the log against the checkpoint file, which catches a re-hashed chain and a cut-off end",
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        help="with --key: the checkpoint file, e.g. the copy in write-once storage [default "
        "LOG's folder/checkpoints/NAME.checkpoints.jsonl]",
    )
    verify.add_argument("--expect-head", help="the last hash you kept from an earlier verify: catches a cut-off end")
    verify.add_argument("--json", action="store_true", help="print JSON for programs")
    verify.set_defaults(func=cmd_audit_verify)

    query = action.add_parser("query", help="events by caller, case, person id, rpc and time")
    query.add_argument("log", type=Path, nargs="+", help="audit file(s)")
    query.add_argument("--caller", help="the caller's name (or the service that called on its behalf)")
    query.add_argument("--case-id", help="the case id")
    query.add_argument("--person", help="a person id among the ids returned or changed")
    query.add_argument("--rpc", help="an RPC, e.g. FindRelatives or /kinship.v1.Indexer/Delete")
    query.add_argument("--since", help="from this time (ISO 8601, UTC unless it says)")
    query.add_argument("--until", help="up to this time (ISO 8601)")
    query.add_argument("--json", action="store_true", help="print JSON lines for programs")
    query.set_defaults(func=cmd_audit_query)


# Client flags ---------------------------------------------------------------------


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    """`--tls-dir --as --token-file --case-id --purpose` on a client command."""
    group = parser.add_argument_group("security")
    group.add_argument("--tls-dir", help="folder with ca.crt and NAME.crt/.key: mutual TLS [env KINSHIP_TLS_DIR]")
    group.add_argument(
        "--as", dest="as_name", metavar="NAME", help="the client certificate to present [env KINSHIP_CLIENT_NAME]"
    )
    group.add_argument("--token-file", help="a file holding a bearer token (JWT) [env KINSHIP_TOKEN_FILE]")
    if "--case-id" not in parser._option_string_actions:
        group.add_argument(
            "--case-id", default=None, help="the case this call serves (x-case-id) [env KINSHIP_CASE_ID]"
        )
    group.add_argument("--purpose", default=None, help="why this call is made (x-purpose) [env KINSHIP_PURPOSE]")


def apply_client_flags(args: argparse.Namespace) -> None:
    """Sets the process's ClientSecurity from the flags; ValueError/OSError say what is wrong."""
    case_id = getattr(args, "case_id", None)
    client.configure(
        client.from_options(
            getattr(args, "tls_dir", None),
            getattr(args, "as_name", None),
            getattr(args, "token_file", None),
            case_id or None,
            getattr(args, "purpose", None),
        )
    )


# certs ---------------------------------------------------------------------------


def _fail(command: str, message: str) -> int:
    print(f"kinship {command}: {message}", file=sys.stderr)
    return 2


def cmd_certs_init(args: argparse.Namespace) -> int:
    try:
        written = certs.init(args.dir, args.name, days=args.days, force=args.force)
    except (certs.CertificateError, OSError) as exc:
        return _fail("certs init", str(exc))
    for path in written:
        print(path)
    print(
        f"kinship certs init: CA and certificates in {args.dir}; keep ca.key away from the servers "
        f"(`kinship certs issue {args.dir} NAME --role ROLE` needs it)",
        file=sys.stderr,
    )
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    try:
        written = certs.issue(args.dir, args.name, role=args.role, tenant=args.tenant, days=args.days)
    except (certs.CertificateError, OSError) as exc:
        return _fail("certs issue", str(exc))
    for path in written:
        print(path)
    return 0


def cmd_certs_token(args: argparse.Namespace) -> int:
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
        key = tokens.signing_key(args.dir)
    except OSError as exc:
        return _fail("certs token", str(exc))
    print(tokens.mint(key, args.name, role=args.role, tenant=args.tenant, ttl_seconds=args.ttl))
    return 0


# audit ---------------------------------------------------------------------------


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    try:
        private, public = checkpoints.keygen(args.dir, force=args.force)
    except (FileExistsError, OSError) as exc:
        return _fail("audit keygen", str(exc))
    print(private)
    print(public)
    kid = checkpoints.key_id(checkpoints.load_public_key(public))
    print(
        f"kinship audit keygen: key {kid}; give {private.name} to the services only (KINSHIP_AUDIT_KEY_FILE, a "
        f"Kubernetes Secret), {public.name} to whoever verifies (`kinship audit verify LOG --key {public}`)",
        file=sys.stderr,
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if args.checkpoints is not None and not args.key:
        return _fail("audit verify", "--checkpoints needs --key PUBLIC_KEY_FILE (the signatures are what it checks)")
    try:
        if args.key:
            keys = checkpoints.load_public_keys(args.key)
            result: trail.VerifyResult | checkpoints.AnchoredResult = checkpoints.verify_anchored(
                args.log, keys, args.checkpoints
            )
        else:
            result = trail.verify(args.log, expect_head=args.expect_head)
    except checkpoints.AuditKeyError as exc:
        return _fail("audit verify", str(exc))
    except OSError as exc:
        return _fail("audit verify", f"cannot read {args.log}: {exc.strerror or exc}")
    if result.ok and args.key and args.expect_head is not None and args.expect_head != result.head:
        result = checkpoints.AnchoredResult(
            False,
            result.events,
            result.head,
            f"the last line's hash is {result.head}, not the expected {args.expect_head}: lines at the end were "
            "removed (or added)",
        )
    warnings = list(getattr(result, "warnings", ()))
    if result.ok and not args.key:
        marks = f" ({result.checkpoints} signed checkpoints in it not checked)" if result.checkpoints else ""
        warnings.append(
            f"unanchored{marks}: without --key nothing shows that the chain was not recomputed after an edit, or "
            "that its end was not cut off (pass --key audit-signing.pub, or --expect-head)"
        )
    if args.json:
        report = {
            "ok": result.ok,
            "events": result.events,
            "head": result.head,
            "problem": result.problem,
            "line": result.line,
            "anchored": bool(args.key) and result.ok,
            "checkpoints": result.checkpoints,
            "warnings": warnings,
        }
        if isinstance(result, checkpoints.AnchoredResult):
            report.update(anchors=result.anchors, anchored_seq=result.anchored_seq, unanchored=result.unanchored)
        print(json.dumps(report))
    elif result.ok:
        if isinstance(result, checkpoints.AnchoredResult):
            print(
                f"{args.log}: OK, {result.events} events, chain intact, {result.checkpoints} signed checkpoints in "
                f"the log and {result.anchors} in the checkpoint file verify; anchored up to seq "
                f"{result.anchored_seq}; last hash {result.head}"
            )
        else:
            print(f"{args.log}: OK, {result.events} events, chain intact; last hash {result.head}")
        for warning in warnings:
            print(f"kinship audit verify: warning: {warning}", file=sys.stderr)
    else:
        where = f"line {result.line}" if result.line else "end of file"
        print(
            f"{args.log}: BROKEN at {where}: {result.problem} ({result.events} events before it verify)",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def cmd_audit_query(args: argparse.Namespace) -> int:
    for text in (args.since, args.until):
        if text:
            try:
                datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return _fail("audit query", f"{text!r} is not an ISO 8601 time (e.g. 2026-11-27T14:00:00Z)")
    count = 0
    for path in args.log:
        try:
            events = list(trail.read_events(path))
        except (OSError, ValueError) as exc:
            return _fail("audit query", f"cannot read {path}: {exc} (run `kinship audit verify {path}`)")
        for event in trail.query(
            events,
            caller=args.caller,
            case_id=args.case_id,
            person_id=args.person,
            rpc=args.rpc,
            since=args.since,
            until=args.until,
        ):
            count += 1
            if args.json:
                print(json.dumps(event, sort_keys=True))
            else:
                ids = ",".join(event.get("person_ids") or []) or "-"
                via = f" via {event['via']}" if event.get("via") else ""
                print(
                    f"{event['time']}  {event.get('caller') or '-'}{via} ({event.get('role') or '-'}, tenant "
                    f"{event.get('tenant') or '-'})  {event['rpc'].rsplit('/', 1)[-1]}  case {event.get('case_id') or '-'}  "
                    f"purpose {event.get('purpose') or '-'}  {event['outcome']}  persons {ids}"
                )
    if not args.json:
        print(f"{count} events", file=sys.stderr)
    return 0
