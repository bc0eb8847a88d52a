from kinship.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Photo(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    def __init__(self, image: _Optional[bytes] = ...) -> None: ...

class Relative(_message.Message):
    __slots__ = ("label", "relation", "photos", "person_id")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    PHOTOS_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    label: str
    relation: _common_pb2.Relation
    photos: _containers.RepeatedCompositeFieldContainer[Photo]
    person_id: str
    def __init__(self, label: _Optional[str] = ..., relation: _Optional[_Union[_common_pb2.Relation, str]] = ..., photos: _Optional[_Iterable[_Union[Photo, _Mapping]]] = ..., person_id: _Optional[str] = ...) -> None: ...

class MissingPerson(_message.Message):
    __slots__ = ("sex", "birth_year", "regions")
    SEX_FIELD_NUMBER: _ClassVar[int]
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    sex: _common_pb2.Sex
    birth_year: _common_pb2.BirthYearRange
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sex: _Optional[_Union[_common_pb2.Sex, str]] = ..., birth_year: _Optional[_Union[_common_pb2.BirthYearRange, _Mapping]] = ..., regions: _Optional[_Iterable[str]] = ...) -> None: ...

class FindRelativesRequest(_message.Message):
    __slots__ = ("relatives", "missing_person", "top_n", "model_id")
    RELATIVES_FIELD_NUMBER: _ClassVar[int]
    MISSING_PERSON_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    relatives: _containers.RepeatedCompositeFieldContainer[Relative]
    missing_person: MissingPerson
    top_n: int
    model_id: str
    def __init__(self, relatives: _Optional[_Iterable[_Union[Relative, _Mapping]]] = ..., missing_person: _Optional[_Union[MissingPerson, _Mapping]] = ..., top_n: _Optional[int] = ..., model_id: _Optional[str] = ...) -> None: ...

class RelativeEvidence(_message.Message):
    __slots__ = ("label", "relation", "similarity", "photo_index", "record_id", "retrieved")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    PHOTO_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    label: str
    relation: _common_pb2.Relation
    similarity: float
    photo_index: int
    record_id: str
    retrieved: bool
    def __init__(self, label: _Optional[str] = ..., relation: _Optional[_Union[_common_pb2.Relation, str]] = ..., similarity: _Optional[float] = ..., photo_index: _Optional[int] = ..., record_id: _Optional[str] = ..., retrieved: _Optional[bool] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("person_id", "rank", "score", "attributes", "evidence")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    rank: int
    score: float
    attributes: _common_pb2.PersonAttributes
    evidence: _containers.RepeatedCompositeFieldContainer[RelativeEvidence]
    def __init__(self, person_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., attributes: _Optional[_Union[_common_pb2.PersonAttributes, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[RelativeEvidence, _Mapping]]] = ...) -> None: ...

class FindRelativesResponse(_message.Message):
    __slots__ = ("candidates", "model_id", "fusion_method", "candidates_considered")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FUSION_METHOD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_id: str
    fusion_method: str
    candidates_considered: int
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_id: _Optional[str] = ..., fusion_method: _Optional[str] = ..., candidates_considered: _Optional[int] = ...) -> None: ...
