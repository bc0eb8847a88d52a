"""Client commands: `kinship embed`, `enroll`, `find`, `status`.

Each prints a readable summary by default; `--json` prints the response in
protobuf's JSON mapping with the field names of the .proto files, for programs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
RELATIONS = {
    "father": common_pb2.RELATION_FATHER,
    "mother": common_pb2.RELATION_MOTHER,
    "sibling": common_pb2.RELATION_SIBLING,
    "brother": common_pb2.RELATION_SIBLING,
    "sister": common_pb2.RELATION_SIBLING,
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
    _add_common(enroll, "embedder")
    enroll.set_defaults(func=cmd_enroll)

    find = subparsers.add_parser(
        "find",
        help="find the likeliest relatives of a family in the gallery",
        description="Rank gallery people by how likely they are the missing person, given relatives' photos.",
    )
    find.add_argument(
        "--relative",
        action="append",
        required=True,
        metavar="RELATION[:LABEL]=IMAGE[,IMAGE...]",
        help="a relative and their photos; RELATION is father, mother, sibling (brother, sister) or self",
    )
    find.add_argument("--sex", choices=sorted(SEXES), help="sex of the missing person, if known")
    find.add_argument("--birth-year", type=int, help="birth year of the missing person, if known")
    find.add_argument("--born-from", type=int, help="earliest possible birth year")
    find.add_argument("--born-to", type=int, help="latest possible birth year")
    find.add_argument("--region", action="append", default=[], help="search only this region (repeatable)")
    find.add_argument("--top-n", type=int, default=10, help="how many candidates [default 10]")
    find.add_argument("--model-id", default="", help="embedding model (default: the embedder's default)")
    _add_common(find, "ranker")
    find.set_defaults(func=cmd_find)

    status = subparsers.add_parser("status", help="health of the three services")
    for name, port in (("embedder", 50051), ("indexer", 50052), ("ranker", 50053)):
        status.add_argument(
            f"--{name}", help=f"{name} address [env KINSHIP_{name.upper()}_ADDRESS; default 127.0.0.1:{port}]"
        )
    status.add_argument("--json", action="store_true", help="print JSON for programs")
    status.set_defaults(func=cmd_status)


def _add_common(parser: argparse.ArgumentParser, service: str) -> None:
    port = {"embedder": 50051, "indexer": 50052, "ranker": 50053}[service]
    parser.add_argument(
        f"--{service}", help=f"{service} address [env KINSHIP_{service.upper()}_ADDRESS; default 127.0.0.1:{port}]"
    )
    parser.add_argument("--json", action="store_true", help="print the response as JSON (protobuf JSON mapping)")


def _run(func):
    """Turns gRPC failures and CommandErrors into one clear line on stderr and exit code 1."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CommandError as exc:
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
    report = enrol(items, embedder_address, indexer_address, model_id=args.model_id, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"enrolled {len(report['enrolled'])} of {len(items)} image(s) into {report['collection'] or '-'} (model {report['model_id'] or '-'})"
        )
        for skipped in report["skipped"]:
            print(f"  skipped {skipped['path']}: {skipped['reason']}")
    return 0 if not report["skipped"] else 1


def enrol(
    items: list[EnrolItem], embedder_address: str, indexer_address: str, *, model_id: str = "", progress: bool = True
) -> dict:
    """Embeds each item's image, keeps its most prominent face, and upserts in batches.

    The record id is the person id plus a digest of the image bytes, so enrolling the
    same file again replaces its record instead of adding a duplicate.
    """
    enrolled: list[dict] = []
    skipped: list[dict] = []
    pending: list[indexer_pb2.GalleryRecord] = []
    collection = ""
    used_model = model_id
    with sync_channel(embedder_address) as emb_ch, sync_channel(indexer_address) as idx_ch:
        embedder = embedder_pb2_grpc.EmbedderStub(emb_ch)
        indexer = indexer_pb2_grpc.IndexerStub(idx_ch)

        def flush() -> None:
            nonlocal collection
            if pending:
                reply = indexer.Upsert(
                    indexer_pb2.UpsertRequest(model_id=used_model, records=pending), timeout=CALL_TIMEOUT
                )
                collection = reply.collection
                pending.clear()

        for n, item in enumerate(items, start=1):
            image = _read_image(item.path)
            try:
                reply = embedder.Embed(embedder_pb2.EmbedRequest(image=image, model_id=model_id), timeout=CALL_TIMEOUT)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                skipped.append({"path": str(item.path), "reason": exc.details()})
                continue
            if not reply.faces:
                skipped.append({"path": str(item.path), "reason": "no face found"})
                continue
            if used_model and reply.model_id != used_model:
                flush()
            used_model = reply.model_id
            face = reply.faces[most_prominent(reply.faces)]
            record_id = f"{item.person_id}:{hashlib.sha256(image).hexdigest()[:16]}"
            pending.append(
                indexer_pb2.GalleryRecord(
                    record_id=record_id, person_id=item.person_id, embedding=face.embedding, attributes=item.attributes
                )
            )
            enrolled.append({"path": str(item.path), "person_id": item.person_id, "record_id": record_id})
            if len(pending) >= UPSERT_BATCH:
                flush()
            if progress and (n % 25 == 0 or n == len(items)):
                print(f"  embedded {n}/{len(items)} image(s)", file=sys.stderr, flush=True)
        flush()
    return {"model_id": used_model, "collection": collection, "enrolled": enrolled, "skipped": skipped}


# find ----------------------------------------------------------------------------


def parse_relative(text: str, index: int) -> ranker_pb2.Relative:
    """`father=dad.jpg`, `sibling:anna=a1.jpg,a2.jpg` -> a Relative with its photos."""
    head, sep, paths = text.partition("=")
    if not sep or not paths:
        raise CommandError(f"--relative {text!r}: write RELATION=IMAGE, for example father=dad.jpg")
    relation_name, _, label = head.partition(":")
    relation = RELATIONS.get(relation_name.strip().lower())
    if relation is None:
        raise CommandError(f"--relative {text!r}: relation must be one of {', '.join(RELATIONS)}")
    photos = [ranker_pb2.Photo(image=_read_image(Path(p.strip()))) for p in paths.split(",") if p.strip()]
    return ranker_pb2.Relative(label=label.strip(), relation=relation, photos=photos)


def build_find_request(args: argparse.Namespace) -> ranker_pb2.FindRelativesRequest:
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
    relatives = [parse_relative(text, i) for i, text in enumerate(args.relative)]
    return ranker_pb2.FindRelativesRequest(
        relatives=relatives, missing_person=missing, top_n=args.top_n, model_id=args.model_id
    )


@_run
def cmd_find(args: argparse.Namespace) -> int:
    request = build_find_request(args)
    with sync_channel(_address(args.ranker, "KINSHIP_RANKER_ADDRESS", 50053)) as channel:
        reply = ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(request, timeout=CALL_TIMEOUT)
    if args.json:
        print(to_json(reply))
        return 0
    print(f"{len(reply.candidates)} candidate(s) of {reply.candidates_considered} considered; model {reply.model_id}")
    print(f"score: {reply.fusion_method}")
    for cand in reply.candidates:
        evidence = "  ".join(f"{e.label} {e.similarity:+.3f}{'' if e.retrieved else '*'}" for e in cand.evidence)
        attrs = cand.attributes
        facts = []
        if attrs.HasField("birth_year"):
            facts.append(f"born {attrs.birth_year}")
        if attrs.sex:
            facts.append(common_pb2.Sex.Name(attrs.sex).removeprefix("SEX_").lower())
        if attrs.region:
            facts.append(attrs.region)
        print(f"{cand.rank:>3}. {cand.person_id:<24} score {cand.score:+.3f}  [{evidence}]  {' '.join(facts)}")
    if any(not e.retrieved for c in reply.candidates for e in c.evidence):
        print("(* similarity computed for fusion; that relative's own search did not retrieve the candidate)")
    return 0


# status --------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    results = {}
    for name, port in (("embedder", 50051), ("indexer", 50052), ("ranker", 50053)):
        address = _address(getattr(args, name), f"KINSHIP_{name.upper()}_ADDRESS", port)
        with sync_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = f"UNREACHABLE ({exc.code().name})"
        results[name] = {"address": address, "status": status}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, info in results.items():
            print(f"{name:<9} {info['address']:<22} {info['status']}")
    return 0 if all(info["status"] == "SERVING" for info in results.values()) else 1
