from kinship.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Photo(_message.Message):
    __slots__ = ("image", "capture_year", "age_at_photo", "pre_aligned")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_YEAR_FIELD_NUMBER: _ClassVar[int]
    AGE_AT_PHOTO_FIELD_NUMBER: _ClassVar[int]
    PRE_ALIGNED_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    capture_year: int
    age_at_photo: float
    pre_aligned: bool
    def __init__(self, image: _Optional[bytes] = ..., capture_year: _Optional[int] = ..., age_at_photo: _Optional[float] = ..., pre_aligned: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("sex", "birth_year", "regions", "soft", "include_unknown")
    SEX_FIELD_NUMBER: _ClassVar[int]
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    sex: _common_pb2.Sex
    birth_year: _common_pb2.BirthYearRange
    regions: _containers.RepeatedScalarFieldContainer[str]
    soft: SoftFacts
    include_unknown: bool
    def __init__(self, sex: _Optional[_Union[_common_pb2.Sex, str]] = ..., birth_year: _Optional[_Union[_common_pb2.BirthYearRange, _Mapping]] = ..., regions: _Optional[_Iterable[str]] = ..., soft: _Optional[_Union[SoftFacts, _Mapping]] = ..., include_unknown: _Optional[bool] = ...) -> None: ...

class SoftFacts(_message.Message):
    __slots__ = ("birth_year", "regions", "birth_year_log10_lr_per_year", "region_log10_lr")
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    BIRTH_YEAR_LOG10_LR_PER_YEAR_FIELD_NUMBER: _ClassVar[int]
    REGION_LOG10_LR_FIELD_NUMBER: _ClassVar[int]
    birth_year: bool
    regions: bool
    birth_year_log10_lr_per_year: float
    region_log10_lr: float
    def __init__(self, birth_year: _Optional[bool] = ..., regions: _Optional[bool] = ..., birth_year_log10_lr_per_year: _Optional[float] = ..., region_log10_lr: _Optional[float] = ...) -> None: ...

class FindRelativesRequest(_message.Message):
    __slots__ = ("relatives", "missing_person", "top_n", "model_id", "prior_probability", "tenant")
    RELATIVES_FIELD_NUMBER: _ClassVar[int]
    MISSING_PERSON_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PRIOR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    relatives: _containers.RepeatedCompositeFieldContainer[Relative]
    missing_person: MissingPerson
    top_n: int
    model_id: str
    prior_probability: float
    tenant: str
    def __init__(self, relatives: _Optional[_Iterable[_Union[Relative, _Mapping]]] = ..., missing_person: _Optional[_Union[MissingPerson, _Mapping]] = ..., top_n: _Optional[int] = ..., model_id: _Optional[str] = ..., prior_probability: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class RelativeEvidence(_message.Message):
    __slots__ = ("label", "relation", "similarity", "photo_index", "record_id", "retrieved", "log10_likelihood_ratio", "fusion_weight", "similarity_model_id", "calibration")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    PHOTO_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    LOG10_LIKELIHOOD_RATIO_FIELD_NUMBER: _ClassVar[int]
    FUSION_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    label: str
    relation: _common_pb2.Relation
    similarity: float
    photo_index: int
    record_id: str
    retrieved: bool
    log10_likelihood_ratio: float
    fusion_weight: float
    similarity_model_id: str
    calibration: str
    def __init__(self, label: _Optional[str] = ..., relation: _Optional[_Union[_common_pb2.Relation, str]] = ..., similarity: _Optional[float] = ..., photo_index: _Optional[int] = ..., record_id: _Optional[str] = ..., retrieved: _Optional[bool] = ..., log10_likelihood_ratio: _Optional[float] = ..., fusion_weight: _Optional[float] = ..., similarity_model_id: _Optional[str] = ..., calibration: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("person_id", "rank", "score", "attributes", "evidence", "log10_likelihood_ratio", "posterior_probability", "strong_candidate", "facts")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOG10_LIKELIHOOD_RATIO_FIELD_NUMBER: _ClassVar[int]
    POSTERIOR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    STRONG_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    rank: int
    score: float
    attributes: _common_pb2.PersonAttributes
    evidence: _containers.RepeatedCompositeFieldContainer[RelativeEvidence]
    log10_likelihood_ratio: float
    posterior_probability: float
    strong_candidate: bool
    facts: _containers.RepeatedCompositeFieldContainer[FactEvidence]
    def __init__(self, person_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., attributes: _Optional[_Union[_common_pb2.PersonAttributes, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[RelativeEvidence, _Mapping]]] = ..., log10_likelihood_ratio: _Optional[float] = ..., posterior_probability: _Optional[float] = ..., strong_candidate: _Optional[bool] = ..., facts: _Optional[_Iterable[_Union[FactEvidence, _Mapping]]] = ...) -> None: ...

class FactEvidence(_message.Message):
    __slots__ = ("fact", "detail", "log10_likelihood_ratio", "years_outside")
    FACT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LOG10_LIKELIHOOD_RATIO_FIELD_NUMBER: _ClassVar[int]
    YEARS_OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    fact: str
    detail: str
    log10_likelihood_ratio: float
    years_outside: int
    def __init__(self, fact: _Optional[str] = ..., detail: _Optional[str] = ..., log10_likelihood_ratio: _Optional[float] = ..., years_outside: _Optional[int] = ...) -> None: ...

class ScoringInfo(_message.Message):
    __slots__ = ("calibrated", "artifact_id", "calibration_id", "identity_model_id", "kinship_model_id", "fusion_method", "prior_probability", "strong_candidate_log10_lr")
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KINSHIP_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FUSION_METHOD_FIELD_NUMBER: _ClassVar[int]
    PRIOR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    STRONG_CANDIDATE_LOG10_LR_FIELD_NUMBER: _ClassVar[int]
    calibrated: bool
    artifact_id: str
    calibration_id: str
    identity_model_id: str
    kinship_model_id: str
    fusion_method: str
    prior_probability: float
    strong_candidate_log10_lr: float
    def __init__(self, calibrated: _Optional[bool] = ..., artifact_id: _Optional[str] = ..., calibration_id: _Optional[str] = ..., identity_model_id: _Optional[str] = ..., kinship_model_id: _Optional[str] = ..., fusion_method: _Optional[str] = ..., prior_probability: _Optional[float] = ..., strong_candidate_log10_lr: _Optional[float] = ...) -> None: ...

class FindRelativesResponse(_message.Message):
    __slots__ = ("candidates", "model_id", "fusion_method", "candidates_considered", "scoring", "strong_candidates", "excluded_unknown")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FUSION_METHOD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    STRONG_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_id: str
    fusion_method: str
    candidates_considered: int
    scoring: ScoringInfo
    strong_candidates: int
    excluded_unknown: _common_pb2.UnknownExcluded
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_id: _Optional[str] = ..., fusion_method: _Optional[str] = ..., candidates_considered: _Optional[int] = ..., scoring: _Optional[_Union[ScoringInfo, _Mapping]] = ..., strong_candidates: _Optional[int] = ..., excluded_unknown: _Optional[_Union[_common_pb2.UnknownExcluded, _Mapping]] = ...) -> None: ...

class CandidatePhotos(_message.Message):
    __slots__ = ("photos", "sex")
    PHOTOS_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    photos: _containers.RepeatedCompositeFieldContainer[Photo]
    sex: _common_pb2.Sex
    def __init__(self, photos: _Optional[_Iterable[_Union[Photo, _Mapping]]] = ..., sex: _Optional[_Union[_common_pb2.Sex, str]] = ...) -> None: ...

class CompareKinshipRequest(_message.Message):
    __slots__ = ("relatives", "candidate_photos", "candidate_person_id", "missing_person", "model_id", "prior_probability", "tenant")
    RELATIVES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_PHOTOS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MISSING_PERSON_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PRIOR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    relatives: _containers.RepeatedCompositeFieldContainer[Relative]
    candidate_photos: CandidatePhotos
    candidate_person_id: str
    missing_person: MissingPerson
    model_id: str
    prior_probability: float
    tenant: str
    def __init__(self, relatives: _Optional[_Iterable[_Union[Relative, _Mapping]]] = ..., candidate_photos: _Optional[_Union[CandidatePhotos, _Mapping]] = ..., candidate_person_id: _Optional[str] = ..., missing_person: _Optional[_Union[MissingPerson, _Mapping]] = ..., model_id: _Optional[str] = ..., prior_probability: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class CompareKinshipResponse(_message.Message):
    __slots__ = ("candidate", "scoring")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    candidate: Candidate
    scoring: ScoringInfo
    def __init__(self, candidate: _Optional[_Union[Candidate, _Mapping]] = ..., scoring: _Optional[_Union[ScoringInfo, _Mapping]] = ...) -> None: ...

class DescribeScoringRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RelationCalibration(_message.Message):
    __slots__ = ("name", "fitted_on", "kin_pairs", "non_kin_pairs", "max_abs_log10_lr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FITTED_ON_FIELD_NUMBER: _ClassVar[int]
    KIN_PAIRS_FIELD_NUMBER: _ClassVar[int]
    NON_KIN_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_LOG10_LR_FIELD_NUMBER: _ClassVar[int]
    name: str
    fitted_on: str
    kin_pairs: int
    non_kin_pairs: int
    max_abs_log10_lr: float
    def __init__(self, name: _Optional[str] = ..., fitted_on: _Optional[str] = ..., kin_pairs: _Optional[int] = ..., non_kin_pairs: _Optional[int] = ..., max_abs_log10_lr: _Optional[float] = ...) -> None: ...

class DescribeScoringResponse(_message.Message):
    __slots__ = ("scoring", "calibrations", "artifact_metrics", "artifact_licence", "artifact_training_data", "artifact_shipped")
    class ArtifactMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORING_FIELD_NUMBER: _ClassVar[int]
    CALIBRATIONS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_METRICS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_LICENCE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHIPPED_FIELD_NUMBER: _ClassVar[int]
    scoring: ScoringInfo
    calibrations: _containers.RepeatedCompositeFieldContainer[RelationCalibration]
    artifact_metrics: _containers.ScalarMap[str, float]
    artifact_licence: str
    artifact_training_data: str
    artifact_shipped: bool
    def __init__(self, scoring: _Optional[_Union[ScoringInfo, _Mapping]] = ..., calibrations: _Optional[_Iterable[_Union[RelationCalibration, _Mapping]]] = ..., artifact_metrics: _Optional[_Mapping[str, float]] = ..., artifact_licence: _Optional[str] = ..., artifact_training_data: _Optional[str] = ..., artifact_shipped: _Optional[bool] = ...) -> None: ...
