from kinship.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_IDENTITY: _ClassVar[ModelKind]
    MODEL_KIND_KINSHIP: _ClassVar[ModelKind]
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_IDENTITY: ModelKind
MODEL_KIND_KINSHIP: ModelKind

class EmbedRequest(_message.Message):
    __slots__ = ("image", "model_id", "max_faces", "additional_model_ids", "pre_aligned", "min_face_size", "min_quality", "largest_face_only")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    PRE_ALIGNED_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    LARGEST_FACE_ONLY_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    model_id: str
    max_faces: int
    additional_model_ids: _containers.RepeatedScalarFieldContainer[str]
    pre_aligned: bool
    min_face_size: float
    min_quality: float
    largest_face_only: bool
    def __init__(self, image: _Optional[bytes] = ..., model_id: _Optional[str] = ..., max_faces: _Optional[int] = ..., additional_model_ids: _Optional[_Iterable[str]] = ..., pre_aligned: _Optional[bool] = ..., min_face_size: _Optional[float] = ..., min_quality: _Optional[float] = ..., largest_face_only: _Optional[bool] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "detection_score", "embedding", "model_id", "dimension", "additional_embeddings", "quality", "quality_details", "attributes", "pre_aligned")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_DETAILS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    PRE_ALIGNED_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.BoundingBox
    landmarks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point]
    detection_score: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    dimension: int
    additional_embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    quality: float
    quality_details: FaceQuality
    attributes: FaceAttributes
    pre_aligned: bool
    def __init__(self, box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[_common_pb2.Point, _Mapping]]] = ..., detection_score: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., additional_embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., quality: _Optional[float] = ..., quality_details: _Optional[_Union[FaceQuality, _Mapping]] = ..., attributes: _Optional[_Union[FaceAttributes, _Mapping]] = ..., pre_aligned: _Optional[bool] = ...) -> None: ...

class FaceQuality(_message.Message):
    __slots__ = ("size", "detection_score", "sharpness", "landmark_symmetry")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_SYMMETRY_FIELD_NUMBER: _ClassVar[int]
    size: float
    detection_score: float
    sharpness: float
    landmark_symmetry: float
    def __init__(self, size: _Optional[float] = ..., detection_score: _Optional[float] = ..., sharpness: _Optional[float] = ..., landmark_symmetry: _Optional[float] = ...) -> None: ...

class FaceAttributes(_message.Message):
    __slots__ = ("age", "sex")
    AGE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    age: float
    sex: _common_pb2.Sex
    def __init__(self, age: _Optional[float] = ..., sex: _Optional[_Union[_common_pb2.Sex, str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("faces", "model_id", "dimension", "image_width", "image_height")
    FACES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    model_id: str
    dimension: int
    image_width: int
    image_height: int
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "dimension", "detector", "recognizer", "is_default", "kind", "artifact_id", "bound_model_id", "pack_id", "execution_provider", "has_attributes", "licence")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    RECOGNIZER_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    BOUND_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    HAS_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dimension: int
    detector: str
    recognizer: str
    is_default: bool
    kind: ModelKind
    artifact_id: str
    bound_model_id: str
    pack_id: str
    execution_provider: str
    has_attributes: bool
    licence: str
    def __init__(self, model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., detector: _Optional[str] = ..., recognizer: _Optional[str] = ..., is_default: _Optional[bool] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., artifact_id: _Optional[str] = ..., bound_model_id: _Optional[str] = ..., pack_id: _Optional[str] = ..., execution_provider: _Optional[str] = ..., has_attributes: _Optional[bool] = ..., licence: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class EmbedBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[EmbedRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[EmbedRequest, _Mapping]]] = ...) -> None: ...

class EmbedBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EmbedBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[EmbedBatchResult, _Mapping]]] = ...) -> None: ...

class EmbedBatchResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: EmbedResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[EmbedResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "status", "message", "reason", "fields")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    code: int
    status: str
    message: str
    reason: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[int] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...
