"""What the client takes and returns: small dataclasses over the kinship.v1 messages.

Every result keeps the message it was read from as `.proto`, for fields not lifted here
and for protobuf's JSON mapping (`google.protobuf.json_format.MessageToJson(result.proto)`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kinship.domain.faces import most_prominent as choose_face
from kinship.domain.faces import prominence
from kinship.v1 import common_pb2, embedder_pb2, indexer_pb2, ranker_pb2

RELATIONS: dict[str, int] = {
    "father": common_pb2.RELATION_FATHER,
    "mother": common_pb2.RELATION_MOTHER,
    "brother": common_pb2.RELATION_BROTHER,
    "sister": common_pb2.RELATION_SISTER,
    "sibling": common_pb2.RELATION_SIBLING,
    "grandfather": common_pb2.RELATION_GRANDFATHER,
    "grandmother": common_pb2.RELATION_GRANDMOTHER,
    "self": common_pb2.RELATION_SELF,
}
SEXES: dict[str, int] = {
    "f": common_pb2.SEX_FEMALE,
    "female": common_pb2.SEX_FEMALE,
    "m": common_pb2.SEX_MALE,
    "male": common_pb2.SEX_MALE,
}

ImageLike = bytes | str | Path


def read_image(image: ImageLike) -> bytes:
    """Bytes as given, or a file's bytes; OSError names the file."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    path = Path(image)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc


def sex_value(sex: str | int | None) -> int:
    """'f'/'female'/'m'/'male' or a kinship.v1.Sex value -> the enum value (0: not known)."""
    if sex is None or sex == "":
        return common_pb2.SEX_UNSPECIFIED
    if isinstance(sex, int):
        if sex not in common_pb2.Sex.values():
            raise ValueError(f"sex {sex} is not a kinship.v1.Sex value")
        return sex
    value = SEXES.get(sex.strip().lower())
    if value is None:
        raise ValueError(f"sex must be one of {', '.join(sorted(SEXES))}, got {sex!r}")
    return value


def sex_name(value: int) -> str | None:
    return {common_pb2.SEX_FEMALE: "female", common_pb2.SEX_MALE: "male"}.get(value)


def relation_name(value: int) -> str:
    return common_pb2.Relation.Name(value).removeprefix("RELATION_").lower()


# --- what a call takes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the gallery records of a person beside the face (all optional)."""

    birth_year: int | None = None
    sex: str | None = None
    region: str = ""
    source: str = ""

    def to_proto(self) -> common_pb2.PersonAttributes:
        attrs = common_pb2.PersonAttributes(sex=sex_value(self.sex), region=self.region, source=self.source)
        if self.birth_year is not None:
            attrs.birth_year = self.birth_year
        return attrs

    @classmethod
    def from_proto(cls, attrs: common_pb2.PersonAttributes) -> Facts:
        return cls(
            birth_year=attrs.birth_year if attrs.HasField("birth_year") else None,
            sex=sex_name(attrs.sex),
            region=attrs.region,
            source=attrs.source,
        )


@dataclass(frozen=True)
class Photo:
    """A photo of a relative: image bytes or a file, and when it was taken where known."""

    image: ImageLike
    age_at_photo: float | None = None
    capture_year: int | None = None
    #: The image is one face crop already aligned to the 112x112 template (no detection runs).
    pre_aligned: bool = False

    def to_proto(self) -> ranker_pb2.Photo:
        photo = ranker_pb2.Photo(image=read_image(self.image), pre_aligned=self.pre_aligned)
        if self.age_at_photo is not None:
            photo.age_at_photo = self.age_at_photo
        if self.capture_year is not None:
            photo.capture_year = self.capture_year
        return photo


@dataclass(frozen=True)
class Relative:
    """A relative of the missing person: `relation` is father, mother, brother, sister, sibling,
    grandfather, grandmother or self (an earlier photo of the missing person)."""

    relation: str | int
    photos: Sequence[ImageLike | Photo]
    label: str = ""
    person_id: str = ""

    def to_proto(self) -> ranker_pb2.Relative:
        if isinstance(self.relation, int):
            relation = self.relation
        else:
            relation = RELATIONS.get(self.relation.strip().lower(), -1)
            if relation < 0:
                raise ValueError(f"relation must be one of {', '.join(RELATIONS)}, got {self.relation!r}")
        if isinstance(self.photos, str | bytes | Path):
            raise ValueError("photos is a list of images: write photos=[image], not photos=image")
        photos = [p.to_proto() if isinstance(p, Photo) else ranker_pb2.Photo(image=read_image(p)) for p in self.photos]
        return ranker_pb2.Relative(label=self.label, relation=relation, photos=photos, person_id=self.person_id)


def missing_person(
    sex: str | int | None = None,
    birth_year: int | tuple[int | None, int | None] | None = None,
    regions: Sequence[str] = (),
) -> ranker_pb2.MissingPerson:
    """What is known of the missing person: a birth year, or a (earliest, latest) range."""
    missing = ranker_pb2.MissingPerson(sex=sex_value(sex), regions=list(regions))
    low, high = (birth_year, birth_year) if isinstance(birth_year, int) else (birth_year or (None, None))
    if low is not None:
        missing.birth_year.min = low
    if high is not None:
        missing.birth_year.max = high
    return missing


# --- what a call returns --------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def area(self) -> float:
        return max(0.0, self.x_max - self.x_min) * max(0.0, self.y_max - self.y_min)


@dataclass(frozen=True)
class Face:
    box: Box
    detection_score: float
    quality: float
    embedding: tuple[float, ...]
    model_id: str
    #: model id -> vector, for EmbedRequest.additional_model_ids (e.g. the kinship model).
    additional: dict[str, tuple[float, ...]]
    proto: embedder_pb2.Face = field(repr=False)

    @classmethod
    def from_proto(cls, face: embedder_pb2.Face) -> Face:
        b = face.box
        return cls(
            box=Box(b.x_min, b.y_min, b.x_max, b.y_max),
            detection_score=face.detection_score,
            quality=face.quality,
            embedding=tuple(face.embedding),
            model_id=face.model_id,
            additional={e.model_id: tuple(e.values) for e in face.additional_embeddings},
            proto=face,
        )


def most_prominent(faces: Sequence[embedder_pb2.Face]) -> int:
    """Index of the photo's subject, by the suite's one face rule (kinship.domain.faces)."""

    def weight(i: int) -> float:
        b = faces[i].box
        return prominence(b.x_min, b.y_min, b.x_max, b.y_max, faces[i].detection_score)

    chosen = choose_face(range(len(faces)), weight)
    if chosen is None:
        raise ValueError("no faces to choose from")
    return chosen


@dataclass(frozen=True)
class EmbedResult:
    faces: list[Face]
    model_id: str
    dimension: int
    width: int
    height: int
    proto: embedder_pb2.EmbedResponse = field(repr=False)

    @classmethod
    def from_proto(cls, reply: embedder_pb2.EmbedResponse) -> EmbedResult:
        return cls(
            faces=[Face.from_proto(f) for f in reply.faces],
            model_id=reply.model_id,
            dimension=reply.dimension,
            width=reply.image_width,
            height=reply.image_height,
            proto=reply,
        )

    def subject(self) -> Face | None:
        """The most prominent face (largest box x detection score), or None without a face."""
        return self.faces[most_prominent(self.proto.faces)] if self.faces else None


@dataclass(frozen=True)
class Evidence:
    label: str
    relation: str
    similarity: float
    log10_lr: float
    fusion_weight: float
    calibration: str
    record_id: str
    photo_index: int
    retrieved: bool

    @classmethod
    def from_proto(cls, e: ranker_pb2.RelativeEvidence) -> Evidence:
        return cls(
            label=e.label,
            relation=relation_name(e.relation),
            similarity=e.similarity,
            log10_lr=e.log10_likelihood_ratio,
            fusion_weight=e.fusion_weight,
            calibration=e.calibration,
            record_id=e.record_id,
            photo_index=e.photo_index,
            retrieved=e.retrieved,
        )


@dataclass(frozen=True)
class Candidate:
    """A lead for a person to verify, never an identification."""

    person_id: str
    rank: int
    score: float
    log10_lr: float
    posterior: float
    strong: bool
    facts: Facts
    evidence: list[Evidence]
    proto: ranker_pb2.Candidate = field(repr=False)

    @classmethod
    def from_proto(cls, c: ranker_pb2.Candidate) -> Candidate:
        return cls(
            person_id=c.person_id,
            rank=c.rank,
            score=c.score,
            log10_lr=c.log10_likelihood_ratio,
            posterior=c.posterior_probability,
            strong=c.strong_candidate,
            facts=Facts.from_proto(c.attributes),
            evidence=[Evidence.from_proto(e) for e in c.evidence],
            proto=c,
        )


@dataclass(frozen=True)
class Scoring:
    calibrated: bool
    artifact_id: str
    calibration_id: str
    identity_model_id: str
    kinship_model_id: str
    prior: float
    strong_log10_lr: float
    fusion_method: str

    @classmethod
    def from_proto(cls, s: ranker_pb2.ScoringInfo) -> Scoring:
        return cls(
            calibrated=s.calibrated,
            artifact_id=s.artifact_id,
            calibration_id=s.calibration_id,
            identity_model_id=s.identity_model_id,
            kinship_model_id=s.kinship_model_id,
            prior=s.prior_probability,
            strong_log10_lr=s.strong_candidate_log10_lr,
            fusion_method=s.fusion_method,
        )


@dataclass(frozen=True)
class FindResult:
    candidates: list[Candidate]
    considered: int
    strong_count: int
    model_id: str
    scoring: Scoring
    proto: ranker_pb2.FindRelativesResponse = field(repr=False)

    @classmethod
    def from_proto(cls, reply: ranker_pb2.FindRelativesResponse) -> FindResult:
        return cls(
            candidates=[Candidate.from_proto(c) for c in reply.candidates],
            considered=reply.candidates_considered,
            strong_count=reply.strong_candidates,
            model_id=reply.model_id,
            scoring=Scoring.from_proto(reply.scoring),
            proto=reply,
        )


@dataclass(frozen=True)
class CompareResult:
    candidate: Candidate
    scoring: Scoring
    proto: ranker_pb2.CompareKinshipResponse = field(repr=False)

    @classmethod
    def from_proto(cls, reply: ranker_pb2.CompareKinshipResponse) -> CompareResult:
        return cls(Candidate.from_proto(reply.candidate), Scoring.from_proto(reply.scoring), reply)


@dataclass(frozen=True)
class Record:
    record_id: str
    person_id: str
    facts: Facts
    embedding: tuple[float, ...]
    enrolled_at: datetime.datetime | None
    tenant: str
    proto: indexer_pb2.GalleryRecord = field(repr=False)

    @classmethod
    def from_proto(cls, r: indexer_pb2.GalleryRecord) -> Record:
        enrolled = r.enrolled_at.ToDatetime(tzinfo=datetime.UTC) if r.HasField("enrolled_at") else None
        return cls(r.record_id, r.person_id, Facts.from_proto(r.attributes), tuple(r.embedding), enrolled, r.tenant, r)


@dataclass(frozen=True)
class PersonRecord:
    """One record of a gallery person, and the models whose collections hold it."""

    record_id: str
    facts: Facts
    enrolled_at: datetime.datetime | None
    models: tuple[str, ...]


@dataclass(frozen=True)
class GalleryPerson:
    """A person of the gallery: their records (each with its models), and every model holding one."""

    person_id: str
    records: tuple[PersonRecord, ...]
    models: tuple[str, ...]
    tenant: str = ""

    def to_dict(self) -> dict:
        """JSON-ready, as `kinship people --json` prints each person."""
        return {
            "person_id": self.person_id,
            "tenant": self.tenant,
            "models": list(self.models),
            "records": [
                {
                    "record_id": r.record_id,
                    "birth_year": r.facts.birth_year,
                    "sex": r.facts.sex,
                    "region": r.facts.region,
                    "source": r.facts.source,
                    "enrolled_at": r.enrolled_at.isoformat() if r.enrolled_at else None,
                    "models": list(r.models),
                }
                for r in self.records
            ],
        }


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    #: SERVING, NOT_SERVING, ... or UNREACHABLE (see `error`).
    status: str
    error: str = ""


@dataclass(frozen=True)
class Status:
    services: dict[str, ServiceStatus]
    #: The ranker's DescribeScoring answer; None when it could not be asked (see scoring_error).
    scoring: ranker_pb2.DescribeScoringResponse | None
    scoring_error: str = ""

    @property
    def serving(self) -> bool:
        return all(s.status == "SERVING" for s in self.services.values())
