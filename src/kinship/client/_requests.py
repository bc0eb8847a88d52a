"""Requests from the clients' typed arguments, and the status answer: shared by sync and asyncio."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import json_format
from grpc_health.v1 import health_pb2

from kinship.family_vectors import FAMILY_MODEL_PREFIX
from kinship.v1 import common_pb2, embedder_pb2, indexer_pb2, ranker_pb2

from . import enrolment
from .types import (
    Facts,
    GalleryPerson,
    ImageLike,
    PersonRecord,
    Photo,
    Relative,
    missing_person,
    read_image,
    sex_value,
)

EMBED = "/kinship.v1.Embedder/Embed"
EMBED_BATCH = "/kinship.v1.Embedder/EmbedBatch"
LIST_MODELS = "/kinship.v1.Embedder/ListModels"
GET_RECORDS = "/kinship.v1.Indexer/GetRecords"
DELETE = "/kinship.v1.Indexer/Delete"
LIST_COLLECTIONS = "/kinship.v1.Indexer/ListCollections"
STATS = "/kinship.v1.Indexer/Stats"
UPSERT = "/kinship.v1.Indexer/Upsert"
SEARCH = "/kinship.v1.Indexer/Search"
FIND = "/kinship.v1.KinshipRanker/FindRelatives"
COMPARE = "/kinship.v1.KinshipRanker/CompareKinship"
DESCRIBE = "/kinship.v1.KinshipRanker/DescribeScoring"
HEALTH = "/grpc.health.v1.Health/Check"

#: Which stub answers each method, and its attribute there.
SERVICE_OF = {
    EMBED: "embedder",
    EMBED_BATCH: "embedder",
    LIST_MODELS: "embedder",
    GET_RECORDS: "indexer",
    DELETE: "indexer",
    LIST_COLLECTIONS: "indexer",
    STATS: "indexer",
    UPSERT: "indexer",
    SEARCH: "indexer",
    FIND: "ranker",
    COMPARE: "ranker",
    DESCRIBE: "ranker",
}


def embed_request(
    image: ImageLike, model_id: str, max_faces: int, additional_model_ids: Sequence[str], pre_aligned: bool = False
) -> embedder_pb2.EmbedRequest:
    return embedder_pb2.EmbedRequest(
        image=read_image(image),
        model_id=model_id,
        max_faces=max_faces,
        additional_model_ids=list(additional_model_ids),
        pre_aligned=pre_aligned,
    )


def _relatives(relatives: Sequence[Relative | ranker_pb2.Relative]) -> list[ranker_pb2.Relative]:
    if not relatives:
        raise ValueError("give at least one relative, e.g. Relative('father', ['dad.jpg'])")
    return [r if isinstance(r, ranker_pb2.Relative) else r.to_proto() for r in relatives]


def find_request(
    relatives, *, sex, birth_year, regions, top_n, prior, model_id, tenant
) -> ranker_pb2.FindRelativesRequest:
    return ranker_pb2.FindRelativesRequest(
        relatives=_relatives(relatives),
        missing_person=missing_person(sex, birth_year, regions),
        top_n=top_n,
        model_id=model_id,
        prior_probability=prior,
        tenant=tenant,
    )


def compare_request(
    relatives,
    *,
    candidate_photos: Sequence[ImageLike | Photo] | None,
    candidate_sex,
    candidate_person_id: str | None,
    sex,
    birth_year,
    regions,
    prior,
    model_id,
    tenant,
) -> ranker_pb2.CompareKinshipRequest:
    request = ranker_pb2.CompareKinshipRequest(
        relatives=_relatives(relatives),
        missing_person=missing_person(sex, birth_year, regions),
        model_id=model_id,
        prior_probability=prior,
        tenant=tenant,
    )
    if (candidate_photos is None) == (candidate_person_id is None):
        raise ValueError("give the candidate as candidate_photos=[...] or candidate_person_id='...', one of the two")
    if candidate_person_id is not None:
        if candidate_sex is not None:
            raise ValueError("candidate_sex is for candidate_photos; a gallery person's sex is on record")
        request.candidate_person_id = candidate_person_id
    else:
        photos = [
            p.to_proto() if isinstance(p, Photo) else ranker_pb2.Photo(image=read_image(p)) for p in candidate_photos
        ]
        if not photos:
            raise ValueError("candidate_photos is empty: give one or more images of the candidate")
        request.candidate_photos.photos.extend(photos)
        request.candidate_photos.sex = sex_value(candidate_sex)
    return request


def records_request(person_ids: Sequence[str], model_id: str, tenant: str) -> indexer_pb2.GetRecordsRequest:
    if isinstance(person_ids, str):
        person_ids = [person_ids]
    if not person_ids:
        raise ValueError("give one or more person ids")
    return indexer_pb2.GetRecordsRequest(
        model_id=model_id, person_ids=list(person_ids), tenant=tenant, consistency=indexer_pb2.READ_CONSISTENCY_STRONG
    )


#: People per GetRecords page when listing a gallery.
PEOPLE_PAGE = 500


def person_list(person_ids: Sequence[str] | str | None) -> list[str]:
    """None: every person; else the ids given (at least one, without repeats)."""
    if person_ids is None:
        return []
    ids = [person_ids] if isinstance(person_ids, str) else list(person_ids)
    if not ids:
        raise ValueError("give one or more person ids, or None for every person")
    return list(dict.fromkeys(ids))


def people_requests(
    model_id: str, person_ids: list[str], tenant: str, page_token: str
) -> indexer_pb2.GetRecordsRequest:
    """The GetRecords call of a listing: one page of every person, or these people, without vectors."""
    request = indexer_pb2.GetRecordsRequest(
        model_id=model_id, tenant=tenant, consistency=indexer_pb2.READ_CONSISTENCY_STRONG, omit_embeddings=True
    )
    if person_ids:
        request.person_ids.extend(person_ids)
    else:
        request.all_people, request.page_size, request.page_token = True, PEOPLE_PAGE, page_token
    return request


def listed_models(stats: indexer_pb2.StatsResponse) -> list[str]:
    """The models whose collections hold records of the tenant, identity models first."""
    held = [c.collection.model_id for c in stats.collections if c.tenant_record_count > 0]
    return sorted(held, key=lambda m: (m.startswith(FAMILY_MODEL_PREFIX), m.startswith("kinship-"), m))


def people_of(records_by_model: dict[str, list[indexer_pb2.GalleryRecord]], tenant: str) -> list[GalleryPerson]:
    """Records read from each model's collection -> people, each record with the models holding it."""
    found: dict[str, dict[str, tuple[indexer_pb2.GalleryRecord, list[str]]]] = {}
    for model, records in records_by_model.items():
        for record in records:
            mine = found.setdefault(record.person_id, {})
            if record.record_id in mine:
                mine[record.record_id][1].append(model)
            else:
                mine[record.record_id] = (record, [model])
    people = []
    for person_id in sorted(found):
        records = []
        for record_id in sorted(found[person_id]):
            record, models = found[person_id][record_id]
            enrolled = record.enrolled_at.ToDatetime(tzinfo=datetime.UTC) if record.HasField("enrolled_at") else None
            records.append(PersonRecord(record_id, Facts.from_proto(record.attributes), enrolled, tuple(models)))
        models = tuple(dict.fromkeys(m for r in records for m in r.models))
        people.append(GalleryPerson(person_id, tuple(records), models, tenant))
    return people


def delete_request(person_ids, record_ids, model_id, await_compaction, tenant) -> indexer_pb2.DeleteRequest:
    person_ids = [person_ids] if isinstance(person_ids, str) else list(person_ids)
    record_ids = [record_ids] if isinstance(record_ids, str) else list(record_ids)
    if not person_ids and not record_ids:
        raise ValueError("give person_ids or record_ids to delete")
    return indexer_pb2.DeleteRequest(
        model_id=model_id,
        person_ids=person_ids,
        record_ids=record_ids,
        tenant=tenant,
        await_compaction=await_compaction,
    )


def default_identity_model(models: Sequence[embedder_pb2.ModelInfo]) -> str:
    return enrolment.choose_models(models, "")[0]


def enrol_items(
    source,
    *,
    person_id: str | None,
    manifest: str | Path | None,
    facts: Facts | common_pb2.PersonAttributes | None,
) -> list[enrolment.EnrolItem]:
    """What `enroll` was given -> items: EnrolItems as they are, or files and folders, and a manifest."""
    defaults = facts.to_proto() if isinstance(facts, Facts) else (facts or common_pb2.PersonAttributes())
    if isinstance(source, str | Path):
        source = [source]
    source = list(source or [])
    if all(isinstance(s, enrolment.EnrolItem) for s in source) and source:
        items = source
    else:
        items = enrolment.items_from_paths(source, person_id=person_id, defaults=defaults)
    if manifest is not None:
        items += enrolment.items_from_manifest(manifest, defaults)
    if not items:
        raise enrolment.EnrolError("nothing to enrol: give image files, folders or a manifest")
    return items


HEALTH_REQUEST = health_pb2.HealthCheckRequest()


def health_name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def to_json(message) -> str:
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=2
    )


def status_dict(status) -> dict:
    """`kinship status --json`'s shape: per service its address and status, the ranker's scoring."""
    out: dict[str, dict] = {}
    for name, service in status.services.items():
        out[name] = {"address": service.address, "status": service.status}
    if status.scoring is not None:
        out["ranker"]["scoring"] = json.loads(to_json(status.scoring))
    elif status.scoring_error:
        out["ranker"]["scoring_error"] = status.scoring_error
    return out
