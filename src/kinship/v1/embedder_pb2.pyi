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
    __slots__ = ("image", "model_id", "max_faces", "additional_model_ids")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    model_id: str
    max_faces: int
    additional_model_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[bytes] = ..., model_id: _Optional[str] = ..., max_faces: _Optional[int] = ..., additional_model_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "detection_score", "embedding", "model_id", "dimension", "additional_embeddings", "quality")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.BoundingBox
    landmarks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point]
    detection_score: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    dimension: int
    additional_embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    quality: float
    def __init__(self, box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[_common_pb2.Point, _Mapping]]] = ..., detection_score: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., additional_embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., quality: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("model_id", "dimension", "detector", "recognizer", "is_default", "kind", "artifact_id", "bound_model_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    RECOGNIZER_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    BOUND_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dimension: int
    detector: str
    recognizer: str
    is_default: bool
    kind: ModelKind
    artifact_id: str
    bound_model_id: str
    def __init__(self, model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., detector: _Optional[str] = ..., recognizer: _Optional[str] = ..., is_default: _Optional[bool] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., artifact_id: _Optional[str] = ..., bound_model_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
