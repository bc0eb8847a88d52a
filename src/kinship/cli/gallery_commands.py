"""Inspecting and repairing a gallery: `kinship people` and `kinship delete`.

`people` lists the tenant's people (or the ones named) with their records, facts and the
models whose collections hold each record, over the SDK's `KinshipClient.people`
(Indexer Stats, then GetRecords page by page). `delete` erases every record of the people
named in every collection, through Indexer Delete (the audited erasure path); it asks first
on a terminal and, elsewhere, erases only with --yes.
"""

from __future__ import annotations

import argparse
import json
import sys

from kinship.client.types import GalleryPerson

from . import client_commands
from .client_commands import CommandError
from .errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    people = subparsers.add_parser(
        "people",
        help="list the gallery's people, their records, facts and models",
        description=(
            "List the people of the gallery (of your tenant): per person its records (one per enrolled photo), "
            "their birth year, sex, region, source and enrolment time, and the models whose collections hold "
            "them (the identity model, and the kinship and family models where the embedder serves a kinship "
            "model). Exit 1 when a --person has no record."
        ),
    )
    people.add_argument(
        "--person",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        help="only these people (repeatable, or several ids after one --person)",
    )
    client_commands._add_tenant(people)
    client_commands._add_common(people, "indexer")
    people.set_defaults(func=client_commands._run(cmd_people))

    delete = subparsers.add_parser(
        "delete",
        help="erase people from the gallery (every record, every model)",
        description=(
            "Erase every record of the people named, in every model's collection of your tenant, through the "
            "indexer's audited erasure (Indexer Delete). On a terminal it asks first; otherwise it erases only "
            "with --yes. Exit 1 when none of them had a record."
        ),
    )
    delete.add_argument(
        "--person",
        action="extend",
        nargs="+",
        required=True,
        metavar="ID",
        help="a person to erase (repeatable, or several ids after one --person)",
    )
    delete.add_argument("--yes", action="store_true", help="erase without asking (needed where stdin is no terminal)")
    delete.add_argument(
        "--await-compaction",
        action="store_true",
        help="return only once Milvus has compacted the erased rows away (physically gone, not only hidden)",
    )
    client_commands._add_tenant(delete)
    client_commands._add_common(delete, "indexer")
    delete.set_defaults(func=client_commands._run(cmd_delete))


def _facts(record) -> str:
    f = record.facts
    parts = [f"born {f.birth_year}" if f.birth_year is not None else "birth year unknown", f.sex or "sex unknown"]
    if f.region:
        parts.append(f.region)
    if f.source:
        parts.append(f"source {f.source}")
    if record.enrolled_at is not None:
        parts.append(f"enrolled {record.enrolled_at:%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts)


def people_lines(people: list[GalleryPerson], tenant: str) -> list[str]:
    records = sum(len(p.records) for p in people)
    lines = [f"{len(people)} person(s), {records} record(s) in tenant {tenant or 'default'}"]
    for person in people:
        lines.append(f"{person.person_id}  {len(person.records)} record(s); models: {', '.join(person.models)}")
        for record in person.records:
            others = "" if record.models == person.models else f" (only in {', '.join(record.models)})"
            lines.append(f"    {record.record_id}  {_facts(record)}{others}")
    return lines


def people_json(people: list[GalleryPerson], tenant: str, missing: list[str]) -> str:
    return json.dumps(
        {
            "tenant": tenant,
            "person_count": len(people),
            "record_count": sum(len(p.records) for p in people),
            "people": [p.to_dict() for p in people],
            "not_found": missing,
        },
        indent=2,
    )


def cmd_people(args: argparse.Namespace) -> int:
    wanted = list(dict.fromkeys(args.person)) or None
    with client_commands._client(args, tenant=args.tenant) as client:
        people = client.people(wanted)
    tenant = people[0].tenant if people else (args.tenant or "default")
    found = {p.person_id for p in people}
    missing = [pid for pid in wanted or [] if pid not in found]
    if args.json:
        print(people_json(people, tenant, missing))
    else:
        print("\n".join(people_lines(people, tenant)))
    for pid in missing:
        print(f"kinship people: no records of person {pid!r} in tenant {tenant}", file=sys.stderr)
    return 1 if missing else 0


def _confirm(question: str) -> bool:
    print(question, end=" ", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    person_ids = list(dict.fromkeys(args.person))
    named = ", ".join(person_ids)
    if not args.yes and not sys.stdin.isatty():
        # A usage error (exit 2), printed as every error is: one line, or JSON on stdout with --json.
        raise UsageError(
            f"not erasing {named} without confirmation: stdin is not a terminal, so nothing can be asked; "
            "add --yes to erase them"
        )
    with client_commands._client(args, tenant=args.tenant) as client:
        if not args.yes:
            people = client.people(person_ids)
            records = sum(len(p.records) for p in people)
            if not people:
                raise CommandError(f"no records of {named} in this tenant: nothing to erase (see `kinship people`)")
            question = (
                f"Erase {records} record(s) of {len(people)} person(s) ({', '.join(p.person_id for p in people)}) "
                "from every collection? This cannot be undone. [y/N]"
            )
            if not _confirm(question):
                print("kinship delete: not confirmed; nothing erased", file=sys.stderr)
                return 1
        erased = client.delete(person_ids=person_ids, await_compaction=args.await_compaction)
    tenant = args.tenant or "default"
    if args.json:
        print(json.dumps({"person_ids": person_ids, "deleted_count": erased, "tenant": tenant}, indent=2))
    elif erased:
        print(f"erased {erased} record(s) of {named} from every collection of tenant {tenant}")
    if not erased:
        print(
            f"kinship delete: no records of {named} in tenant {tenant}: nothing erased (see `kinship people`)",
            file=sys.stderr,
        )
        return 1
    return 0
