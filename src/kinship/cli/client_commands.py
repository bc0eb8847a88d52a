"""Client commands: `kinship embed`, `enroll`, `find`, `compare`, `status`.

Each prints a readable summary by default; `--json` prints the response in
protobuf's JSON mapping with the field names of the .proto files, for programs.
A ranked candidate is a lead for a person to verify, never an identification: the
readable output of `find` and `compare` says so every time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship import software_version
from kinship.client import KinshipClient
from kinship.client import enrolment as sdk_enrolment
from kinship.client.enrolment import EnrolError, EnrolItem, EnrolProgress
from kinship.client.types import RELATIONS, SEXES, most_prominent
from kinship.domain.verbal import verbal_scale
from kinship.ranker.public import Limits as RankerLimits
from kinship.runtime import addresses
from kinship.runtime.clients import sync_channel
from kinship.security import client as client_security
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)

from . import security_commands
from .errors import PARTLY_DONE, CommandError, PartlyDone, UsageError, report, suggest_relation

__all__ = [
    "RELATIONS",
    "SEXES",
    "CommandError",
    "EnrolItem",
    "PartlyDone",
    "UsageError",
    "most_prominent",
]  # kept here for callers of the CLI module
CALL_TIMEOUT = 120.0
LEAD_NOTICE = "A candidate is a lead for a person to verify, never an identification."
RELATIVE_SYNTAX = "RELATION[@WHEN][:LABEL]=IMAGE[,IMAGE...]"
ALIGNED_HELP = (
    "the images are face crops already aligned to the ArcFace 112x112 template (a data set of crops such as "
    "KinFaceW's 64x64 ones, resized): no face detection runs, each image is one face (the API's pre_aligned); "
    "a tight crop the detector would miss is used as it is"
)
RELATIVE_HELP = (
    "a relative and their photos; RELATION is father, mother, brother, sister, sibling (sex unknown), "
    "grandfather, grandmother or self (an earlier photo of the missing person); @WHEN is the age at the photos (self@6=kid.jpg) or the year "
    "they were taken (self@1998=kid.jpg); :LABEL names the relative in the output (sister:anna=a.jpg)"
)


#: The ranker's own bounds on top_n (its validation Limits), so the help says what the server does: 0 asks for
#: the ranker's default.
RANKER_MAX_TOP_N, RANKER_DEFAULT_TOP_N = RankerLimits().max_top_n, RankerLimits().default_top_n
TOP_N_HELP = (
    f"how many candidates, 1 to {RANKER_MAX_TOP_N} [default 10]; 0 leaves it to the ranker, which then returns "
    f"{RANKER_DEFAULT_TOP_N}"
)


def top_n(text: str) -> int:
    """--top-n: 0 (the ranker's default) to the ranker's maximum, refused as a usage error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value <= RANKER_MAX_TOP_N:
        raise argparse.ArgumentTypeError(
            f"must be 1 to {RANKER_MAX_TOP_N} (0 for the ranker's default, {RANKER_DEFAULT_TOP_N}), got {value}"
        )
    return value


def _address(flag_value: str | None, env: str, port: int) -> str:
    return addresses.service_address(env.removeprefix("KINSHIP_").removesuffix("_ADDRESS").lower(), flag_value)


def _client(args: argparse.Namespace, **kwargs) -> KinshipClient:
    """The SDK's client for the addresses in the flags (or the environment) and the process's security."""
    targets = {name: addresses.service_address(name, getattr(args, name, None)) for name in addresses.SERVICES}
    return KinshipClient(targets, security=client_security.current(), timeout=CALL_TIMEOUT, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = subparsers.add_parser("embed", help="detect and embed the faces of one image")
    embed.add_argument("image", type=Path, help="a JPEG, PNG, WebP or BMP file")
    embed.add_argument("--model-id", default="", help="embedding model (default: the embedder's default)")
    embed.add_argument("--max-faces", type=int, default=0, help="keep at most this many faces (0: all)")
    embed.add_argument("--aligned", action="store_true", help=ALIGNED_HELP)
    _add_common(embed, "embedder")
    embed.set_defaults(func=cmd_embed)

    enroll = subparsers.add_parser(
        "enroll",
        help="enrol images into the gallery",
        description=(
            "Enrol face images. Each image gives one record (its most prominent face). Person ids: "
            "--person-id for all images; --person-per-file makes each image its own person (named by the file's "
            "stem, in sub-folders too); otherwise images in a folder's sub-folders belong to the person "
            "named by the sub-folder, and loose images to the person named by the file's stem; --dry-run lists "
            "the people and their files without enrolling. "
            "A --manifest CSV (columns path,person_id[,birth_year,sex,region,source]) sets both per image. "
            "Images are embedded in batches and streamed to the indexer; a record id is the person id plus a "
            "digest of the image, so enrolling a file again replaces its records; byte-identical files are "
            "enrolled once and reported; a run stopped part way goes on where it stopped when run again (--journal)."
        ),
    )
    enroll.add_argument("paths", nargs="*", type=Path, help="image files or folders of images")
    enroll.add_argument("--manifest", type=Path, help="CSV: path,person_id[,birth_year,sex,region,source]")
    who = enroll.add_mutually_exclusive_group()
    who.add_argument("--person-id", help="person id for every image given")
    who.add_argument(
        "--person-per-file",
        action="store_true",
        help="each image is one person, its id the file's stem (also in sub-folders, which otherwise name the person)",
    )
    enroll.add_argument(
        "--dry-run", action="store_true", help="list the people and their files, enrol nothing (no service is called)"
    )
    enroll.add_argument("--aligned", action="store_true", help=ALIGNED_HELP)
    enroll.add_argument("--birth-year", type=int, help="birth year for every image given")
    enroll.add_argument("--sex", choices=sorted(SEXES), help="sex for every image given")
    enroll.add_argument("--region", default="", help="region for every image given")
    enroll.add_argument("--source", default="cli", help="source label for every image given [default cli]")
    enroll.add_argument("--model-id", default="", help="embedding model (default: the embedder's default)")
    enroll.add_argument("--indexer", help="indexer address [env KINSHIP_INDEXER_ADDRESS; default 127.0.0.1:50052]")
    journal = enroll.add_mutually_exclusive_group()
    journal.add_argument(
        "--journal",
        type=Path,
        metavar="DIR",
        help="folder of the resume journal: a run stopped part way goes on from what the indexer acknowledged "
        "[default $XDG_STATE_HOME/kinship-search/enrol-journals]",
    )
    journal.add_argument(
        "--no-journal", action="store_true", help="keep no journal (a re-run then embeds everything again)"
    )
    enroll.add_argument(
        "--batch-size",
        type=int,
        default=sdk_enrolment.BATCH_SIZE,
        help="images per EmbedBatch call [default %(default)s]",
    )
    _add_tenant(enroll)
    _add_common(enroll, "embedder")
    enroll.set_defaults(func=cmd_enroll)

    find = subparsers.add_parser(
        "find",
        help="find the likeliest relatives of a family in the gallery",
        description="Rank gallery people by how likely they are the missing person, given relatives' photos.",
    )
    find.add_argument("--relative", action="append", required=True, metavar=RELATIVE_SYNTAX, help=RELATIVE_HELP)
    _add_known_facts(find)
    find.add_argument(
        "--include-unknown",
        action="store_true",
        help="with --sex or a birth year: also consider gallery people whose sex or birth year is unknown (by "
        "default they are left out, and the answer says how many records were)",
    )
    _add_soft_facts(find)
    find.add_argument("--top-n", type=top_n, default=10, metavar="N", help=TOP_N_HELP)
    find.add_argument("--aligned", action="store_true", help="the --relative photos: " + ALIGNED_HELP)
    _add_report_flags(find)
    _add_common(find, "ranker")
    find.set_defaults(func=cmd_find)

    compare = subparsers.add_parser(
        "compare",
        help="score one candidate against a family, as find would",
        description=(
            "Score one candidate (photos, or a person in the gallery) against a family's photos exactly as "
            "`find` scores its candidates, without a search."
        ),
    )
    compare.add_argument("--relative", action="append", required=True, metavar=RELATIVE_SYNTAX, help=RELATIVE_HELP)
    which = compare.add_mutually_exclusive_group(required=True)
    which.add_argument("--candidate", metavar="IMAGE[,IMAGE...]", help="photos of the candidate")
    which.add_argument("--candidate-person", metavar="ID", help="a person in the gallery, scored on their records")
    compare.add_argument(
        "--candidate-sex", choices=sorted(SEXES), help="sex of the candidate given as photos (picks the calibration)"
    )
    _add_known_facts(compare)
    compare.add_argument(
        "--aligned", action="store_true", help="the --relative and --candidate photos: " + ALIGNED_HELP
    )
    _add_common(compare, "ranker")
    compare.set_defaults(func=cmd_compare)

    report = subparsers.add_parser("report", help="write a report as one self-contained HTML page")
    kinds = report.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    case = kinds.add_parser(
        "case",
        help="the investigator's case report from a saved `kinship find --json` response",
        description=(
            "Render the case report from a response saved by `kinship find --json` plus the same --relative "
            "photos (and known facts) that were asked with. Face crops come from the embedder."
        ),
    )
    case.add_argument("--response", type=Path, required=True, help="a saved `kinship find --json` response")
    case.add_argument("--relative", action="append", required=True, metavar=RELATIVE_SYNTAX, help=RELATIVE_HELP)
    _add_known_facts(case)
    case.add_argument("--aligned", action="store_true", help="the --relative photos: " + ALIGNED_HELP)
    case.add_argument("--top-n", type=top_n, default=10, metavar="N", help="as asked of find: " + TOP_N_HELP)
    case.add_argument("--output", type=Path, help="the HTML file to write")
    _add_report_flags(case, output=False)
    security_commands.add_client_flags(case)
    case.set_defaults(func=cmd_report_case)

    status = subparsers.add_parser("status", help="health of the three services")
    for name, port in (("embedder", 50051), ("indexer", 50052), ("ranker", 50053)):
        status.add_argument(
            f"--{name}", help=f"{name} address [env KINSHIP_{name.upper()}_ADDRESS; default 127.0.0.1:{port}]"
        )
    status.add_argument("--json", action="store_true", help="print JSON for programs")
    security_commands.add_client_flags(status)
    status.set_defaults(func=_run(cmd_status))


def _add_soft_facts(parser: argparse.ArgumentParser) -> None:
    """MissingPerson.soft: facts that may be wrong in the gallery keep a candidate, with a stated penalty."""
    soft = parser.add_argument_group(
        "soft facts",
        "a gallery may hold a false birth year or region (a child registered long ago): with these, a candidate "
        "outside the window or regions stays in the list, its log10 LR lowered by a stated penalty shown in "
        "its evidence, instead of being excluded (the default: hard filters)",
    )
    soft.add_argument(
        "--soft-birth-year",
        action="store_true",
        help="the birth-year window (--birth-year or --born-from/--born-to) is soft",
    )
    soft.add_argument("--soft-region", action="store_true", help="the --region filter is soft")
    soft.add_argument(
        "--birth-year-penalty",
        type=float,
        metavar="LOG10_LR",
        help="log10 LR per year outside the window, -10 to 0 (below 0) [default: the ranker's, -0.25]",
    )
    soft.add_argument(
        "--region-penalty",
        type=float,
        metavar="LOG10_LR",
        help="log10 LR for a region outside --region, -10 to 0 (below 0) [default: the ranker's, -1]",
    )


def _soft_facts(args: argparse.Namespace, missing: ranker_pb2.MissingPerson) -> None:
    soft_year, soft_region = getattr(args, "soft_birth_year", False), getattr(args, "soft_region", False)
    year_penalty, region_penalty = getattr(args, "birth_year_penalty", None), getattr(args, "region_penalty", None)
    if soft_year and not missing.HasField("birth_year"):
        raise UsageError("--soft-birth-year: give the window too (--birth-year, or --born-from/--born-to)")
    if soft_region and not missing.regions:
        raise UsageError("--soft-region: give the regions too (--region)")
    for flag, value, needs, needs_flag in (
        ("--birth-year-penalty", year_penalty, soft_year, "--soft-birth-year"),
        ("--region-penalty", region_penalty, soft_region, "--soft-region"),
    ):
        if value is None:
            continue
        if not needs:
            raise UsageError(f"{flag} is the penalty of {needs_flag}: give {needs_flag} too")
        if not (math.isfinite(value) and -10 <= value < 0):
            raise UsageError(f"{flag} must be below 0 and at least -10 (a log10 likelihood ratio), got {value:g}")
    if soft_year:
        missing.soft.birth_year = True
        missing.soft.birth_year_log10_lr_per_year = year_penalty or 0.0
    if soft_region:
        missing.soft.regions = True
        missing.soft.region_log10_lr = region_penalty or 0.0


def _add_known_facts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sex", choices=sorted(SEXES), help="sex of the missing person, if known")
    # One known year, or a window: --birth-year conflicts with each of --born-from and --born-to (two
    # groups sharing --birth-year: argparse refuses either pair, exit 2, naming both flags).
    with_from = parser.add_mutually_exclusive_group()
    one_year = with_from.add_argument(
        "--birth-year", type=int, help="birth year of the missing person, if known (or a window: --born-from/--born-to)"
    )
    with_from.add_argument("--born-from", type=int, help="earliest possible birth year")
    with_to = parser.add_mutually_exclusive_group()
    with_to._group_actions.append(one_year)  # noqa: SLF001 - argparse has no public way to share an action
    with_to.add_argument("--born-to", type=int, help="latest possible birth year")
    parser.add_argument("--region", action="append", default=[], help="search only this region (repeatable)")
    parser.add_argument(
        "--prior",
        type=float,
        default=0.0,
        help="prior probability that any one candidate is the missing person, for the posterior "
        "(default: the ranker's, see kinship status)",
    )
    parser.add_argument("--model-id", default="", help="identity embedding model (default: the ranker's)")
    _add_tenant(parser)


def _add_tenant(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant",
        default=os.environ.get("KINSHIP_TENANT", ""),
        help="tenant (the agency's gallery) to act for [env KINSHIP_TENANT; default: the caller's own, or 'default']",
    )


def _add_report_flags(parser: argparse.ArgumentParser, *, output: bool = True) -> None:
    if output:
        parser.add_argument("--report", type=Path, metavar="HTML", help="also write the case report to this file")
    parser.add_argument(
        "--gallery-photos",
        type=Path,
        metavar="DIR",
        help="candidate photos for the report: <person_id>.jpg|png, or a sub-folder per person id (as enroll reads)",
    )
    parser.add_argument("--case-id", default="", help="case id shown on the report")
    parser.add_argument("--pdf", type=Path, help="also print the report to this PDF (needs a headless chromium)")
    parser.add_argument(
        "--embedder",
        help="embedder address, for the relatives' face crops [env KINSHIP_EMBEDDER_ADDRESS; default 127.0.0.1:50051]",
    )


def _add_common(parser: argparse.ArgumentParser, service: str) -> None:
    port = {"embedder": 50051, "indexer": 50052, "ranker": 50053}[service]
    parser.add_argument(
        f"--{service}", help=f"{service} address [env KINSHIP_{service.upper()}_ADDRESS; default 127.0.0.1:{port}]"
    )
    parser.add_argument("--json", action="store_true", help="print the response as JSON (protobuf JSON mapping)")
    security_commands.add_client_flags(parser)


def _run(func):
    """Turns gRPC failures and CommandErrors into what the person (or, with --json, a program) reads, and the
    exit code of the table in kinship.cli.errors: every field violation, named by the flag that set it."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            security_commands.apply_client_flags(args)
            return func(args)
        except (CommandError, ValueError, OSError, grpc.RpcError) as exc:
            return report(args, exc)

    return wrapper


def to_json(message) -> str:
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=2
    )


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc


# embed ---------------------------------------------------------------------------


@_run
def cmd_embed(args: argparse.Namespace) -> int:
    image = _read_image(args.image)
    with _client(args) as client:
        reply = client.embed(image, model_id=args.model_id, max_faces=args.max_faces, pre_aligned=args.aligned).proto
    if args.json:
        print(to_json(reply))
        return 0
    print(
        f"{args.image}: {reply.image_width}x{reply.image_height}, {len(reply.faces)} face(s), model {reply.model_id} ({reply.dimension}-d)"
    )
    for i, face in enumerate(reply.faces):
        b = face.box
        head = ", ".join(f"{v:.3f}" for v in face.embedding[:4])
        print(
            f"  face {i}: score {face.detection_score:.3f}  box ({b.x_min:.0f},{b.y_min:.0f})-({b.x_max:.0f},{b.y_max:.0f})  embedding [{head}, ...]"
        )
    return 0


# enroll --------------------------------------------------------------------------


def collect_items(args: argparse.Namespace) -> list[EnrolItem]:
    """Expands paths and the manifest into (image, person id, attributes) items (see kinship.client.enrolment)."""
    try:
        defaults = sdk_enrolment.attributes(args.birth_year, args.sex, args.region, args.source)
        items = sdk_enrolment.items_from_paths(
            args.paths, person_id=args.person_id, defaults=defaults, person_per_file=args.person_per_file
        )
        if args.manifest:
            items += sdk_enrolment.items_from_manifest(args.manifest, defaults)
    except EnrolError as exc:
        raise CommandError(str(exc)) from exc
    if not items:
        raise CommandError("nothing to enrol: give image files, folders or --manifest")
    return items


def kinship_model_for(models, model_id: str) -> tuple[str, str]:
    """(identity model, kinship model bound to it or "") from ListModels' entries; `model_id` "" = the default."""
    try:
        return sdk_enrolment.choose_models(models, model_id)
    except EnrolError as exc:
        raise CommandError(str(exc)) from exc


class _ProgressLine:
    """Progress on stderr at most once a second, and at the end: done/total, rate and ETA."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, p: EnrolProgress) -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and p.done != p.total:
            return
        self._last = now
        eta = f", ETA {_duration(p.eta_s)}" if p.eta_s is not None and p.done != p.total else ""
        extra = "".join(
            f", {n} {what}"
            for n, what in ((p.already, "already enrolled"), (p.duplicates, "duplicate(s)"), (p.refused, "refused"))
            if n
        )
        print(
            f"  {p.done}/{p.total if p.total is not None else '?'} image(s): {p.enrolled} enrolled{extra}; "
            f"{p.rate:.1f} images/s{eta}",
            file=sys.stderr,
            flush=True,
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def people_of_items(items: list[EnrolItem]) -> dict[str, list[str]]:
    """Person id -> the files that would be enrolled as that person, in order."""
    people: dict[str, list[str]] = {}
    for item in items:
        people.setdefault(item.person_id, []).append(str(item.path))
    return dict(sorted(people.items()))


def person_summary(person_ids: list[str], shown: int = 20) -> str:
    """`3 person(s): a, b, c`, the list cut after `shown` ids."""
    listed = ", ".join(person_ids[:shown])
    more = f" and {len(person_ids) - shown} more" if len(person_ids) > shown else ""
    return f"{len(person_ids)} person(s): {listed}{more}" if person_ids else "0 persons"


def dry_run(items: list[EnrolItem], args: argparse.Namespace) -> int:
    people = people_of_items(items)
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": True,
                    "person_count": len(people),
                    "image_count": len(items),
                    "people": [{"person_id": pid, "files": files} for pid, files in people.items()],
                },
                indent=2,
            )
        )
        return 0
    print(f"dry run: {len(items)} image(s) would be enrolled as {len(people)} person(s):")
    for pid, files in people.items():
        print(f"  {pid} ({len(files)} image(s))")
        for path in files:
            print(f"      {path}")
    print("nothing was enrolled (drop --dry-run to enrol)")
    return 0


@_run
def cmd_enroll(args: argparse.Namespace) -> int:
    items = collect_items(args)
    if args.dry_run:
        return dry_run(items, args)
    journal = None if args.no_journal else (args.journal or True)
    try:
        with _client(args, tenant=args.tenant) as client:
            report = client.enroll(
                items,
                model_id=args.model_id,
                journal=journal,
                progress=None if args.json else _ProgressLine(),
                batch_size=args.batch_size,
                pre_aligned=args.aligned,
            )
    except KeyboardInterrupt:
        print(
            "kinship enroll: interrupted; what the indexer acknowledged is in the journal: run the same command "
            "again to go on from there",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(enroll_lines(report, len(items))))
    return 0 if not report.refused else 1


def enroll_lines(report: sdk_enrolment.EnrolReport, total: int) -> list[str]:
    lines = [
        f"enrolled {len(report.enrolled)} of {total} image(s) into {report.collection or '-'} (model {report.model_id or '-'}) "
        f"in {report.seconds:.1f} s, {report.images_per_second:.1f} images/s",
        f"  {person_summary(report.person_ids)}",
    ]
    if report.kinship_model_id:
        lines.append(
            f"  with their kinship vectors in {report.kinship_collection or '-'} (model {report.kinship_model_id})"
        )
        lines.append(
            f"  and their combined [kinship; identity] vectors for the family query in "
            f"{report.family_collection or '-'} (model {report.family_model_id})"
        )
    else:
        lines.append("  without kinship vectors: the embedder serves no kinship model for this model (kinship train)")
    if report.already_enrolled:
        lines.append(
            f"  {len(report.already_enrolled)} image(s) already enrolled by an interrupted run (journal {report.journal}): not sent again"
        )
    for dup in report.duplicates:
        lines.append(
            f"  duplicate {dup['path']}: the same bytes as {dup['same_as']} (person {dup['same_as_person_id']}); enrolled once"
        )
    for refused in report.refused:
        lines.append(f"  skipped {refused['path']}: {refused['reason']}")
    return lines


def enrol(
    items: list[EnrolItem],
    embedder_address: str,
    indexer_address: str,
    *,
    model_id: str = "",
    progress: bool = True,
    tenant: str = "",
) -> dict:
    """Enrols `items` through the embedder and indexer at these addresses (kinship.client's pipeline, no
    journal); the report as `kinship enroll --json` prints it."""
    with KinshipClient(
        {"embedder": embedder_address, "indexer": indexer_address},
        security=client_security.current(),
        tenant=tenant,
        timeout=CALL_TIMEOUT,
    ) as client:
        report = client.enroll(items, model_id=model_id, progress=_ProgressLine() if progress else None)
    return report.to_dict()


# find ----------------------------------------------------------------------------


def _when(text: str, spec: str) -> dict:
    """`6` or `6.5` -> the age at the photo; a four-digit year -> the year it was taken."""
    try:
        value = float(spec)
    except ValueError:
        value = math.nan
    if spec.isdigit() and len(spec) == 4:
        year = int(spec)
        if not 1900 <= year <= datetime.date.today().year:
            raise UsageError(f"--relative {text!r}: the year the photo was taken must be 1900 to this year")
        return {"capture_year": year}
    if math.isfinite(value) and 0 <= value <= 130:
        return {"age_at_photo": value}
    raise UsageError(
        f"--relative {text!r}: after @ write the age at the photo (self@6=kid.jpg) or the year it was taken "
        "(self@1998=kid.jpg)"
    )


def parse_relative(text: str, index: int, *, aligned: bool = False) -> ranker_pb2.Relative:
    """`father=dad.jpg`, `sister:anna=a1.jpg,a2.jpg`, `self@6=kid.jpg` -> a Relative with its photos."""
    head, sep, paths = text.partition("=")
    if not sep or not paths:
        raise UsageError(f"--relative {text!r}: write RELATION=IMAGE, for example father=dad.jpg")
    relation_part, _, label = head.partition(":")
    if "@" in label:
        raise UsageError(
            f"--relative {text!r}: the photo date goes before the label: RELATION[@WHEN][:LABEL]=IMAGE, "
            f"for example father@1990:dad=x.jpg"
        )
    relation_name, at, when = relation_part.partition("@")
    relation = RELATIONS.get(relation_name.strip().lower())
    if relation is None:
        raise UsageError(
            f"--relative {text!r}: relation must be one of {', '.join(RELATIONS)}"
            f"{suggest_relation(relation_name, list(RELATIONS))}"
        )
    dates = _when(text, when.strip()) if at else {}
    photos = [
        ranker_pb2.Photo(image=_read_image(Path(p.strip())), pre_aligned=aligned, **dates)
        for p in paths.split(",")
        if p.strip()
    ]
    if not photos:
        raise UsageError(f"--relative {text!r}: no image after '='")
    return ranker_pb2.Relative(label=label.strip(), relation=relation, photos=photos)


def missing_person(args: argparse.Namespace) -> ranker_pb2.MissingPerson:
    missing = ranker_pb2.MissingPerson(regions=args.region, include_unknown=getattr(args, "include_unknown", False))
    if args.sex:
        missing.sex = SEXES[args.sex]
    low, high = args.born_from, args.born_to
    if args.birth_year is not None:
        low = high = args.birth_year
    if low is not None:
        missing.birth_year.min = low
    if high is not None:
        missing.birth_year.max = high
    _soft_facts(args, missing)
    return missing


def build_find_request(args: argparse.Namespace) -> ranker_pb2.FindRelativesRequest:
    aligned = getattr(args, "aligned", False)
    relatives = [parse_relative(text, i, aligned=aligned) for i, text in enumerate(args.relative)]
    return ranker_pb2.FindRelativesRequest(
        relatives=relatives,
        missing_person=missing_person(args),
        top_n=args.top_n,
        model_id=args.model_id,
        prior_probability=args.prior,
        tenant=args.tenant,
    )


def build_compare_request(args: argparse.Namespace) -> ranker_pb2.CompareKinshipRequest:
    request = ranker_pb2.CompareKinshipRequest(
        relatives=[parse_relative(text, i, aligned=args.aligned) for i, text in enumerate(args.relative)],
        missing_person=missing_person(args),
        model_id=args.model_id,
        prior_probability=args.prior,
        tenant=args.tenant,
    )
    if args.candidate_person:
        if args.candidate_sex:
            raise UsageError("--candidate-sex is for --candidate photos; a gallery person's sex is on record")
        request.candidate_person_id = args.candidate_person
    else:
        paths = [p.strip() for p in args.candidate.split(",") if p.strip()]
        if not paths:
            raise UsageError("--candidate: give one or more images, comma-separated")
        request.candidate_photos.photos.extend(
            ranker_pb2.Photo(image=_read_image(Path(p)), pre_aligned=args.aligned) for p in paths
        )
        if args.candidate_sex:
            request.candidate_photos.sex = SEXES[args.candidate_sex]
    return request


def describe_scoring(info: ranker_pb2.ScoringInfo) -> str:
    """One line: calibrated by which artifact and calibration, or plainly not."""
    if not info.calibrated:
        return (
            "UNCALIBRATED: no kinship artifact (ACTIVE says none); scores are identity cosine "
            "similarities, not evidence, and no candidate can be strong"
        )
    return (
        f"calibrated: artifact {info.artifact_id}, calibration {info.calibration_id}, identity model "
        f"{info.identity_model_id}, kinship model {info.kinship_model_id}; prior {info.prior_probability:g}, "
        f"strong at log10 LR >= {info.strong_candidate_log10_lr:g}"
    )


def _facts(attrs: common_pb2.PersonAttributes) -> str:
    facts = []
    if attrs.HasField("birth_year"):
        facts.append(f"born {attrs.birth_year}")
    if attrs.sex:
        facts.append(common_pb2.Sex.Name(attrs.sex).removeprefix("SEX_").lower())
    if attrs.region:
        facts.append(attrs.region)
    return " ".join(facts)


def candidate_lines(cand: ranker_pb2.Candidate, calibrated: bool) -> list[str]:
    """A candidate: its fused evidence in numbers and words, then each relative's."""
    who = cand.person_id or "(the candidate photos)"
    facts = _facts(cand.attributes)
    if not calibrated:
        evidence = "  ".join(f"{e.label} {e.similarity:+.3f}{'' if e.retrieved else '*'}" for e in cand.evidence)
        return [f"{cand.rank:>3}. {who:<24} score {cand.score:+.3f}  [{evidence}]  {facts}".rstrip()]
    mark = "  STRONG" if cand.strong_candidate else ""
    lines = [
        f"{cand.rank:>3}. {who:<24} log10 LR {cand.log10_likelihood_ratio:+.2f} "
        f"({verbal_scale(cand.log10_likelihood_ratio)}), posterior {cand.posterior_probability:.3g}{mark}  {facts}".rstrip()
    ]
    for e in cand.evidence:
        weight = "" if e.fusion_weight == 1 else f", weight {e.fusion_weight:.2g}"
        lines.append(
            f"       {e.label:<14} log10 LR {e.log10_likelihood_ratio:+.2f} ({e.calibration}{weight}; "
            f"similarity {e.similarity:+.3f}{'' if e.retrieved else '*'}, photo {e.photo_index}, "
            f"record {e.record_id or '-'})"
        )
    for fact in cand.facts:
        lines.append(
            f"       {'soft ' + fact.fact.replace('_', ' '):<14} log10 LR {fact.log10_likelihood_ratio:+.2f} "
            f"({fact.detail or 'outside what is known'})"
        )
    return lines


def find_lines(reply: ranker_pb2.FindRelativesResponse) -> list[str]:
    calibrated = reply.scoring.calibrated
    lines = [
        f"{len(reply.candidates)} candidate(s) of {reply.candidates_considered} considered; model {reply.model_id}",
        f"scoring: {describe_scoring(reply.scoring)}",
        f"fusion: {reply.fusion_method}",
    ]
    lines += excluded_unknown_lines(reply.excluded_unknown)
    for cand in reply.candidates:
        lines += candidate_lines(cand, calibrated)
    if any(not e.retrieved for c in reply.candidates for e in c.evidence):
        lines.append("(* similarity computed for fusion; that relative's own search did not retrieve the candidate)")
    if calibrated and not reply.strong_candidates:
        lines.append(
            f"No strong candidate: no one reaches log10 LR {reply.scoring.strong_candidate_log10_lr:g}; "
            "the list shows the likeliest people, not a likely match."
        )
    elif calibrated:
        lines.append(f"{reply.strong_candidates} strong candidate(s).")
    lines.append(LEAD_NOTICE)
    return lines


def excluded_unknown_lines(excluded: common_pb2.UnknownExcluded) -> list[str]:
    """What --sex and the birth-year filters left out because the gallery does not know the fact."""
    lines = []
    for count, what in ((excluded.birth_year, "without a birth year"), (excluded.sex, "of unknown sex")):
        if count:
            lines.append(
                f"{count} record{'s' if count != 1 else ''} {what} {'were' if count != 1 else 'was'} not considered; "
                "--include-unknown to keep them"
            )
    return lines


def compare_lines(reply: ranker_pb2.CompareKinshipResponse) -> list[str]:
    calibrated = reply.scoring.calibrated
    lines = [f"scoring: {describe_scoring(reply.scoring)}", *candidate_lines(reply.candidate, calibrated)]
    if calibrated and not reply.candidate.strong_candidate:
        lines.append(f"Not a strong candidate: log10 LR below {reply.scoring.strong_candidate_log10_lr:g}.")
    lines.append(LEAD_NOTICE)
    return lines


@_run
def cmd_find(args: argparse.Namespace) -> int:
    request = build_find_request(args)
    _check_report_paths(args, args.report)
    with _client(args) as client:
        reply = client.find_relatives(request=request).proto
    if args.json:
        print(to_json(reply), flush=True)
    else:
        print("\n".join(find_lines(reply)), flush=True)
    if args.report or args.pdf:
        try:
            write_case_report(reply, request, args, args.report)
        except PartlyDone as exc:  # the search's answer is out (on stdout, JSON or not): say what is missing
            print(f"kinship find: {exc}", file=sys.stderr)
            return PARTLY_DONE
    return 0


@_run
def cmd_compare(args: argparse.Namespace) -> int:
    request = build_compare_request(args)
    with _client(args) as client:
        reply = client.compare(request=request).proto
    if args.json:
        print(to_json(reply))
        return 0
    print("\n".join(compare_lines(reply)))
    return 0


# case report ---------------------------------------------------------------------


def _check_report_paths(args: argparse.Namespace, output: Path | None) -> None:
    """Fails before any call when the report could not be written (so no search is wasted)."""
    if args.gallery_photos is not None and not args.gallery_photos.is_dir():
        raise CommandError(f"--gallery-photos {args.gallery_photos}: not a folder")
    for flag, path in (("--report/--output", output), ("--pdf", args.pdf)):
        if path is not None and not path.resolve().parent.is_dir():
            raise CommandError(f"{flag} {path}: the folder {path.parent} does not exist")
    if args.pdf is not None and chromium_path() is None:
        kept = output if output is not None else kept_html(args.pdf)
        print(
            f"kinship {args.command}: no headless Chromium found: the report will be written as HTML ({kept}), "
            "not printed to PDF",
            file=sys.stderr,
        )


def relative_face_crops(request: ranker_pb2.FindRelativesRequest, embedder) -> dict[int, list[bytes]]:
    """One JPEG crop of the most prominent face per relative photo (b"" where the embedder finds none)."""
    from kinship.reports.case import crop_face

    crops: dict[int, list[bytes]] = {}
    for i, relative in enumerate(request.relatives):
        crops[i] = []
        for j, photo in enumerate(relative.photos):
            crop = b""
            try:
                reply = embedder.Embed(
                    embedder_pb2.EmbedRequest(
                        image=photo.image, model_id=request.model_id, pre_aligned=photo.pre_aligned
                    ),
                    timeout=CALL_TIMEOUT,
                )
                if reply.faces:
                    crop = crop_face(photo.image, reply.faces[most_prominent(reply.faces)].box)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
            except ValueError:
                pass
            if not crop:
                label = relative.label or common_pb2.Relation.Name(relative.relation)
                print(f"  no face crop for {label} photo {j + 1}: no face found", file=sys.stderr)
            crops[i].append(crop)
    return crops


PDF_NEEDS_CHROMIUM = (
    "--pdf needs a headless Chromium (chromium, chromium-browser, google-chrome or google-chrome-stable on PATH), "
    "and none was found"
)
INSTALL_CHROMIUM = (
    "install one (Debian/Ubuntu: `sudo apt-get install chromium`, or chromium-browser; Fedora: `sudo dnf install "
    "chromium`; macOS: `brew install --cask chromium`) and print the saved answer without searching again: "
    "`kinship report case --response saved.json --relative ... --pdf case.pdf` (with the response of "
    "`kinship find --json`); or open the HTML in a browser and print it (A4)"
)


def kept_html(pdf_path: Path) -> Path:
    """Where the HTML of a --pdf without --report/--output is kept when the PDF cannot be printed."""
    return pdf_path.with_suffix(".html")


def chromium_path() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_path: Path, pdf_path: Path) -> None:
    """Prints the HTML file to A4 PDF with headless Chromium (its @page rule sets the paper)."""
    import subprocess

    browser = chromium_path()
    if browser is None:
        raise PartlyDone(PDF_NEEDS_CHROMIUM)
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf_path.resolve()}",
        html_path.resolve().as_uri(),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise PartlyDone(f"{browser} did not print {pdf_path} within 120 s") from exc
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PartlyDone(f"{browser} could not print {pdf_path} (exit {done.returncode}): {' | '.join(tail)}")


def write_case_report(
    reply: ranker_pb2.FindRelativesResponse,
    request: ranker_pb2.FindRelativesRequest,
    args: argparse.Namespace,
    output: Path | None,
) -> None:
    """Crops the relatives' faces through the embedder, renders the report, writes HTML and/or PDF.

    When the PDF cannot be printed (no Chromium, or it fails) the HTML is kept, at `output` or beside the
    PDF's path, and PartlyDone says where and how to get the PDF."""
    import tempfile

    from kinship.reports.case import load_gallery_photos, render_case_report

    gallery = load_gallery_photos(args.gallery_photos) if args.gallery_photos else None
    with sync_channel(_address(args.embedder, "KINSHIP_EMBEDDER_ADDRESS", 50051)) as channel:
        crops = relative_face_crops(request, embedder_pb2_grpc.EmbedderStub(channel))
    html = render_case_report(
        reply,
        request,
        relative_crops=crops,
        gallery_photos=gallery,
        case_id=args.case_id,
        software_version=software_version(),
    )
    if output is not None:
        output.write_text(html, encoding="utf-8")
        print(f"case report written to {output}", file=sys.stderr)
    if args.pdf is not None:
        with tempfile.TemporaryDirectory() as tmp:
            source = output if output is not None else Path(tmp) / "case.html"
            if output is None:
                source.write_text(html, encoding="utf-8")
            try:
                print_pdf(source, args.pdf)
            except PartlyDone as exc:
                if output is None:
                    kept = kept_html(args.pdf)
                    kept.write_text(html, encoding="utf-8")
                    print(f"case report written to {kept}", file=sys.stderr)
                    source = kept
                raise PartlyDone(
                    f"{exc}: the PDF {args.pdf} was not written; the HTML report is kept at {source}. To get the "
                    f"PDF, {INSTALL_CHROMIUM}"
                ) from exc
        print(f"case report printed to {args.pdf}", file=sys.stderr)


def load_find_response(path: Path) -> ranker_pb2.FindRelativesResponse:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json_format.Parse(text, ranker_pb2.FindRelativesResponse())
    except json_format.ParseError as exc:
        raise CommandError(f"{path} is not a `kinship find --json` response: {exc}") from exc


@_run
def cmd_report_case(args: argparse.Namespace) -> int:
    if args.output is None and args.pdf is None:
        raise UsageError("give --output case.html and/or --pdf case.pdf")
    reply = load_find_response(args.response)
    request = build_find_request(args)
    if len(request.relatives) != max((len(c.evidence) for c in reply.candidates), default=len(request.relatives)):
        raise CommandError(
            f"{args.response} holds evidence from {len(reply.candidates[0].evidence)} relative(s) but "
            f"{len(request.relatives)} --relative were given: give the same relatives as the search"
        )
    _check_report_paths(args, args.output)
    write_case_report(reply, request, args, args.output)
    return 0


# status --------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    results: dict[str, dict] = {}
    for name, port in (("embedder", 50051), ("indexer", 50052), ("ranker", 50053)):
        address = _address(getattr(args, name), f"KINSHIP_{name.upper()}_ADDRESS", port)
        with sync_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = f"UNREACHABLE ({exc.code().name})"
            results[name] = {"address": address, "status": status}
            if name == "ranker" and not status.startswith("UNREACHABLE"):
                try:
                    described = ranker_pb2_grpc.KinshipRankerStub(channel).DescribeScoring(
                        ranker_pb2.DescribeScoringRequest(), timeout=3.0
                    )
                    results[name]["scoring"] = json.loads(to_json(described))
                except grpc.RpcError as exc:
                    results[name]["scoring_error"] = f"{exc.code().name}: {exc.details()}"
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, info in results.items():
            print(f"{name:<9} {info['address']:<22} {info['status']}")
        print("\n".join(scoring_status_lines(results["ranker"])))
    return 0 if all(info["status"] == "SERVING" for info in results.values()) else 1


def scoring_status_lines(ranker: dict) -> list[str]:
    """How the ranker scores, from `status`'s ranker entry (DescribeScoring in its JSON mapping)."""
    if "scoring_error" in ranker:
        return [f"scoring   unknown ({ranker['scoring_error']})"]
    if "scoring" not in ranker:
        return []
    described = json_format.ParseDict(ranker["scoring"], ranker_pb2.DescribeScoringResponse())
    lines = [f"scoring   {describe_scoring(described.scoring)}"]
    for cal in described.calibrations:
        lines.append(
            f"          {cal.name:<16} {cal.kin_pairs} kin / {cal.non_kin_pairs} non-kin pairs, "
            f"|log10 LR| <= {cal.max_abs_log10_lr:g}: {cal.fitted_on}"
        )
    if described.scoring.calibrated:
        shipped = " (shipped with kinship-search)" if described.artifact_shipped else ""
        lines.append(f"          artifact  {described.scoring.artifact_id}{shipped}")
        if described.artifact_training_data:
            lines.append(f"          trained on {described.artifact_training_data}")
        lines.append(f"          licence   {described.artifact_licence or 'not stated by the artifact'}")
    if described.artifact_metrics:
        metrics = ", ".join(f"{k} {v:.3g}" for k, v in sorted(described.artifact_metrics.items()))
        lines.append(f"          held-out metrics: {metrics}")
    return lines
