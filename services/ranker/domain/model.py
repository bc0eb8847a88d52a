"""Values the ranker's domain works with: plain dataclasses over numpy, no protobuf.

The transport turns kinship.v1 messages into these and back; the adapters turn the
embedder's and indexer's messages into `DetectedFace`, `SearchHit`, `GalleryRecord`
and `ServedModel`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# The relations and sexes the whole suite shares; named here too, as the ranker's domain speaks of them.
from kinship.domain.people import GRANDPARENTS, PARENTS, SIBLINGS, Relation, Sex  # noqa: F401 - the ranker's names too

# --- The question, as the caller sent it (validated by `validation`) ---------------


@dataclass(frozen=True)
class Photo:
    """One photo: the encoded image and, where known, when it was taken."""

    image: bytes
    capture_year: int | None = None
    age_at_photo: float | None = None
    #: A face crop already aligned to the 112x112 template: the embedder skips detection.
    pre_aligned: bool = False


@dataclass(frozen=True)
class RelativeInput:
    label: str
    relation: Relation
    photos: Sequence[Photo | bytes]  # bare bytes are a Photo with no date
    person_id: str = ""


@dataclass(frozen=True)
class MissingPerson:
    """What is known of the missing person; every field left unset narrows nothing."""

    sex: Sex = Sex.UNSPECIFIED
    birth_year_min: int | None = None
    birth_year_max: int | None = None
    regions: tuple[str, ...] = ()
    #: Soft facts: a candidate outside the birth years or regions stays, with a stated penalty
    #: (`scoring.SoftFacts`) instead of being filtered out. Hard (False) by default.
    soft_birth_year: bool = False
    soft_regions: bool = False
    #: log10 LR per year outside a soft birth-year window and for a region outside soft regions
    #: (<= 0; None = the ranker's defaults).
    birth_year_log10_lr_per_year: float | None = None
    region_log10_lr: float | None = None
    #: Keep gallery people whose birth year or sex is unknown (by default a birth-year or sex
    #: restriction leaves them out, and the answer counts them).
    include_unknown: bool = False


@dataclass(frozen=True)
class FindRelativesInput:
    relatives: Sequence[RelativeInput]
    missing_person: MissingPerson = field(default_factory=MissingPerson)
    top_n: int = 0
    model_id: str = ""
    prior_probability: float = 0.0  # 0 = the ranker's default
    tenant: str = ""  # the gallery (agency) searched; "" = the indexer's default tenant


@dataclass(frozen=True)
class CompareKinshipInput:
    """One candidate against a family: photos of the candidate, or a gallery person id (exactly one)."""

    relatives: Sequence[RelativeInput]
    candidate_photos: Sequence[Photo | bytes] = ()
    candidate_sex: Sex = Sex.UNSPECIFIED
    candidate_person_id: str = ""
    missing_person: MissingPerson = field(default_factory=MissingPerson)
    model_id: str = ""
    prior_probability: float = 0.0
    tenant: str = ""


# --- The question after validation: labels, top_n and dates resolved -------------


@dataclass(frozen=True)
class Relative:
    label: str
    relation: Relation
    photos: tuple[Photo, ...]
    person_id: str = ""


@dataclass(frozen=True)
class KinshipQuery:
    relatives: tuple[Relative, ...]
    missing_person: MissingPerson
    top_n: int
    model_id: str
    prior_probability: float = 0.0  # 0 = the ranker's default
    current_year: int = 0  # the year "now" is, for age gaps
    tenant: str = ""  # the gallery searched, as resolved by the transport


@dataclass(frozen=True)
class ComparisonQuery:
    query: KinshipQuery
    candidate_photos: tuple[Photo, ...] = ()
    candidate_sex: Sex = Sex.UNSPECIFIED
    candidate_person_id: str = ""


# --- What the ports return ----------------------------------------------------------


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
class DetectedFace:
    embedding: np.ndarray
    box: Box
    detection_score: float
    #: How usable the face is for comparison, in [0, 1] (the embedder's Face.quality).
    quality: float = 1.0
    #: Vectors of the same face from the additional models asked for, by model id.
    additional: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedImage:
    """The faces the embedder found in one photo (maybe none) and the model it used."""

    faces: Sequence[DetectedFace]
    model_id: str


class ModelKind(enum.Enum):
    UNSPECIFIED = "unspecified"
    IDENTITY = "identity"
    KINSHIP = "kinship"


@dataclass(frozen=True)
class ServedModel:
    """One model the embedder serves (its ListModels entry)."""

    model_id: str
    kind: ModelKind = ModelKind.UNSPECIFIED
    artifact_id: str = ""
    bound_model_id: str = ""
    is_default: bool = False


@dataclass(frozen=True)
class PersonAttributes:
    birth_year: int | None = None
    sex: Sex = Sex.UNSPECIFIED
    region: str = ""
    source: str = ""


@dataclass(frozen=True)
class SearchFilter:
    sex: Sex = Sex.UNSPECIFIED
    birth_year_min: int | None = None
    birth_year_max: int | None = None
    regions: tuple[str, ...] = ()
    exclude_person_ids: tuple[str, ...] = ()
    #: Records of unknown birth year or sex pass the birth-year and sex restrictions.
    include_unknown: bool = False
    #: The tenant whose gallery the indexer reads ("" = its default); never a restriction a caller can widen.
    tenant: str = ""


@dataclass(frozen=True)
class ExcludedUnknown:
    """Gallery records a birth-year or sex restriction left out only because that fact is unknown."""

    birth_year: int = 0
    sex: int = 0


@dataclass(frozen=True)
class SearchHit:
    record_id: str
    person_id: str
    similarity: float


@dataclass(frozen=True)
class GalleryRecord:
    """One gallery face. `embedding` is its identity vector and `kinship_embedding` its kinship vector;
    either may be None where the gallery holds only the other (records of the two collections pair
    by record_id)."""

    record_id: str
    person_id: str
    embedding: np.ndarray | None
    attributes: PersonAttributes = field(default_factory=PersonAttributes)
    kinship_embedding: np.ndarray | None = None


# --- The answer ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringInfo:
    """How scores were produced (kinship.v1.ScoringInfo)."""

    calibrated: bool
    artifact_id: str
    calibration_id: str
    identity_model_id: str
    kinship_model_id: str
    fusion_method: str
    prior_probability: float
    strong_candidate_log10_lr: float


@dataclass(frozen=True)
class RelativeEvidence:
    label: str
    relation: Relation
    similarity: float
    photo_index: int
    record_id: str
    retrieved: bool
    log10_likelihood_ratio: float = 0.0
    fusion_weight: float = 0.0
    similarity_model_id: str = ""
    calibration: str = ""


@dataclass(frozen=True)
class RankedCandidate:
    person_id: str
    rank: int
    score: float
    attributes: PersonAttributes
    evidence: tuple[RelativeEvidence, ...]
    log10_likelihood_ratio: float = 0.0
    posterior_probability: float = 0.0
    strong_candidate: bool = False
    facts: tuple[FactEvidence, ...] = ()


@dataclass(frozen=True)
class FactEvidence:
    """A soft fact's effect on one candidate: its log10 LR is added to the fused one."""

    fact: str  # "birth_year" or "region"
    detail: str
    log10_likelihood_ratio: float
    years_outside: int = 0


@dataclass(frozen=True)
class Ranking:
    candidates: tuple[RankedCandidate, ...]
    model_id: str
    fusion_method: str
    candidates_considered: int
    scoring: ScoringInfo | None = None
    strong_candidates: int = 0
    #: Gallery records left out only because their birth year or sex is unknown.
    excluded_unknown: ExcludedUnknown = field(default_factory=ExcludedUnknown)


@dataclass(frozen=True)
class Comparison:
    candidate: RankedCandidate
    scoring: ScoringInfo
    model_id: str


@dataclass(frozen=True)
class CalibrationSummary:
    """One calibration as DescribeScoring shows it."""

    name: str
    fitted_on: str
    kin_pairs: int
    non_kin_pairs: int
    max_abs_log10_lr: float


@dataclass(frozen=True)
class ScoringDescription:
    scoring: ScoringInfo
    calibrations: tuple[CalibrationSummary, ...]
    artifact_metrics: Mapping[str, float]
    artifact_licence: str = ""
    artifact_training_data: str = ""
    artifact_shipped: bool = False
