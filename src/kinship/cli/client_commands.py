"""Client commands: `kinship embed`, `enroll`, `find`, `compare`, `status`.

Each prints a readable summary by default; `--json` prints the response in
protobuf's JSON mapping with the field names of the .proto files, for programs.
A ranked candidate is a lead for a person to verify, never an identification: the
readable output of `find` and `compare` says so every time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship import software_version
from kinship.ranker.domain.verbal import verbal_scale
from kinship.runtime.clients import sync_channel
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)

from . import security_commands

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
RELATIONS = {
    "father": common_pb2.RELATION_FATHER,
    "mother": common_pb2.RELATION_MOTHER,
    "brother": common_pb2.RELATION_BROTHER,
    "sister": common_pb2.RELATION_SISTER,
    "sibling": common_pb2.RELATION_SIBLING,
    "grandfather": common_pb2.RELATION_GRANDFATHER,
    "grandmother": common_pb2.RELATION_GRANDMOTHER,
    "self": common_pb2.RELATION_SELF,
}
SEXES = {
    "f": common_pb2.SEX_FEMALE,
    "female": common_pb2.SEX_FEMALE,
    "m": common_pb2.SEX_MALE,
    "male": common_pb2.SEX_MALE,
}
UPSERT_BATCH = 256
CALL_TIMEOUT = 120.0
LEAD_NOTICE = "A candidate is a lead for a person to verify, never an identification."
RELATIVE_SYNTAX = "RELATION[@WHEN][:LABEL]=IMAGE[,IMAGE...]"
RELATIVE_HELP = (
    "a relative and their photos; RELATION is father, mother, brother, sister, sibling (sex unknown), "
    "grandfather, grandmother or self (an earlier photo of the missing person); @WHEN is the age at the photos (self@6=kid.jpg) or the year "
    "they were taken (self@1998=kid.jpg); :LABEL names the relative in the output (sister:anna=a.jpg)"
)


class CommandError(Exception):
    """A problem to report to the person at the terminal, then exit 1."""


def _address(flag_value: str | None, env: str, port: int) -> str:
    return flag_value or os.environ.get(env) or f"127.0.0.1:{port}"


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = subparsers.add_parser("embed", help="detect and embed the faces of one image")
    embed.add_argument("image", type=Path, help="a JPEG or PNG file")
    embed.add_argument("--model-id", default="", help="embedding model (default: the embedder's default)")
    embed.add_argument("--max-faces", type=int, default=0, help="keep at most this many faces (0: all)")
    _add_common(embed, "embedder")
    embed.set_defaults(func=cmd_embed)

    enroll = subparsers.add_parser(
        "enroll",
        help="enrol images into the gallery",
        description=(
            "Enrol face images. Each image gives one record (its most prominent face). Person ids: "
            "--person-id for all images; otherwise images in a folder's sub-folders belong to the person "
            "named by the sub-folder, and loose images to the person named by the file's stem. "
            "A --manifest CSV (columns path,person_id[,birth_year,sex,region,source]) sets both per image."
        ),
    )
    enroll.add_argument("paths", nargs="*", type=Path, help="image files or folders of images")
    enroll.add_argument("--manifest", type=Path, help="CSV: path,person_id[,birth_year,sex,region,source]")
    enroll.add_argument("--person-id", help="person id for every image given")
    enroll.add_argument("--birth-year", type=int, help="birth year for every image given")
    enroll.add_argument("--sex", choices=sorted(SEXES), help="sex for every image given")
    enroll.add_argument("--region", default="", help="region for every image given")
    enroll.add_argument("--source", default="cli", help="source label for every image given [default cli]")
    enroll.add_argument("--model-id", default="", help="embedding model (default: the embedder's default)")
    enroll.add_argument("--indexer", help="indexer address [env KINSHIP_INDEXER_ADDRESS; default 127.0.0.1:50052]")
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
    find.add_argument("--top-n", type=int, default=10, help="how many candidates [default 10]")
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
    case.add_argument("--top-n", type=int, default=10, help="how many candidates were asked for [default 10]")
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


def _add_known_facts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sex", choices=sorted(SEXES), help="sex of the missing person, if known")
    parser.add_argument("--birth-year", type=int, help="birth year of the missing person, if known")
    parser.add_argument("--born-from", type=int, help="earliest possible birth year")
    parser.add_argument("--born-to", type=int, help="latest possible birth year")
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
    """Turns gRPC failures and CommandErrors into one clear line on stderr and exit code 1."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            security_commands.apply_client_flags(args)
            return func(args)
        except (CommandError, ValueError, OSError) as exc:
            print(f"kinship {args.command}: {exc}", file=sys.stderr)
            return 1
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "ERROR"
            hint = " (is `kinship serve all` running?)" if code == "UNAVAILABLE" else ""
            print(f"kinship {args.command}: {code}: {exc.details()}{hint}", file=sys.stderr)
            return 1

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
    with sync_channel(_address(args.embedder, "KINSHIP_EMBEDDER_ADDRESS", 50051)) as channel:
        reply = embedder_pb2_grpc.EmbedderStub(channel).Embed(
            embedder_pb2.EmbedRequest(image=image, model_id=args.model_id, max_faces=args.max_faces),
            timeout=CALL_TIMEOUT,
        )
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


def most_prominent(faces) -> int:
    """Index of the face with the largest box area x detection score (the photo's subject)."""

    def weight(face) -> float:
        b = face.box
        return max(0.0, b.x_max - b.x_min) * max(0.0, b.y_max - b.y_min) * face.detection_score

    return max(range(len(faces)), key=lambda i: weight(faces[i]))


# enroll --------------------------------------------------------------------------


@dataclass
class EnrolItem:
    path: Path
    person_id: str
    attributes: common_pb2.PersonAttributes = field(default_factory=common_pb2.PersonAttributes)


def _attributes(birth_year: int | None, sex: str | None, region: str, source: str) -> common_pb2.PersonAttributes:
    attrs = common_pb2.PersonAttributes(region=region or "", source=source or "")
    if birth_year is not None:
        attrs.birth_year = birth_year
    if sex:
        attrs.sex = SEXES[sex.lower()]
    return attrs


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def collect_items(args: argparse.Namespace) -> list[EnrolItem]:
    """Expands paths and the manifest into (image, person id, attributes) items."""
    defaults = _attributes(args.birth_year, args.sex, args.region, args.source)
    items: list[EnrolItem] = []
    for path in args.paths:
        if path.is_dir():
            found = [(img, args.person_id or img.stem) for img in _images_in(path)]
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                found += [(img, args.person_id or sub.name) for img in _images_in(sub)]
            if not found:
                raise CommandError(f"{path} holds no .jpg, .jpeg or .png images")
            items += [EnrolItem(img, pid, _copy(defaults)) for img, pid in found]
        elif path.is_file():
            items.append(EnrolItem(path, args.person_id or path.stem, _copy(defaults)))
        else:
            raise CommandError(f"{path} does not exist")
    if args.manifest:
        items += _manifest_items(args.manifest, defaults)
    if not items:
        raise CommandError("nothing to enrol: give image files, folders or --manifest")
    return items


def _copy(attrs: common_pb2.PersonAttributes) -> common_pb2.PersonAttributes:
    out = common_pb2.PersonAttributes()
    out.CopyFrom(attrs)
    return out


def _manifest_items(manifest: Path, defaults: common_pb2.PersonAttributes) -> list[EnrolItem]:
    try:
        text = manifest.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from exc
    rows = list(csv.DictReader(text.splitlines()))
    missing = {"path", "person_id"} - set(rows[0].keys() if rows else [])
    if missing:
        raise CommandError(
            f"manifest {manifest} needs the columns path and person_id (missing: {', '.join(sorted(missing))})"
        )
    items = []
    for line, row in enumerate(rows, start=2):
        try:
            year = int(row["birth_year"]) if row.get("birth_year") else None
        except ValueError as exc:
            raise CommandError(
                f"manifest {manifest} line {line}: birth_year {row['birth_year']!r} is not a year"
            ) from exc
        sex = (row.get("sex") or "").strip().lower() or None
        if sex and sex not in SEXES:
            raise CommandError(f"manifest {manifest} line {line}: sex must be f or m, got {row['sex']!r}")
        attrs = _copy(defaults)
        attrs.MergeFrom(_attributes(year, sex, row.get("region") or "", row.get("source") or ""))
        items.append(EnrolItem((manifest.parent / row["path"]).resolve(), row["person_id"], attrs))
    return items


def _batches(seq: list, size: int) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


@_run
def cmd_enroll(args: argparse.Namespace) -> int:
    items = collect_items(args)
    embedder_address = _address(args.embedder, "KINSHIP_EMBEDDER_ADDRESS", 50051)
    indexer_address = _address(args.indexer, "KINSHIP_INDEXER_ADDRESS", 50052)
    report = enrol(
        items, embedder_address, indexer_address, model_id=args.model_id, progress=not args.json, tenant=args.tenant
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"enrolled {len(report['enrolled'])} of {len(items)} image(s) into {report['collection'] or '-'} (model {report['model_id'] or '-'})"
        )
        if report["kinship_model_id"]:
            print(
                f"  with their kinship vectors in {report['kinship_collection'] or '-'} (model {report['kinship_model_id']})"
            )
        else:
            print("  without kinship vectors: the embedder serves no kinship model for this model (kinship train)")
        for skipped in report["skipped"]:
            print(f"  skipped {skipped['path']}: {skipped['reason']}")
    return 0 if not report["skipped"] else 1


def kinship_model_for(models, model_id: str) -> tuple[str, str]:
    """(identity model, kinship model bound to it or "") from ListModels' entries; `model_id` "" = the default."""
    served = {m.model_id: m for m in models}
    if model_id:
        if model_id not in served:
            raise CommandError(f"the embedder does not serve model {model_id!r}; it serves {', '.join(sorted(served))}")
        identity = served[model_id]
    else:
        defaults = [m for m in models if m.is_default]
        if not defaults:
            raise CommandError("the embedder names no default model; give --model-id")
        identity = defaults[0]
    if identity.kind == embedder_pb2.MODEL_KIND_KINSHIP:
        raise CommandError(
            f"{identity.model_id} is a kinship model; enrol with the identity model it is bound to "
            f"({identity.bound_model_id}): its kinship vectors are stored beside the identity vectors"
        )
    kinship = [
        m.model_id
        for m in models
        if m.kind == embedder_pb2.MODEL_KIND_KINSHIP and m.bound_model_id == identity.model_id
    ]
    return identity.model_id, (kinship[0] if kinship else "")


def enrol(
    items: list[EnrolItem],
    embedder_address: str,
    indexer_address: str,
    *,
    model_id: str = "",
    progress: bool = True,
    tenant: str = "",
) -> dict:
    """`enrol_with` over channels to the embedder and indexer at these addresses."""
    with sync_channel(embedder_address) as emb_ch, sync_channel(indexer_address) as idx_ch:
        return enrol_with(
            items,
            embedder_pb2_grpc.EmbedderStub(emb_ch),
            indexer_pb2_grpc.IndexerStub(idx_ch),
            model_id=model_id,
            progress=progress,
            tenant=tenant,
        )


def enrol_with(
    items: list[EnrolItem], embedder, indexer, *, model_id: str = "", progress: bool = True, tenant: str = ""
) -> dict:
    """Embeds each item's image, keeps its most prominent face, and upserts in batches.

    When the embedder serves a kinship model bound to the identity model used (a
    trained artifact), every face is embedded with both in one call and stored twice
    under the same record id: its identity vector in the identity model's collection
    and its kinship vector in the kinship model's, so the ranker can search and score
    in both spaces. The record id is the person id plus a digest of the image bytes,
    so enrolling the same file again replaces its records instead of adding duplicates.
    `embedder` and `indexer` are kinship.v1 Embedder and Indexer stubs.
    """
    enrolled: list[dict] = []
    skipped: list[dict] = []
    identity_model, kinship_model = kinship_model_for(
        embedder.ListModels(embedder_pb2.ListModelsRequest(), timeout=CALL_TIMEOUT).models, model_id
    )
    pending: dict[str, list[indexer_pb2.GalleryRecord]] = {identity_model: [], kinship_model: []}
    collections = {identity_model: "", kinship_model: ""}
    additional = [kinship_model] if kinship_model else []

    def flush() -> None:
        for model, records in pending.items():
            if records:
                request = indexer_pb2.UpsertRequest(model_id=model, records=records, tenant=tenant)
                reply = indexer.Upsert(request, timeout=CALL_TIMEOUT)
                collections[model] = reply.collection
                records.clear()

    for n, item in enumerate(items, start=1):
        image = _read_image(item.path)
        try:
            reply = embedder.Embed(
                embedder_pb2.EmbedRequest(image=image, model_id=identity_model, additional_model_ids=additional),
                timeout=CALL_TIMEOUT,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            skipped.append({"path": str(item.path), "reason": exc.details()})
            continue
        if not reply.faces:
            skipped.append({"path": str(item.path), "reason": "no face found"})
            continue
        if reply.model_id != identity_model:
            raise CommandError(f"the embedder answered with model {reply.model_id}, not {identity_model} as asked")
        face = reply.faces[most_prominent(reply.faces)]
        record_id = f"{item.person_id}:{hashlib.sha256(image).hexdigest()[:16]}"
        pending[identity_model].append(
            indexer_pb2.GalleryRecord(
                record_id=record_id, person_id=item.person_id, embedding=face.embedding, attributes=item.attributes
            )
        )
        if kinship_model:
            vectors = [e.values for e in face.additional_embeddings if e.model_id == kinship_model]
            if not vectors:
                raise CommandError(f"the embedder returned no {kinship_model} vector for {item.path}")
            pending[kinship_model].append(
                indexer_pb2.GalleryRecord(
                    record_id=record_id, person_id=item.person_id, embedding=vectors[0], attributes=item.attributes
                )
            )
        enrolled.append({"path": str(item.path), "person_id": item.person_id, "record_id": record_id})
        if len(pending[identity_model]) >= UPSERT_BATCH:
            flush()
        if progress and (n % 25 == 0 or n == len(items)):
            print(f"  embedded {n}/{len(items)} image(s)", file=sys.stderr, flush=True)
    flush()
    return {
        "model_id": identity_model,
        "collection": collections[identity_model],
        "kinship_model_id": kinship_model,
        "kinship_collection": collections[kinship_model] if kinship_model else "",
        "enrolled": enrolled,
        "skipped": skipped,
    }


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
            raise CommandError(f"--relative {text!r}: the year the photo was taken must be 1900 to this year")
        return {"capture_year": year}
    if math.isfinite(value) and 0 <= value <= 130:
        return {"age_at_photo": value}
    raise CommandError(
        f"--relative {text!r}: after @ write the age at the photo (self@6=kid.jpg) or the year it was taken "
        "(self@1998=kid.jpg)"
    )


def parse_relative(text: str, index: int) -> ranker_pb2.Relative:
    """`father=dad.jpg`, `sister:anna=a1.jpg,a2.jpg`, `self@6=kid.jpg` -> a Relative with its photos."""
    head, sep, paths = text.partition("=")
    if not sep or not paths:
        raise CommandError(f"--relative {text!r}: write RELATION=IMAGE, for example father=dad.jpg")
    relation_part, _, label = head.partition(":")
    if "@" in label:
        raise CommandError(
            f"--relative {text!r}: the photo date goes before the label: RELATION[@WHEN][:LABEL]=IMAGE, "
            f"for example father@1990:dad=x.jpg"
        )
    relation_name, at, when = relation_part.partition("@")
    relation = RELATIONS.get(relation_name.strip().lower())
    if relation is None:
        raise CommandError(f"--relative {text!r}: relation must be one of {', '.join(RELATIONS)}")
    dates = _when(text, when.strip()) if at else {}
    photos = [ranker_pb2.Photo(image=_read_image(Path(p.strip())), **dates) for p in paths.split(",") if p.strip()]
    if not photos:
        raise CommandError(f"--relative {text!r}: no image after '='")
    return ranker_pb2.Relative(label=label.strip(), relation=relation, photos=photos)


def missing_person(args: argparse.Namespace) -> ranker_pb2.MissingPerson:
    missing = ranker_pb2.MissingPerson(regions=args.region)
    if args.sex:
        missing.sex = SEXES[args.sex]
    low, high = args.born_from, args.born_to
    if args.birth_year is not None:
        low = high = args.birth_year
    if low is not None:
        missing.birth_year.min = low
    if high is not None:
        missing.birth_year.max = high
    return missing


def build_find_request(args: argparse.Namespace) -> ranker_pb2.FindRelativesRequest:
    relatives = [parse_relative(text, i) for i, text in enumerate(args.relative)]
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
        relatives=[parse_relative(text, i) for i, text in enumerate(args.relative)],
        missing_person=missing_person(args),
        model_id=args.model_id,
        prior_probability=args.prior,
        tenant=args.tenant,
    )
    if args.candidate_person:
        if args.candidate_sex:
            raise CommandError("--candidate-sex is for --candidate photos; a gallery person's sex is on record")
        request.candidate_person_id = args.candidate_person
    else:
        paths = [p.strip() for p in args.candidate.split(",") if p.strip()]
        if not paths:
            raise CommandError("--candidate: give one or more images, comma-separated")
        request.candidate_photos.photos.extend(ranker_pb2.Photo(image=_read_image(Path(p))) for p in paths)
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
    return lines


def find_lines(reply: ranker_pb2.FindRelativesResponse) -> list[str]:
    calibrated = reply.scoring.calibrated
    lines = [
        f"{len(reply.candidates)} candidate(s) of {reply.candidates_considered} considered; model {reply.model_id}",
        f"scoring: {describe_scoring(reply.scoring)}",
        f"fusion: {reply.fusion_method}",
    ]
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
    with sync_channel(_address(args.ranker, "KINSHIP_RANKER_ADDRESS", 50053)) as channel:
        reply = ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(request, timeout=CALL_TIMEOUT)
    if args.report or args.pdf:
        write_case_report(reply, request, args, args.report)
    if args.json:
        print(to_json(reply))
        return 0
    print("\n".join(find_lines(reply)))
    return 0


@_run
def cmd_compare(args: argparse.Namespace) -> int:
    request = build_compare_request(args)
    with sync_channel(_address(args.ranker, "KINSHIP_RANKER_ADDRESS", 50053)) as channel:
        reply = ranker_pb2_grpc.KinshipRankerStub(channel).CompareKinship(request, timeout=CALL_TIMEOUT)
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
        raise CommandError(PDF_NEEDS_CHROMIUM)


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
                    embedder_pb2.EmbedRequest(image=photo.image, model_id=request.model_id), timeout=CALL_TIMEOUT
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
    "--pdf needs a headless Chromium (chromium, chromium-browser or google-chrome on PATH; on Debian "
    "`apt-get install chromium`); write --report HTML instead"
)


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
        raise CommandError(PDF_NEEDS_CHROMIUM)
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
        raise CommandError(f"{browser} did not print {pdf_path} within 120 s") from exc
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CommandError(f"{browser} could not print {pdf_path} (exit {done.returncode}): {' | '.join(tail)}")


def write_case_report(
    reply: ranker_pb2.FindRelativesResponse,
    request: ranker_pb2.FindRelativesRequest,
    args: argparse.Namespace,
    output: Path | None,
) -> None:
    """Crops the relatives' faces through the embedder, renders the report, writes HTML and/or PDF."""
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
            print_pdf(source, args.pdf)
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
        raise CommandError("give --output case.html and/or --pdf case.pdf")
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
