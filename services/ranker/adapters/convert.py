"""kinship.v1 enums and shared messages <-> the ranker's domain values.

Used by the transport (the ranker's own contract) and by the gRPC clients (the
embedder's and indexer's contracts), which share these messages.
"""

from __future__ import annotations

from kinship.domain.people import RELATION_FROM_PB, RELATION_TO_PB, Sex, sex_or_unspecified  # noqa: F401 - RELATION_TO_PB for the transport
from kinship.domain.people import sex_from_pb as _sex_of
from kinship.runtime.errors import InvalidArgument
from kinship.v1 import common_pb2, indexer_pb2

from ..domain.model import PersonAttributes, Relation, SearchFilter


def relation_from_pb(value: int, field: str) -> Relation:
    # proto3 enums are open: a newer client may send a number this server does not know.
    try:
        return RELATION_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(
            f"{field}: unknown relation {value}; use father, mother, brother, sister, sibling, grandfather, "
            "grandmother or self",
            field=field,
        ) from None


def sex_from_pb(value: int, field: str) -> Sex:
    try:
        return _sex_of(value)
    except ValueError:
        raise InvalidArgument(
            f"{field}: unknown sex {value}; use female, male or leave it unset", field=field
        ) from None


def attributes_from_pb(message: common_pb2.PersonAttributes) -> PersonAttributes:
    return PersonAttributes(
        birth_year=message.birth_year if message.HasField("birth_year") else None,
        sex=sex_or_unspecified(message.sex),
        region=message.region,
        source=message.source,
    )


def attributes_to_pb(attributes: PersonAttributes) -> common_pb2.PersonAttributes:
    message = common_pb2.PersonAttributes(sex=int(attributes.sex), region=attributes.region, source=attributes.source)
    if attributes.birth_year is not None:
        message.birth_year = attributes.birth_year
    return message


def birth_year_range_to_pb(low: int | None, high: int | None) -> common_pb2.BirthYearRange:
    message = common_pb2.BirthYearRange()
    if low is not None:
        message.min = low
    if high is not None:
        message.max = high
    return message


def search_filter_to_pb(search_filter: SearchFilter) -> indexer_pb2.SearchFilter:
    message = indexer_pb2.SearchFilter(
        sex=int(search_filter.sex),
        regions=list(search_filter.regions),
        exclude_person_ids=list(search_filter.exclude_person_ids),
        include_unknown=search_filter.include_unknown,
    )
    if search_filter.birth_year_min is not None or search_filter.birth_year_max is not None:
        message.birth_year.CopyFrom(birth_year_range_to_pb(search_filter.birth_year_min, search_filter.birth_year_max))
    return message
