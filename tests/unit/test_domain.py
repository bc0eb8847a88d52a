"""The shared domain (kinship.domain): one Relation, one Sex, one face-choice rule for every service."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kinship.domain import faces
from kinship.domain.people import (
    RELATION_FROM_PB,
    RELATION_TO_PB,
    Relation,
    Sex,
    sex_from_name,
    sex_from_pb,
    sex_or_unspecified,
)
from kinship.v1 import common_pb2


def test_the_services_speak_of_one_sex_and_one_relation():
    from kinship.indexer.domain import model as indexer_model
    from kinship.ranker.domain import model as ranker_model

    assert indexer_model.Sex is ranker_model.Sex is Sex
    assert ranker_model.Relation is Relation


def test_sex_numbers_are_the_contracts_and_names_read_as_data_sets_write_them():
    assert [int(s) for s in (Sex.UNSPECIFIED, Sex.FEMALE, Sex.MALE)] == [
        common_pb2.SEX_UNSPECIFIED,
        common_pb2.SEX_FEMALE,
        common_pb2.SEX_MALE,
    ]
    assert Sex("female") is Sex.FEMALE and Sex("male") is Sex.MALE
    assert sex_from_name("male") is Sex.MALE and sex_from_name("") is Sex.UNSPECIFIED
    assert sex_from_name("other") is Sex.UNSPECIFIED
    assert sex_from_pb(common_pb2.SEX_FEMALE) is Sex.FEMALE
    with pytest.raises(ValueError):
        sex_from_pb(7)  # a newer client's value: the transports refuse it
    assert sex_or_unspecified(7) is Sex.UNSPECIFIED


def test_every_relation_of_the_contract_has_its_domain_value_and_back():
    assert set(RELATION_FROM_PB) == set(common_pb2.Relation.values())
    assert {RELATION_TO_PB[r] for r in Relation} == set(common_pb2.Relation.values())


@dataclass
class Face:
    box: tuple[float, float, float, float]
    score: float


def test_the_most_prominent_face_is_largest_area_times_score_first_on_a_tie():
    small_sure, large_unsure, twin = Face((0, 0, 10, 10), 0.99), Face((0, 0, 40, 40), 0.5), Face((50, 0, 90, 40), 0.5)

    def weight(f: Face) -> float:
        return faces.prominence(*f.box, f.score)

    assert faces.most_prominent([small_sure, large_unsure, twin], weight) is large_unsure
    assert faces.most_prominent([], weight) is None
    assert faces.prominence(10, 0, 0, 10, 1.0) == 0.0  # an inverted box has no area
