"""Values the ranker's domain works with: plain dataclasses over numpy, no protobuf.

The transport turns kinship.v1 messages into these and back; the adapters turn the
embedder's and indexer's messages into `DetectedFace`, `SearchHit` and `GalleryRecord`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class Relation(enum.Enum):
    """How a relative is related to the missing person; the value is the default label."""

    UNSPECIFIED = "unspecified"
    FATHER = "father"
    MOTHER = "mother"
    SIBLING = "sibling"  # sex not given
    SELF = "self"
    BROTHER = "brother"
    SISTER = "sister"


class Sex(enum.Enum):
    UNSPECIFIED = "unspecified"
    FEMALE = "female"
    MALE = "male"


# --- The question, as the caller sent it (validated by `validation.validate`) -----


@dataclass(frozen=True)
class RelativeInput:
    label: str
    relation: Relation
    photos: Sequence[bytes]
    person_id: str = ""


@dataclass(frozen=True)
class MissingPerson:
    """What is known of the missing person; every field left unset narrows nothing."""

    sex: Sex = Sex.UNSPECIFIED
    birth_year_min: int | None = None
    birth_year_max: int | None = None
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class FindRelativesInput:
    relatives: Sequence[RelativeInput]
    missing_person: MissingPerson = field(default_factory=MissingPerson)
    top_n: int = 0
    model_id: str = ""


# --- The question after validation: labels resolved, top_n resolved ---------------


@dataclass(frozen=True)
class Relative:
    label: str
    relation: Relation
    photos: tuple[bytes, ...]
    person_id: str = ""


@dataclass(frozen=True)
class KinshipQuery:
    relatives: tuple[Relative, ...]
    missing_person: MissingPerson
    top_n: int
    model_id: str


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


@dataclass(frozen=True)
class EmbeddedImage:
    """The faces the embedder found in one photo (maybe none) and the model it used."""

    faces: Sequence[DetectedFace]
    model_id: str


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


@dataclass(frozen=True)
class SearchHit:
    record_id: str
    person_id: str
    similarity: float


@dataclass(frozen=True)
class GalleryRecord:
    record_id: str
    person_id: str
    embedding: np.ndarray
    attributes: PersonAttributes = field(default_factory=PersonAttributes)


# --- The answer ---------------------------------------------------------------------


@dataclass(frozen=True)
class RelativeEvidence:
    label: str
    relation: Relation
    similarity: float
    photo_index: int
    record_id: str
    retrieved: bool


@dataclass(frozen=True)
class RankedCandidate:
    person_id: str
    rank: int
    score: float
    attributes: PersonAttributes
    evidence: tuple[RelativeEvidence, ...]


@dataclass(frozen=True)
class Ranking:
    candidates: tuple[RankedCandidate, ...]
    model_id: str
    fusion_method: str
    candidates_considered: int
