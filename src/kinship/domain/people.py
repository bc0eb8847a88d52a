"""Relations and sexes as the whole suite means them, and their kinship.v1 numbers."""

from __future__ import annotations

import enum

from kinship.v1 import common_pb2


class Relation(enum.Enum):
    """How a relative is related to the missing person; the value is the default label."""

    UNSPECIFIED = "unspecified"
    FATHER = "father"
    MOTHER = "mother"
    SIBLING = "sibling"  # sex not given
    SELF = "self"
    BROTHER = "brother"
    SISTER = "sister"
    GRANDFATHER = "grandfather"
    GRANDMOTHER = "grandmother"


PARENTS = frozenset({Relation.FATHER, Relation.MOTHER})
SIBLINGS = frozenset({Relation.BROTHER, Relation.SISTER, Relation.SIBLING})
GRANDPARENTS = frozenset({Relation.GRANDFATHER, Relation.GRANDMOTHER})

RELATION_FROM_PB = {
    common_pb2.RELATION_UNSPECIFIED: Relation.UNSPECIFIED,
    common_pb2.RELATION_FATHER: Relation.FATHER,
    common_pb2.RELATION_MOTHER: Relation.MOTHER,
    common_pb2.RELATION_SIBLING: Relation.SIBLING,
    common_pb2.RELATION_SELF: Relation.SELF,
    common_pb2.RELATION_BROTHER: Relation.BROTHER,
    common_pb2.RELATION_SISTER: Relation.SISTER,
    common_pb2.RELATION_GRANDFATHER: Relation.GRANDFATHER,
    common_pb2.RELATION_GRANDMOTHER: Relation.GRANDMOTHER,
}
RELATION_TO_PB = {domain: pb for pb, domain in RELATION_FROM_PB.items()}


class Sex(enum.IntEnum):
    """Sex of a person; the values are those of kinship.v1.Sex (the gallery stores them as numbers).

    Also made from its lower-case name (`Sex("female")`), as data sets and face attributes say it.
    """

    UNSPECIFIED = common_pb2.SEX_UNSPECIFIED
    FEMALE = common_pb2.SEX_FEMALE
    MALE = common_pb2.SEX_MALE

    @classmethod
    def _missing_(cls, value: object) -> Sex | None:
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


def sex_from_name(name: str) -> Sex:
    """`female` or `male` (any case); anything else is unspecified."""
    return Sex.__members__.get(name.strip().upper(), Sex.UNSPECIFIED)


def sex_from_pb(value: int) -> Sex:
    """The Sex of a kinship.v1.Sex number; ValueError for a number this code does not know
    (proto3 enums are open: a newer client may send one)."""
    return Sex(int(value))


def sex_or_unspecified(value: int) -> Sex:
    """The Sex of a kinship.v1.Sex number, unspecified for one this code does not know (in answers read back)."""
    try:
        return Sex(int(value))
    except ValueError:
        return Sex.UNSPECIFIED
