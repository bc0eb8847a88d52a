from kinship.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GalleryRecord(_message.Message):
    __slots__ = ("record_id", "person_id", "embedding", "attributes")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    person_id: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    attributes: _common_pb2.PersonAttributes
    def __init__(self, record_id: _Optional[str] = ..., person_id: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., attributes: _Optional[_Union[_common_pb2.PersonAttributes, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("model_id", "records")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    records: _containers.RepeatedCompositeFieldContainer[GalleryRecord]
    def __init__(self, model_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[GalleryRecord, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted_count", "collection")
    UPSERTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    upserted_count: int
    collection: str
    def __init__(self, upserted_count: _Optional[int] = ..., collection: _Optional[str] = ...) -> None: ...

class SearchFilter(_message.Message):
    __slots__ = ("birth_year", "sex", "regions", "exclude_person_ids")
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    birth_year: _common_pb2.BirthYearRange
    sex: _common_pb2.Sex
    regions: _containers.RepeatedScalarFieldContainer[str]
    exclude_person_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, birth_year: _Optional[_Union[_common_pb2.BirthYearRange, _Mapping]] = ..., sex: _Optional[_Union[_common_pb2.Sex, str]] = ..., regions: _Optional[_Iterable[str]] = ..., exclude_person_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryEmbedding(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("model_id", "queries", "top_k", "filter")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    queries: _containers.RepeatedCompositeFieldContainer[QueryEmbedding]
    top_k: int
    filter: SearchFilter
    def __init__(self, model_id: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[QueryEmbedding, _Mapping]]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[SearchFilter, _Mapping]] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("record_id", "person_id", "similarity", "attributes")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    person_id: str
    similarity: float
    attributes: _common_pb2.PersonAttributes
    def __init__(self, record_id: _Optional[str] = ..., person_id: _Optional[str] = ..., similarity: _Optional[float] = ..., attributes: _Optional[_Union[_common_pb2.PersonAttributes, _Mapping]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ...) -> None: ...

class GetRecordsRequest(_message.Message):
    __slots__ = ("model_id", "person_ids", "filter")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    person_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: SearchFilter
    def __init__(self, model_id: _Optional[str] = ..., person_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[SearchFilter, _Mapping]] = ...) -> None: ...

class GetRecordsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[GalleryRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[GalleryRecord, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("model_id", "person_ids", "record_ids")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    person_ids: _containers.RepeatedScalarFieldContainer[str]
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., person_ids: _Optional[_Iterable[str]] = ..., record_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted_count",)
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("model_id", "name", "dimension", "record_count")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    name: str
    dimension: int
    record_count: int
    def __init__(self, model_id: _Optional[str] = ..., name: _Optional[str] = ..., dimension: _Optional[int] = ..., record_count: _Optional[int] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...
