"""kinship.v1.KinshipRanker over grpc.aio: protobuf <-> domain, nothing more.

Domain errors raised here or below reach the caller through the runtime's
interceptor with their own status code.
"""

from __future__ import annotations

import grpc

from kinship.v1 import ranker_pb2, ranker_pb2_grpc

from .adapters.convert import RELATION_TO_PB, attributes_to_pb, relation_from_pb, sex_from_pb
from .domain.model import FindRelativesInput, MissingPerson, Ranking, RelativeInput
from .domain.service import KinshipRanker


def request_from_pb(request: ranker_pb2.FindRelativesRequest) -> FindRelativesInput:
    known = request.missing_person
    birth_year = known.birth_year
    return FindRelativesInput(
        relatives=[
            RelativeInput(
                label=relative.label,
                relation=relation_from_pb(relative.relation, f"relatives[{i}].relation"),
                photos=[photo.image for photo in relative.photos],
                person_id=relative.person_id,
            )
            for i, relative in enumerate(request.relatives)
        ],
        missing_person=MissingPerson(
            sex=sex_from_pb(known.sex, "missing_person.sex"),
            birth_year_min=birth_year.min if birth_year.HasField("min") else None,
            birth_year_max=birth_year.max if birth_year.HasField("max") else None,
            regions=tuple(known.regions),
        ),
        top_n=request.top_n,
        model_id=request.model_id,
    )


def response_to_pb(ranking: Ranking) -> ranker_pb2.FindRelativesResponse:
    return ranker_pb2.FindRelativesResponse(
        candidates=[
            ranker_pb2.Candidate(
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
                    )
                    for e in candidate.evidence
                ],
            )
            for candidate in ranking.candidates
        ],
        model_id=ranking.model_id,
        fusion_method=ranking.fusion_method,
        candidates_considered=ranking.candidates_considered,
    )


class KinshipRankerServicer(ranker_pb2_grpc.KinshipRankerServicer):
    def __init__(self, ranker: KinshipRanker):
        self._ranker = ranker

    async def FindRelatives(
        self, request: ranker_pb2.FindRelativesRequest, context: grpc.aio.ServicerContext
    ) -> ranker_pb2.FindRelativesResponse:
        return response_to_pb(await self._ranker.find_relatives(request_from_pb(request)))
