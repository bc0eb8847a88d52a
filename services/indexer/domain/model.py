"""What the gallery holds and answers, as plain dataclasses over numpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

# Sex as the whole suite means it (its values are kinship.v1.Sex's, as the gallery stores them).
from kinship.domain.people import Sex


@dataclass(frozen=True)
class Attributes:
    """What the gallery knows about a person beside the embedding (never the image)."""

    birth_year: int | None = None
    sex: Sex = Sex.UNSPECIFIED
    region: str = ""
    source: str = ""


class Consistency(IntEnum):
    """How fresh a read must be; the values are those of kinship.v1.ReadConsistency."""

    UNSPECIFIED = 0
    #: May miss writes of the last seconds; the default for searches (no wait for every write).
    BOUNDED = 1
    #: Read-your-writes: sees every write acknowledged before the read.
    STRONG = 2


@dataclass(frozen=True, eq=False)
class GalleryRecord:
    """One photo of one person: its L2-normalised embedding and attributes.

    Times are Unix seconds. `expires_at` drives the retention purge (None: kept until
    deleted); `enrolled_at` and `tenant` are set by the gallery when it stores the record.
    """

    record_id: str
    person_id: str
    embedding: np.ndarray
    attributes: Attributes = field(default_factory=Attributes)
    captured_at: int | None = None
    expires_at: int | None = None
    enrolled_at: int | None = None
    tenant: str = ""


@dataclass(frozen=True)
class SearchFilter:
    """Typed restrictions on search hits; unset fields do not restrict.

    A birth-year bound admits only records whose birth year is known and in range, and a
    sex only records of that sex; with `include_unknown`, records whose birth year or sex
    is unknown pass those restrictions too.
    """

    birth_year_min: int | None = None
    birth_year_max: int | None = None
    sex: Sex = Sex.UNSPECIFIED
    regions: tuple[str, ...] = ()
    exclude_person_ids: tuple[str, ...] = ()
    include_unknown: bool = False

    @property
    def restricts_birth_year(self) -> bool:
        return self.birth_year_min is not None or self.birth_year_max is not None

    def admits(self, person_id: str, attributes: Attributes) -> bool:
        """Whether a record of `person_id` with these attributes passes the filter.

        The filter's meaning over plain data; every GalleryStore must return exactly the
        records this admits (the Milvus adapter's expression is tested against it).
        """
        if self.restricts_birth_year:
            year = attributes.birth_year
            if year is None:
                if not self.include_unknown:
                    return False
            elif self.birth_year_min is not None and year < self.birth_year_min:
                return False
            elif self.birth_year_max is not None and year > self.birth_year_max:
                return False
        if self.sex != Sex.UNSPECIFIED and attributes.sex != self.sex:
            if not (self.include_unknown and attributes.sex == Sex.UNSPECIFIED):
                return False
        if self.regions and attributes.region not in self.regions:
            return False
        return person_id not in self.exclude_person_ids


@dataclass(frozen=True)
class ExcludedUnknown:
    """Records a filter left out only because their birth year or sex is unknown (kinship.v1.UnknownExcluded)."""

    birth_year: int = 0
    sex: int = 0


@dataclass(frozen=True)
class RecordPage:
    """One page of a gallery listing: the records of some people, and where the next page starts."""

    records: list[GalleryRecord]
    next_page_token: str = ""


@dataclass(frozen=True)
class Hit:
    """One record found by a search, with its cosine similarity to the query."""

    record_id: str
    person_id: str
    similarity: float
    attributes: Attributes


@dataclass(frozen=True)
class UpsertResult:
    upserted_count: int
    collection: str
    tenant: str = ""


@dataclass(frozen=True)
class DeleteResult:
    deleted_count: int
    compacted: bool = False
    compaction_seconds: float = 0.0


@dataclass(frozen=True)
class EnrolFailure:
    record_id: str
    index: int
    reason: str


@dataclass(frozen=True)
class CollectionStats:
    """Rows and index state of one collection, with the record count of one tenant."""

    collection: CollectionInfo
    tenant_record_count: int
    index_type: str
    index_params: str
    indexed_rows: int
    pending_index_rows: int
    index_state: str


@dataclass(frozen=True)
class CollectionInfo:
    """One collection of the gallery: the embeddings of one model."""

    model_id: str
    name: str
    dimension: int
    record_count: int
    schema_version: int = 0
