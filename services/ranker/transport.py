"""kinship.v1.KinshipRanker over grpc.aio: protobuf <-> domain, nothing more.

Domain errors raised here or below reach the caller through the runtime's
interceptor with their own status code.
"""

from __future__ import annotations

import grpc

from kinship.runtime.tenancy import resolve_tenant
from kinship.v1 import ranker_pb2, ranker_pb2_grpc

from .adapters.convert import RELATION_TO_PB, attributes_to_pb, relation_from_pb, sex_from_pb
from .domain.model import (
    CompareKinshipInput,
    Comparison,
    FindRelativesInput,
    MissingPerson,
    Photo,
    RankedCandidate,
    Ranking,
    RelativeInput,
    ScoringDescription,
    ScoringInfo,
)
from .domain.service import KinshipRanker


def photo_from_pb(photo: ranker_pb2.Photo) -> Photo:
    return Photo(
        image=photo.image,
        capture_year=photo.capture_year if photo.HasField("capture_year") else None,
        age_at_photo=photo.age_at_photo if photo.HasField("age_at_photo") else None,
        pre_aligned=photo.pre_aligned,
    )


def relatives_from_pb(relatives) -> list[RelativeInput]:
    return [
        RelativeInput(
            label=relative.label,
            relation=relation_from_pb(relative.relation, f"relatives[{i}].relation"),
            photos=[photo_from_pb(photo) for photo in relative.photos],
            person_id=relative.person_id,
        )
        for i, relative in enumerate(relatives)
    ]


def missing_person_from_pb(known: ranker_pb2.MissingPerson) -> MissingPerson:
    birth_year = known.birth_year
    return MissingPerson(
        sex=sex_from_pb(known.sex, "missing_person.sex"),
        birth_year_min=birth_year.min if birth_year.HasField("min") else None,
        birth_year_max=birth_year.max if birth_year.HasField("max") else None,
        regions=tuple(known.regions),
        soft_birth_year=known.soft.birth_year,
        soft_regions=known.soft.regions,
        # 0 (unset in proto3) means the ranker's default penalty.
        birth_year_log10_lr_per_year=known.soft.birth_year_log10_lr_per_year or None,
        region_log10_lr=known.soft.region_log10_lr or None,
        include_unknown=known.include_unknown,
    )


def request_from_pb(request: ranker_pb2.FindRelativesRequest) -> FindRelativesInput:
    return FindRelativesInput(
        relatives=relatives_from_pb(request.relatives),
        missing_person=missing_person_from_pb(request.missing_person),
        top_n=request.top_n,
        model_id=request.model_id,
        prior_probability=request.prior_probability,
        tenant=resolve_tenant(request.tenant),
    )


def comparison_from_pb(request: ranker_pb2.CompareKinshipRequest) -> CompareKinshipInput:
    which = request.WhichOneof("candidate")
    photos = request.candidate_photos
    return CompareKinshipInput(
        relatives=relatives_from_pb(request.relatives),
        candidate_photos=[photo_from_pb(p) for p in photos.photos] if which == "candidate_photos" else [],
        candidate_sex=sex_from_pb(photos.sex, "candidate_photos.sex"),
        candidate_person_id=request.candidate_person_id if which == "candidate_person_id" else "",
        missing_person=missing_person_from_pb(request.missing_person),
        model_id=request.model_id,
        prior_probability=request.prior_probability,
        tenant=resolve_tenant(request.tenant),
    )


def scoring_info_to_pb(info: ScoringInfo) -> ranker_pb2.ScoringInfo:
    return ranker_pb2.ScoringInfo(
        calibrated=info.calibrated,
        artifact_id=info.artifact_id,
        calibration_id=info.calibration_id,
        identity_model_id=info.identity_model_id,
        kinship_model_id=info.kinship_model_id,
        fusion_method=info.fusion_method,
        prior_probability=info.prior_probability,
        strong_candidate_log10_lr=info.strong_candidate_log10_lr,
    )


def candidate_to_pb(candidate: RankedCandidate) -> ranker_pb2.Candidate:
    return ranker_pb2.Candidate(
        person_id=candidate.person_id,
        rank=candidate.rank,
        score=candidate.score,
        attributes=attributes_to_pb(candidate.attributes),
        evidence=[
            ranker_pb2.RelativeEvidence(
                label=e.label,
                relation=RELATION_TO_PB[e.relation],
                similarity=e.similarity,
                photo_index=e.photo_index,
                record_id=e.record_id,
                retrieved=e.retrieved,
                log10_likelihood_ratio=e.log10_likelihood_ratio,
                fusion_weight=e.fusion_weight,
                similarity_model_id=e.similarity_model_id,
                calibration=e.calibration,
            )
            for e in candidate.evidence
        ],
        log10_likelihood_ratio=candidate.log10_likelihood_ratio,
        posterior_probability=candidate.posterior_probability,
        strong_candidate=candidate.strong_candidate,
        facts=[
            ranker_pb2.FactEvidence(
                fact=f.fact,
                detail=f.detail,
                log10_likelihood_ratio=f.log10_likelihood_ratio,
                years_outside=f.years_outside,
            )
            for f in candidate.facts
        ],
    )


def response_to_pb(ranking: Ranking) -> ranker_pb2.FindRelativesResponse:
    response = ranker_pb2.FindRelativesResponse(
        candidates=[candidate_to_pb(c) for c in ranking.candidates],
        model_id=ranking.model_id,
        fusion_method=ranking.fusion_method,
        candidates_considered=ranking.candidates_considered,
        strong_candidates=ranking.strong_candidates,
    )
    response.excluded_unknown.birth_year = ranking.excluded_unknown.birth_year
    response.excluded_unknown.sex = ranking.excluded_unknown.sex
    if ranking.scoring is not None:
        response.scoring.CopyFrom(scoring_info_to_pb(ranking.scoring))
    return response


def comparison_to_pb(comparison: Comparison) -> ranker_pb2.CompareKinshipResponse:
    return ranker_pb2.CompareKinshipResponse(
        candidate=candidate_to_pb(comparison.candidate), scoring=scoring_info_to_pb(comparison.scoring)
    )


def description_to_pb(description: ScoringDescription) -> ranker_pb2.DescribeScoringResponse:
    return ranker_pb2.DescribeScoringResponse(
        scoring=scoring_info_to_pb(description.scoring),
        calibrations=[
            ranker_pb2.RelationCalibration(
                name=c.name,
                fitted_on=c.fitted_on,
                kin_pairs=c.kin_pairs,
                non_kin_pairs=c.non_kin_pairs,
                max_abs_log10_lr=c.max_abs_log10_lr,
            )
            for c in description.calibrations
        ],
        artifact_metrics=dict(description.artifact_metrics),
        artifact_licence=description.artifact_licence,
        artifact_training_data=description.artifact_training_data,
        artifact_shipped=description.artifact_shipped,
    )


class KinshipRankerServicer(ranker_pb2_grpc.KinshipRankerServicer):
    def __init__(self, ranker: KinshipRanker):
        self._ranker = ranker

    async def FindRelatives(
        self, request: ranker_pb2.FindRelativesRequest, context: grpc.aio.ServicerContext
    ) -> ranker_pb2.FindRelativesResponse:
        return response_to_pb(await self._ranker.find_relatives(request_from_pb(request)))

    async def CompareKinship(
        self, request: ranker_pb2.CompareKinshipRequest, context: grpc.aio.ServicerContext
    ) -> ranker_pb2.CompareKinshipResponse:
        return comparison_to_pb(await self._ranker.compare_kinship(comparison_from_pb(request)))

    async def DescribeScoring(
        self, request: ranker_pb2.DescribeScoringRequest, context: grpc.aio.ServicerContext
    ) -> ranker_pb2.DescribeScoringResponse:
        return description_to_pb(self._ranker.describe_scoring())
