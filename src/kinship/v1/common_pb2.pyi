from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sex(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEX_UNSPECIFIED: _ClassVar[Sex]
    SEX_FEMALE: _ClassVar[Sex]
    SEX_MALE: _ClassVar[Sex]

class Relation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_UNSPECIFIED: _ClassVar[Relation]
    RELATION_FATHER: _ClassVar[Relation]
    RELATION_MOTHER: _ClassVar[Relation]
    RELATION_SIBLING: _ClassVar[Relation]
    RELATION_SELF: _ClassVar[Relation]
    RELATION_BROTHER: _ClassVar[Relation]
    RELATION_SISTER: _ClassVar[Relation]
    RELATION_GRANDFATHER: _ClassVar[Relation]
    RELATION_GRANDMOTHER: _ClassVar[Relation]
SEX_UNSPECIFIED: Sex
SEX_FEMALE: Sex
SEX_MALE: Sex
RELATION_UNSPECIFIED: Relation
RELATION_FATHER: Relation
RELATION_MOTHER: Relation
RELATION_SIBLING: Relation
RELATION_SELF: Relation
RELATION_BROTHER: Relation
RELATION_SISTER: Relation
RELATION_GRANDFATHER: Relation
RELATION_GRANDMOTHER: Relation

class BoundingBox(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class BirthYearRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class UnknownExcluded(_message.Message):
    __slots__ = ("birth_year", "sex")
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    birth_year: int
    sex: int
    def __init__(self, birth_year: _Optional[int] = ..., sex: _Optional[int] = ...) -> None: ...

class PersonAttributes(_message.Message):
    __slots__ = ("birth_year", "sex", "region", "source")
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    birth_year: int
    sex: Sex
    region: str
    source: str
    def __init__(self, birth_year: _Optional[int] = ..., sex: _Optional[_Union[Sex, str]] = ..., region: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "model_id")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    def __init__(self, values: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ...) -> None: ...
