"""The ranker against the real embedder (model pack, onnxruntime, a real kinship artifact)
and the real indexer (Milvus Lite in tmp_path), each its own gRPC server on an ephemeral port.

The embedder serves a test artifact (tests/kinship_artifact.py: the real kinship
network with a random projection and a hand calibration), so every gallery face is
enrolled with both vectors, identity and kinship, under the same record id. Two
rankers share the embedder and the gallery: one with the artifact (calibrated), one
with an empty artifacts folder (uncalibrated, the behaviour without `kinship train`).

The gallery is the six faces of insightface's t1.jpg group photo plus a portrait;
the question is a crop of one face of the group, sent as an earlier photo (`self`):
the planted person must come first, and a relative's own person id never comes back.
The test artifact's kinship vectors carry no kinship (random projection), so the
calibrated tests check what the suite says and how it adds up, not its accuracy.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.cli import client_commands
from kinship.embedder import bootstrap as embedder_bootstrap
from kinship.indexer import bootstrap as indexer_bootstrap
from kinship.ranker import bootstrap as ranker_bootstrap
from kinship.runtime import config
from kinship.runtime.server import ServerThread
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)
from tests.kinship_artifact import make_test_artifact, no_artifact

KINSHIP_DIMENSION = 32


def resolved(settings, **flags) -> SimpleNamespace:
    return config.resolve(settings, {"port": "0", **flags}, env={})


def crop(image: bytes, box: common_pb2.BoundingBox, margin: float = 0.6) -> bytes:
    """The face in `box` with a margin around it, as JPEG: a different photo of the same face."""
    pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    w, h = box.x_max - box.x_min, box.y_max - box.y_min
    x0, y0 = int(max(0, box.x_min - margin * w)), int(max(0, box.y_min - margin * h))
    x1, y1 = int(min(pixels.shape[1], box.x_max + margin * w)), int(min(pixels.shape[0], box.y_max + margin * h))
    ok, encoded = cv2.imencode(".jpg", pixels[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def records_of(reply: embedder_pb2.EmbedResponse, people: list[tuple[str, str, common_pb2.PersonAttributes]]):
    """Identity and kinship records of the faces of one Embed reply, paired by record id."""
    identity, kinship = [], []
    for face, (person_id, record_id, attributes) in zip(reply.faces, people, strict=True):
        (kin,) = face.additional_embeddings
        identity.append(
            indexer_pb2.GalleryRecord(
                record_id=record_id, person_id=person_id, embedding=face.embedding, attributes=attributes
            )
        )
        kinship.append(
            indexer_pb2.GalleryRecord(
                record_id=record_id, person_id=person_id, embedding=kin.values, attributes=attributes
            )
        )
    return identity, kinship


def serving(address: str, service: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_photo, portrait_photo):
    data_dir = tmp_path_factory.mktemp("ranker-stack")
    artifacts = data_dir / "artifacts"
    artifact = make_test_artifact(artifacts, dimension=KINSHIP_DIMENSION)
    kin = artifact.kinship_model_id
    with (
        ServerThread(
            embedder_bootstrap.build, resolved(embedder_bootstrap.settings(), artifacts_dir=str(artifacts))
        ) as embedder,
        ServerThread(
            indexer_bootstrap.build, resolved(indexer_bootstrap.settings(), data_dir=str(data_dir))
        ) as indexer,
    ):
        with (
            grpc.insecure_channel(embedder.address) as emb_channel,
            grpc.insecure_channel(indexer.address) as idx_channel,
        ):
            embed = embedder_pb2_grpc.EmbedderStub(emb_channel).Embed
            group = embed(embedder_pb2.EmbedRequest(image=group_photo, additional_model_ids=[kin]), timeout=60)
            portrait = embed(embedder_pb2.EmbedRequest(image=portrait_photo, additional_model_ids=[kin]), timeout=60)
            assert len(group.faces) == 6 and len(portrait.faces) == 1
            assert group.model_id == artifact.identity_model_id
            people = [
                (
                    f"group-{k}",
                    f"group-{k}:t1",
                    common_pb2.PersonAttributes(birth_year=1980 + k, sex=common_pb2.SEX_MALE, source="t1.jpg"),
                )
                for k in range(6)
            ]
            identity, kinship = records_of(group, people)
            more_identity, more_kinship = records_of(
                portrait,
                [("portrait", "portrait:1", common_pb2.PersonAttributes(birth_year=1956, sex=common_pb2.SEX_MALE))],
            )
            upsert = indexer_pb2_grpc.IndexerStub(idx_channel).Upsert
            upsert(indexer_pb2.UpsertRequest(model_id=group.model_id, records=identity + more_identity), timeout=60)
            upsert(indexer_pb2.UpsertRequest(model_id=kin, records=kinship + more_kinship), timeout=60)
        addresses = dict(embedder_address=embedder.address, indexer_address=indexer.address)
        with (
            ServerThread(
                ranker_bootstrap.build,
                resolved(
                    ranker_bootstrap.settings(), artifacts_dir=str(no_artifact(data_dir / "no-artifacts")), **addresses
                ),
            ) as plain,
            ServerThread(
                ranker_bootstrap.build, resolved(ranker_bootstrap.settings(), artifacts_dir=str(artifacts), **addresses)
            ) as calibrated,
            grpc.insecure_channel(plain.address) as plain_channel,
            grpc.insecure_channel(calibrated.address) as calibrated_channel,
        ):
            yield SimpleNamespace(
                stub=ranker_pb2_grpc.KinshipRankerStub(plain_channel),
                calibrated=ranker_pb2_grpc.KinshipRankerStub(calibrated_channel),
                calibrated_address=calibrated.address,
                embedder_address=embedder.address,
                indexer_address=indexer.address,
                artifact=artifact,
                model_id=group.model_id,
                crops=[crop(group_photo, face.box) for face in group.faces],
            )


def self_photo(image: bytes, **kwargs) -> ranker_pb2.Relative:
    return ranker_pb2.Relative(relation=common_pb2.RELATION_SELF, photos=[ranker_pb2.Photo(image=image)], **kwargs)


@pytest.mark.parametrize("planted", range(6))
def test_a_crop_of_a_face_finds_that_person_first(stack, planted):
    reply = stack.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=[self_photo(stack.crops[planted])], top_n=3), timeout=120
    )
    assert reply.model_id == stack.model_id
    assert reply.candidates_considered == 7
    first = reply.candidates[0]
    assert first.person_id == f"group-{planted}"
    assert first.attributes.birth_year == 1980 + planted
    evidence = first.evidence[0]
    assert (evidence.label, evidence.record_id, evidence.retrieved) == ("self", f"group-{planted}:t1", True)
    # Same face, another crop: clearly more alike than anyone else (measured: 0.51-0.97
    # for the planted face, at most 0.35 for the runner-up; the two smallest faces are the weakest).
    assert evidence.similarity > 0.45
    assert first.score - reply.candidates[1].score > 0.2


def test_relatives_are_excluded_and_filters_apply(stack):
    reply = stack.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(
            relatives=[
                self_photo(stack.crops[1], person_id="group-1"),
                ranker_pb2.Relative(
                    relation=common_pb2.RELATION_SIBLING, photos=[ranker_pb2.Photo(image=stack.crops[2])]
                ),
            ],
            missing_person=ranker_pb2.MissingPerson(birth_year=common_pb2.BirthYearRange(min=1980, max=1990)),
            top_n=10,
        ),
        timeout=120,
    )
    people = [c.person_id for c in reply.candidates]
    assert "group-1" not in people and "portrait" not in people  # excluded; born 1956
    assert sorted(people) == ["group-0", "group-2", "group-3", "group-4", "group-5"]
    assert [e.label for e in reply.candidates[0].evidence] == ["self", "sibling"]
    assert [c.rank for c in reply.candidates] == [1, 2, 3, 4, 5]
    scores = [c.score for c in reply.candidates]
    assert scores == sorted(scores, reverse=True)


def test_the_embedder_refusing_a_photo_reaches_the_caller(stack):
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.FindRelatives(
            ranker_pb2.FindRelativesRequest(relatives=[self_photo(stack.crops[0]), self_photo(b"not an image")]),
            timeout=120,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("relatives[1].photos[0]: the photo of 'self-2' was refused")


def test_the_calibrated_ranker_is_ready_only_with_the_embedders_kinship_model(stack):
    assert serving(stack.calibrated_address, "kinship.v1.KinshipRanker")
    described = stack.calibrated.DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=30)
    assert described.scoring.calibrated and described.scoring.artifact_id == stack.artifact.artifact_id
    assert described.scoring.kinship_model_id == stack.artifact.kinship_model_id
    assert {c.name for c in described.calibrations} >= {"father", "mother", "sibling", "self"}
    plain = stack.stub.DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=30)
    assert not plain.scoring.calibrated and "UNCALIBRATED" in plain.scoring.fusion_method


def family(stack, planted: int) -> list[ranker_pb2.Relative]:
    """An earlier photo of the planted person, and a "father" (another face of the group) and a "sister"."""
    return [
        self_photo(stack.crops[planted]),
        ranker_pb2.Relative(relation=common_pb2.RELATION_FATHER, photos=[ranker_pb2.Photo(image=stack.crops[4])]),
        ranker_pb2.Relative(
            relation=common_pb2.RELATION_SISTER, label="anna", photos=[ranker_pb2.Photo(image=stack.crops[5])]
        ),
    ]


def test_calibrated_find_relatives_returns_likelihood_ratios_and_evidence(stack):
    known = ranker_pb2.MissingPerson(birth_year=common_pb2.BirthYearRange(min=1980, max=1990))
    reply = stack.calibrated.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=family(stack, 1), missing_person=known, top_n=10), timeout=120
    )
    artifact = stack.artifact
    info = reply.scoring
    assert (info.calibrated, info.artifact_id, info.calibration_id) == (
        True,
        artifact.artifact_id,
        artifact.calibration.calibration_id,
    )
    assert (info.identity_model_id, info.kinship_model_id) == (artifact.identity_model_id, artifact.kinship_model_id)
    assert reply.fusion_method.startswith("summed-calibrated-llr-v1:")
    people = [c.person_id for c in reply.candidates]
    assert sorted(people) == [f"group-{k}" for k in range(6)]  # the portrait (1956) fails the filter
    assert reply.strong_candidates == sum(c.strong_candidate for c in reply.candidates)
    fused = [c.log10_likelihood_ratio for c in reply.candidates]
    assert fused == sorted(fused, reverse=True)
    prior_odds = info.prior_probability / (1 - info.prior_probability)
    for candidate in reply.candidates:
        assert 1980 <= candidate.attributes.birth_year <= 1990
        assert candidate.score == pytest.approx(candidate.log10_likelihood_ratio, abs=1e-4)
        assert candidate.log10_likelihood_ratio == pytest.approx(
            sum(e.fusion_weight * e.log10_likelihood_ratio for e in candidate.evidence)
        )
        odds = 10**candidate.log10_likelihood_ratio * prior_odds
        assert candidate.posterior_probability == pytest.approx(odds / (1 + odds))
        assert candidate.strong_candidate == (candidate.log10_likelihood_ratio >= info.strong_candidate_log10_lr)
        self_, father, sister = candidate.evidence
        assert (self_.similarity_model_id, self_.calibration) == (artifact.identity_model_id, "self")
        assert (father.similarity_model_id, father.calibration) == (artifact.kinship_model_id, "father-son")
        assert (sister.label, sister.calibration) == ("anna", "sibling")
        assert [e.fusion_weight for e in candidate.evidence] == [1.0, 1.0, 0.5]
        assert all(e.record_id == f"{candidate.person_id}:t1" for e in candidate.evidence)
    # The planted person's earlier photo is strong identity evidence: it tops the list.
    first = reply.candidates[0]
    assert first.person_id == "group-1"
    assert first.evidence[0].log10_likelihood_ratio > 1.0 and first.evidence[0].retrieved


def test_compare_kinship_agrees_with_find_relatives(stack):
    relatives = family(stack, 3)
    found = stack.calibrated.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=relatives, top_n=10), timeout=120
    ).candidates
    for candidate in found[:3]:
        compared = stack.calibrated.CompareKinship(
            ranker_pb2.CompareKinshipRequest(relatives=relatives, candidate_person_id=candidate.person_id),
            timeout=120,
        )
        assert compared.scoring.calibrated
        c = compared.candidate
        assert c.person_id == candidate.person_id and c.rank == 1
        assert c.log10_likelihood_ratio == pytest.approx(candidate.log10_likelihood_ratio, abs=1e-9)
        assert c.posterior_probability == pytest.approx(candidate.posterior_probability)
        assert [(e.record_id, e.similarity) for e in c.evidence] == [
            (e.record_id, e.similarity) for e in candidate.evidence
        ]
        assert [e.log10_likelihood_ratio for e in c.evidence] == pytest.approx(
            [e.log10_likelihood_ratio for e in candidate.evidence], abs=1e-9
        )
    # A candidate given as a photo: the crop of the planted face, scored the same way.
    by_photo = stack.calibrated.CompareKinship(
        ranker_pb2.CompareKinshipRequest(
            relatives=relatives,
            candidate_photos=ranker_pb2.CandidatePhotos(
                photos=[ranker_pb2.Photo(image=stack.crops[3])], sex=common_pb2.SEX_MALE
            ),
        ),
        timeout=120,
    ).candidate
    assert by_photo.person_id == "" and by_photo.evidence[0].record_id == "candidate_photos.photos[0]"
    assert by_photo.evidence[0].similarity == pytest.approx(1.0, abs=1e-4)  # the same photo as the self relative
    assert math.isfinite(by_photo.log10_likelihood_ratio)


def test_the_calibrated_ranker_refuses_another_identity_model(stack):
    with pytest.raises(grpc.RpcError) as caught:
        stack.calibrated.FindRelatives(
            ranker_pb2.FindRelativesRequest(relatives=[self_photo(stack.crops[0])], model_id="some-other-model"),
            timeout=120,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stack.artifact.identity_model_id in caught.value.details()


def test_kinship_enroll_stores_both_vectors_and_the_ranker_scores_them(stack, portrait_photo, tmp_path):
    image = tmp_path / "portrait.png"
    image.write_bytes(portrait_photo)
    item = client_commands.EnrolItem(image, "enrolled-by-cli", common_pb2.PersonAttributes(birth_year=2001))
    report = client_commands.enrol([item], stack.embedder_address, stack.indexer_address, progress=False)
    try:
        assert (report["model_id"], report["kinship_model_id"]) == (stack.model_id, stack.artifact.kinship_model_id)
        (enrolled,) = report["enrolled"]
        with grpc.insecure_channel(stack.indexer_address) as channel:
            get = indexer_pb2_grpc.IndexerStub(channel).GetRecords
            for model, dimension in ((stack.model_id, 128), (stack.artifact.kinship_model_id, KINSHIP_DIMENSION)):
                (record,) = get(
                    indexer_pb2.GetRecordsRequest(model_id=model, person_ids=["enrolled-by-cli"]), timeout=60
                ).records
                assert record.record_id == enrolled["record_id"] and len(record.embedding) == dimension
        reply = stack.calibrated.FindRelatives(
            ranker_pb2.FindRelativesRequest(
                relatives=[
                    self_photo(portrait_photo),
                    ranker_pb2.Relative(
                        relation=common_pb2.RELATION_MOTHER, photos=[ranker_pb2.Photo(image=portrait_photo)]
                    ),
                ],
                missing_person=ranker_pb2.MissingPerson(birth_year=common_pb2.BirthYearRange(min=2000, max=2002)),
            ),
            timeout=120,
        )
        (only,) = reply.candidates
        assert only.person_id == "enrolled-by-cli"
        self_, mother = only.evidence
        # The same photo: identity and kinship cosines of 1, each calibration's upper bound.
        assert self_.similarity == pytest.approx(1.0, abs=1e-4) and mother.similarity == pytest.approx(1.0, abs=1e-4)
        assert self_.log10_likelihood_ratio == pytest.approx(3.0) and mother.log10_likelihood_ratio == pytest.approx(
            2.5
        )
        assert only.strong_candidate and reply.strong_candidates == 1
    finally:
        with grpc.insecure_channel(stack.indexer_address) as channel:
            indexer_pb2_grpc.IndexerStub(channel).Delete(
                indexer_pb2.DeleteRequest(person_ids=["enrolled-by-cli"]), timeout=60
            )
