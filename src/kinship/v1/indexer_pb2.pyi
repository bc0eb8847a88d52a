import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kinship.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_CONSISTENCY_UNSPECIFIED: _ClassVar[ReadConsistency]
    READ_CONSISTENCY_BOUNDED: _ClassVar[ReadConsistency]
    READ_CONSISTENCY_STRONG: _ClassVar[ReadConsistency]
READ_CONSISTENCY_UNSPECIFIED: ReadConsistency
READ_CONSISTENCY_BOUNDED: ReadConsistency
READ_CONSISTENCY_STRONG: ReadConsistency

class GalleryRecord(_message.Message):
    __slots__ = ("record_id", "person_id", "embedding", "attributes", "captured_at", "expires_at", "enrolled_at", "tenant")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    person_id: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    attributes: _common_pb2.PersonAttributes
    captured_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    enrolled_at: _timestamp_pb2.Timestamp
    tenant: str
    def __init__(self, record_id: _Optional[str] = ..., person_id: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., attributes: _Optional[_Union[_common_pb2.PersonAttributes, _Mapping]] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("model_id", "records", "tenant")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    records: _containers.RepeatedCompositeFieldContainer[GalleryRecord]
    tenant: str
    def __init__(self, model_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[GalleryRecord, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted_count", "collection", "tenant")
    UPSERTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    upserted_count: int
    collection: str
    tenant: str
    def __init__(self, upserted_count: _Optional[int] = ..., collection: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class SearchFilter(_message.Message):
    __slots__ = ("birth_year", "sex", "regions", "exclude_person_ids", "include_unknown")
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    birth_year: _common_pb2.BirthYearRange
    sex: _common_pb2.Sex
    regions: _containers.RepeatedScalarFieldContainer[str]
    exclude_person_ids: _containers.RepeatedScalarFieldContainer[str]
    include_unknown: bool
    def __init__(self, birth_year: _Optional[_Union[_common_pb2.BirthYearRange, _Mapping]] = ..., sex: _Optional[_Union[_common_pb2.Sex, str]] = ..., regions: _Optional[_Iterable[str]] = ..., exclude_person_ids: _Optional[_Iterable[str]] = ..., include_unknown: _Optional[bool] = ...) -> None: ...

class QueryEmbedding(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("model_id", "queries", "top_k", "filter", "tenant", "consistency", "count_excluded_unknown")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    COUNT_EXCLUDED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    queries: _containers.RepeatedCompositeFieldContainer[QueryEmbedding]
    top_k: int
    filter: SearchFilter
    tenant: str
    consistency: ReadConsistency
    count_excluded_unknown: bool
    def __init__(self, model_id: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[QueryEmbedding, _Mapping]]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[SearchFilter, _Mapping]] = ..., tenant: _Optional[str] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ..., count_excluded_unknown: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("results", "excluded_unknown")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    excluded_unknown: _common_pb2.UnknownExcluded
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ..., excluded_unknown: _Optional[_Union[_common_pb2.UnknownExcluded, _Mapping]] = ...) -> None: ...

class GetRecordsRequest(_message.Message):
    __slots__ = ("model_id", "person_ids", "filter", "tenant", "consistency", "all_people", "page_size", "page_token", "omit_embeddings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    ALL_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OMIT_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    person_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: SearchFilter
    tenant: str
    consistency: ReadConsistency
    all_people: bool
    page_size: int
    page_token: str
    omit_embeddings: bool
    def __init__(self, model_id: _Optional[str] = ..., person_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[SearchFilter, _Mapping]] = ..., tenant: _Optional[str] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ..., all_people: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., omit_embeddings: _Optional[bool] = ...) -> None: ...

class GetRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[GalleryRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[GalleryRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("model_id", "person_ids", "record_ids", "tenant", "await_compaction")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    AWAIT_COMPACTION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    person_ids: _containers.RepeatedScalarFieldContainer[str]
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    await_compaction: bool
    def __init__(self, model_id: _Optional[str] = ..., person_ids: _Optional[_Iterable[str]] = ..., record_ids: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., await_compaction: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted_count", "compacted", "compaction_seconds")
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    compacted: bool
    compaction_seconds: float
    def __init__(self, deleted_count: _Optional[int] = ..., compacted: _Optional[bool] = ..., compaction_seconds: _Optional[float] = ...) -> None: ...

class BulkEnrolRequest(_message.Message):
    __slots__ = ("model_id", "tenant", "records")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    tenant: str
    records: _containers.RepeatedCompositeFieldContainer[GalleryRecord]
    def __init__(self, model_id: _Optional[str] = ..., tenant: _Optional[str] = ..., records: _Optional[_Iterable[_Union[GalleryRecord, _Mapping]]] = ...) -> None: ...

class EnrolFailure(_message.Message):
    __slots__ = ("record_id", "index", "reason")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    index: int
    reason: str
    def __init__(self, record_id: _Optional[str] = ..., index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BulkEnrolResponse(_message.Message):
    __slots__ = ("received_total", "enrolled_total", "failed_total", "failures", "done")
    RECEIVED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    received_total: int
    enrolled_total: int
    failed_total: int
    failures: _containers.RepeatedCompositeFieldContainer[EnrolFailure]
    done: bool
    def __init__(self, received_total: _Optional[int] = ..., enrolled_total: _Optional[int] = ..., failed_total: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[EnrolFailure, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("model_id", "name", "dimension", "record_count", "schema_version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    name: str
    dimension: int
    record_count: int
    schema_version: int
    def __init__(self, model_id: _Optional[str] = ..., name: _Optional[str] = ..., dimension: _Optional[int] = ..., record_count: _Optional[int] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("collection", "tenant_record_count", "index_type", "index_params", "indexed_rows", "pending_index_rows", "index_state")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_ROWS_FIELD_NUMBER: _ClassVar[int]
    PENDING_INDEX_ROWS_FIELD_NUMBER: _ClassVar[int]
    INDEX_STATE_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    tenant_record_count: int
    index_type: str
    index_params: str
    indexed_rows: int
    pending_index_rows: int
    index_state: str
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., tenant_record_count: _Optional[int] = ..., index_type: _Optional[str] = ..., index_params: _Optional[str] = ..., indexed_rows: _Optional[int] = ..., pending_index_rows: _Optional[int] = ..., index_state: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("collections", "tenant")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionStats]
    tenant: str
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionStats, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...
