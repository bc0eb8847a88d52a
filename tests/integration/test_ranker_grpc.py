"""The real ranker (transport, gRPC clients, health) against hand-written Embedder and
Indexer servicers, all over real gRPC on ephemeral ports.

The fakes answer from small tables of 3-d identity and 4-d kinship vectors, so every
score is known by hand, and honour the contracts: the embedder serves a kinship
model (ListModels, additional_model_ids) only when told to, the indexer keeps one
collection per model and applies the filter to Search and GetRecords. The ranker
runs uncalibrated (an empty artifacts folder) or with an artifact bound to the fake
identity model and the hand calibration of tests/kinship_artifact.py. The real
embedder and indexer are exercised in test_ranker_stack.py.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kinship.artifacts import kinship_model_id, write_artifact
from kinship.ranker import bootstrap
from kinship.runtime import config, errors
from kinship.runtime.server import ServerThread
from kinship.security import settings as security_settings
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)
from tests.conftest import free_port
from tests.kinship_artifact import hand_calibration, no_artifact

MODEL = "fake-3d"
UNINDEXED = "served-but-not-indexed"  # the embedder serves it, the gallery has no collection for it
ARTIFACT = "kin-grpc"
KIN = kinship_model_id(ARTIFACT, MODEL)


def unit(*v: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


class TableEmbedder(embedder_pb2_grpc.EmbedderServicer):
    """Known image bytes -> faces (identity vector, kinship vector); anything else is refused."""

    FACES = {
        b"dad.jpg": [(unit(1, 0, 0), unit(1, 0, 0, 0))],
        b"mum.jpg": [(unit(0, 1, 0), unit(0, 1, 0, 0))],
        b"son.jpg": [(unit(1, 1, 0), unit(1, 1, 0, 0))],
        b"empty.jpg": [],
    }

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        self.serves_kinship = True
        self.requests: list[embedder_pb2.EmbedRequest] = []

    def _served(self) -> set[str]:
        return {MODEL, UNINDEXED} | ({KIN} if self.serves_kinship else set())

    async def Embed(self, request, context):
        self.request_ids += [v for k, v in context.invocation_metadata() if k == "x-request-id"]
        self.requests.append(request)
        for model in (request.model_id, *request.additional_model_ids):
            if model and model not in self._served():
                raise errors.NotFound(f"model {model!r} is not served here")
        if request.image not in self.FACES:
            raise errors.InvalidArgument("image cannot be decoded: send JPEG or PNG bytes", field="image")
        faces = [
            embedder_pb2.Face(
                box=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=100, y_max=100),
                detection_score=0.9,
                embedding=identity,
                model_id=request.model_id or MODEL,
                dimension=3,
                quality=0.8,
                additional_embeddings=[
                    common_pb2.Embedding(values=kinship, model_id=m) for m in request.additional_model_ids
                ],
            )
            for identity, kinship in self.FACES[request.image]
        ]
        return embedder_pb2.EmbedResponse(faces=faces, model_id=request.model_id or MODEL, dimension=3)

    async def ListModels(self, request, context):
        models = [
            embedder_pb2.ModelInfo(model_id=MODEL, dimension=3, is_default=True, kind=embedder_pb2.MODEL_KIND_IDENTITY),
            embedder_pb2.ModelInfo(model_id=UNINDEXED, dimension=3, kind=embedder_pb2.MODEL_KIND_IDENTITY),
        ]
        if self.serves_kinship:
            models.append(
                embedder_pb2.ModelInfo(
                    model_id=KIN,
                    dimension=4,
                    kind=embedder_pb2.MODEL_KIND_KINSHIP,
                    artifact_id=ARTIFACT,
                    bound_model_id=MODEL,
                )
            )
        return embedder_pb2.ListModelsResponse(models=models)


def admits(attributes: common_pb2.PersonAttributes, person_id: str, f: indexer_pb2.SearchFilter) -> bool:
    """The indexer's filter rules (SearchFilter in indexer.proto)."""
    if person_id in f.exclude_person_ids:
        return False
    if f.sex and attributes.sex != f.sex:
        return False
    if f.regions and attributes.region not in f.regions:
        return False
    if f.HasField("birth_year") and (f.birth_year.HasField("min") or f.birth_year.HasField("max")):
        if not attributes.HasField("birth_year"):
            return False
        if f.birth_year.HasField("min") and attributes.birth_year < f.birth_year.min:
            return False
        if f.birth_year.HasField("max") and attributes.birth_year > f.birth_year.max:
            return False
    return True


class TableIndexer(indexer_pb2_grpc.IndexerServicer):
    """Brute-force cosine over a few records, one collection per model; remembers what it was sent."""

    MALE, FEMALE = common_pb2.SEX_MALE, common_pb2.SEX_FEMALE
    # person, record, identity vector, kinship vector, attributes
    RECORDS = [
        ("dad-1", "dad-1/r1", unit(1, 0, 0), unit(1, 0, 0, 0), common_pb2.PersonAttributes(birth_year=1960, sex=MALE)),
        (
            "son",
            "son/r1",
            unit(1, 1, 0),
            unit(1, 1, 0, 0),
            common_pb2.PersonAttributes(birth_year=1995, sex=MALE, region="IT-MI"),
        ),
        # A second record of the son that fails a region filter, and looks even more like the family.
        (
            "son",
            "son/r2",
            unit(1, 1, 0.01),
            unit(1, 1, 0, 0.01),
            common_pb2.PersonAttributes(birth_year=1995, sex=MALE),
        ),
        ("stranger", "stranger/r1", unit(0, 0, 1), unit(0, 0, 1, 0), common_pb2.PersonAttributes(sex=FEMALE)),
    ]

    def __init__(self) -> None:
        self.searches: list[indexer_pb2.SearchRequest] = []
        self.fetches: list[indexer_pb2.GetRecordsRequest] = []

    def _collection(self, model_id: str) -> list[tuple[str, str, list[float], common_pb2.PersonAttributes]]:
        if model_id == MODEL:
            return [(p, r, identity, a) for p, r, identity, _, a in self.RECORDS]
        if model_id == KIN:
            return [(p, r, kinship, a) for p, r, _, kinship, a in self.RECORDS]
        raise errors.NotFound(f"the gallery holds no collection for model {model_id!r}")

    async def Search(self, request, context):
        records = self._collection(request.model_id)
        self.searches.append(request)
        results = []
        for query in request.queries:
            hits = [
                indexer_pb2.SearchHit(
                    record_id=record_id,
                    person_id=person_id,
                    similarity=float(np.dot(query.embedding, vector)),
                    attributes=attributes,
                )
                for person_id, record_id, vector, attributes in records
                if admits(attributes, person_id, request.filter)
            ]
            hits.sort(key=lambda h: -h.similarity)
            results.append(indexer_pb2.QueryResult(hits=hits[: request.top_k]))
        return indexer_pb2.SearchResponse(results=results)

    async def Stats(self, request, context):
        """Row counts per collection (the ranker's family-query coverage check): no combined collection here."""
        return indexer_pb2.StatsResponse(
            collections=[
                indexer_pb2.CollectionStats(
                    collection=indexer_pb2.CollectionInfo(model_id=m, record_count=len(self.RECORDS)),
                    tenant_record_count=len(self.RECORDS),
                )
                for m in (MODEL, KIN)
            ],
            tenant=request.tenant,
        )

    async def GetRecords(self, request, context):
        records = self._collection(request.model_id)
        self.fetches.append(request)
        wanted = set(request.person_ids)
        return indexer_pb2.GetRecordsResponse(
            records=[
                indexer_pb2.GalleryRecord(record_id=r, person_id=p, embedding=v, attributes=a)
                for p, r, v, a in records
                if p in wanted and admits(a, p, request.filter)
            ]
        )


class FakeService:
    """Wraps one fake servicer for the runtime; `ready` drives its health."""

    def __init__(self, name: str, servicer, add) -> None:
        self.name = name
        self.service_names = (f"kinship.v1.{name.capitalize()}",)
        self.servicer, self._add = servicer, add
        self.ready = True

    def register(self, server) -> None:
        self._add(self.servicer, server)

    async def check_ready(self) -> None:
        if not self.ready:
            raise errors.Unavailable(f"{self.name} switched off by the test")

    async def close(self) -> None:
        pass


def server_settings(service: str, **overrides) -> SimpleNamespace:
    values = vars(config.resolve(security_settings.server_settings(service, 0), env={}))
    return SimpleNamespace(**{**values, "port": 0, **overrides})


def ranker_settings(embedder_address: str, indexer_address: str, artifacts_dir, **flags) -> SimpleNamespace:
    flags = {
        "port": "0",
        "embedder_address": embedder_address,
        "indexer_address": indexer_address,
        "artifacts_dir": str(artifacts_dir),
        **flags,
    }
    return config.resolve(bootstrap.settings(), flags, env={})


def write_grpc_artifact(folder) -> None:
    """An artifact bound to MODEL with the hand calibration (the ranker never reads the network)."""
    write_artifact(
        folder,
        artifact_id=ARTIFACT,
        identity_model_id=MODEL,
        network=b"not read by the ranker",
        dimension=4,
        calibration=hand_calibration(),
        created_at="2026-11-27T00:00:00Z",
        dataset={},
        training={},
        metrics={"auc": 0.8, "cllr": 0.7},
        software_version="test",
    )


@pytest.fixture
def fakes():
    embedder = FakeService("embedder", TableEmbedder(), embedder_pb2_grpc.add_EmbedderServicer_to_server)
    indexer = FakeService("indexer", TableIndexer(), indexer_pb2_grpc.add_IndexerServicer_to_server)
    with (
        ServerThread(lambda s: embedder, server_settings("embedder")) as emb_srv,
        ServerThread(lambda s: indexer, server_settings("indexer")) as idx_srv,
    ):
        yield SimpleNamespace(
            embedder=embedder,
            indexer=indexer,
            indexer_server=idx_srv,
            embedder_address=emb_srv.address,
            indexer_address=idx_srv.address,
        )


def running_ranker(settings):
    with ServerThread(bootstrap.build, settings) as srv, grpc.insecure_channel(srv.address) as channel:
        yield SimpleNamespace(
            server=srv,
            stub=ranker_pb2_grpc.KinshipRankerStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
        )


@pytest.fixture
def ranker(fakes, tmp_path):
    """Uncalibrated: the artifacts folder's ACTIVE says none."""
    yield from running_ranker(
        ranker_settings(fakes.embedder_address, fakes.indexer_address, no_artifact(tmp_path / "none"))
    )


@pytest.fixture
def calibrated_ranker(fakes, tmp_path):
    write_grpc_artifact(tmp_path / "artifacts")
    yield from running_ranker(
        ranker_settings(
            fakes.embedder_address, fakes.indexer_address, tmp_path / "artifacts", strong_candidate_log10_lr="1.5"
        )
    )


def relative(relation, *images: bytes, label: str = "", person_id: str = "") -> ranker_pb2.Relative:
    return ranker_pb2.Relative(
        label=label, relation=relation, photos=[ranker_pb2.Photo(image=i) for i in images], person_id=person_id
    )


def health_of(stub, service: str = "kinship.v1.KinshipRanker") -> int:
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def field_violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [v.field for v in bad.field_violations]
    return out


def test_find_relatives_ranks_with_evidence(ranker, fakes):
    request = ranker_pb2.FindRelativesRequest(
        relatives=[
            relative(common_pb2.RELATION_FATHER, b"dad.jpg", person_id="dad-1"),
            relative(common_pb2.RELATION_MOTHER, b"mum.jpg", label="mum"),
        ],
        top_n=5,
    )
    reply, call = ranker.stub.FindRelatives.with_call(request, timeout=30, metadata=(("x-request-id", "case-42"),))

    assert reply.model_id == MODEL
    assert reply.fusion_method.startswith("mean-max-cosine-v1:")
    assert not reply.scoring.calibrated and "UNCALIBRATED" in reply.scoring.fusion_method
    assert reply.scoring.identity_model_id == MODEL and reply.strong_candidates == 0
    assert all(c.posterior_probability == pytest.approx(0.001) for c in reply.candidates)
    assert reply.candidates_considered == 2  # dad-1 excluded: son and stranger
    assert [(c.person_id, c.rank) for c in reply.candidates] == [("son", 1), ("stranger", 2)]
    son = reply.candidates[0]
    assert son.score == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert [(e.label, e.relation) for e in son.evidence] == [
        ("father", common_pb2.RELATION_FATHER),
        ("mum", common_pb2.RELATION_MOTHER),
    ]
    assert [e.similarity for e in son.evidence] == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-6)
    assert all(e.retrieved and e.record_id == "son/r1" and e.photo_index == 0 for e in son.evidence)
    assert son.attributes.HasField("birth_year") and son.attributes.birth_year == 1995
    assert son.attributes.region == "IT-MI"
    assert not reply.candidates[1].attributes.HasField("birth_year")
    assert reply.candidates[1].score == pytest.approx(0.0, abs=1e-6)

    sent = fakes.indexer.servicer.searches[-1]
    assert sent.model_id == MODEL and len(sent.queries) == 2 and sent.top_k == 100
    assert list(sent.filter.exclude_person_ids) == ["dad-1"]
    assert sent.filter.sex == common_pb2.SEX_UNSPECIFIED
    assert not sent.filter.HasField("birth_year")
    fetched = fakes.indexer.servicer.fetches[-1]
    assert fetched.model_id == MODEL and sorted(fetched.person_ids) == ["son", "stranger"]
    assert list(fetched.filter.exclude_person_ids) == ["dad-1"]
    assert [r.model_id for r in fakes.embedder.servicer.requests[-2:]] == ["", ""]
    assert all(not r.additional_model_ids for r in fakes.embedder.servicer.requests[-2:])
    # One request id follows the request into the embedder.
    assert fakes.embedder.servicer.request_ids[-2:] == ["case-42", "case-42"]
    assert dict(call.initial_metadata())["x-request-id"] == "case-42"


def refresh(server: ServerThread) -> None:
    """Runs the periodic health check now instead of waiting for it."""
    server.call(lambda: server.running.refresh_health())


def test_health_follows_the_dependencies(ranker, fakes):
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_of(ranker.health) == serving
    assert health_of(ranker.health, "") == serving
    fakes.indexer.ready = False
    refresh(fakes.indexer_server)
    refresh(ranker.server)
    assert health_of(ranker.health) == not_serving
    fakes.indexer.ready = True
    refresh(fakes.indexer_server)
    refresh(ranker.server)
    assert health_of(ranker.health) == serving


@pytest.mark.parametrize(
    ("request_", "code", "fields", "words"),
    [
        (ranker_pb2.FindRelativesRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["relatives"], "at least one relative"),
        (
            ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_FATHER, b"dad.jpg", b"empty.jpg")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["relatives[0].photos[1].image"],
            "no face found in the photo of 'father'",
        ),
        (
            ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_SELF, b"\x89PNG broken")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["relatives[0].photos[0].image"],
            "relatives[0].photos[0]: the photo of 'self' was refused: image cannot be decoded",
        ),
        (
            ranker_pb2.FindRelativesRequest(relatives=[relative(99, b"dad.jpg")]),  # 7 and 8 are grandparents
            grpc.StatusCode.INVALID_ARGUMENT,
            ["relatives[0].relation"],
            "unknown relation 99",
        ),
        (
            ranker_pb2.FindRelativesRequest(
                relatives=[relative(common_pb2.RELATION_SELF, b"dad.jpg")], model_id="other"
            ),
            grpc.StatusCode.NOT_FOUND,
            [],
            "model 'other' is not served",
        ),
        (
            ranker_pb2.FindRelativesRequest(
                relatives=[relative(common_pb2.RELATION_SELF, b"dad.jpg")], model_id=UNINDEXED
            ),
            grpc.StatusCode.NOT_FOUND,
            [],
            "no collection for model",
        ),
    ],
    ids=["no-relatives", "no-face", "undecodable", "unknown-relation", "model-not-served", "model-not-indexed"],
)
def test_errors_reach_the_caller_with_their_code_and_field(ranker, request_, code, fields, words):
    with pytest.raises(grpc.RpcError) as caught:
        ranker.stub.FindRelatives(request_, timeout=30)
    assert caught.value.code() == code
    assert words in caught.value.details()
    assert field_violations(caught.value) == fields


def test_an_unreachable_embedder_means_not_serving_and_unavailable(fakes, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    with ServerThread(bootstrap.build, ranker_settings(nowhere, fakes.indexer_address, tmp_path)) as srv:
        with grpc.insecure_channel(srv.address) as channel:
            assert health_of(health_pb2_grpc.HealthStub(channel)) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as caught:
                ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(
                    ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_SELF, b"dad.jpg")]),
                    timeout=30,
                )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "embedder" in caught.value.details()


# --- with a trained artifact --------------------------------------------------------------

FAMILY = [
    relative(common_pb2.RELATION_FATHER, b"dad.jpg", person_id="dad-1"),
    relative(common_pb2.RELATION_MOTHER, b"mum.jpg"),
    relative(common_pb2.RELATION_SISTER, b"son.jpg", label="anna"),
]


def test_calibrated_find_relatives_fills_every_field(calibrated_ranker, fakes):
    known = ranker_pb2.MissingPerson(sex=common_pb2.SEX_MALE, regions=["IT-MI"])
    reply = calibrated_ranker.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=FAMILY, missing_person=known, top_n=5), timeout=30
    )
    info = reply.scoring
    assert (info.calibrated, info.artifact_id, info.calibration_id) == (True, ARTIFACT, "cal-test")
    assert (info.identity_model_id, info.kinship_model_id) == (MODEL, KIN)
    assert info.fusion_method == reply.fusion_method and reply.fusion_method.startswith("summed-calibrated-llr-v1:")
    assert (info.prior_probability, info.strong_candidate_log10_lr) == (0.001, 1.5)
    assert [c.person_id for c in reply.candidates] == ["son"]  # the stranger fails the filter
    son = reply.candidates[0]
    assert son.score == pytest.approx(son.log10_likelihood_ratio, abs=1e-5)
    llr = (8 / math.sqrt(2) - 2) / math.log(10)  # hand calibration at cosine 1/sqrt(2)
    assert [e.log10_likelihood_ratio for e in son.evidence] == pytest.approx([llr, llr, 2.5])
    assert [e.fusion_weight for e in son.evidence] == [1.0, 1.0, 0.5]  # a sister beside parents
    assert son.log10_likelihood_ratio == pytest.approx(2 * llr + 0.5 * 2.5)
    assert [e.calibration for e in son.evidence] == ["father-son", "mother-son", "sibling"]
    assert {e.similarity_model_id for e in son.evidence} == {KIN}
    assert [e.record_id for e in son.evidence] == ["son/r1"] * 3  # son/r2 has no region: never scored
    assert son.strong_candidate and reply.strong_candidates == 1
    odds = 10**son.log10_likelihood_ratio * 0.001 / 0.999
    assert son.posterior_probability == pytest.approx(odds / (1 + odds))
    # Every photo embedded once with the kinship model; both collections searched and read with the filter.
    assert [list(r.additional_model_ids) for r in fakes.embedder.servicer.requests[-3:]] == [[KIN]] * 3
    assert {r.model_id for r in fakes.embedder.servicer.requests[-3:]} == {MODEL}
    assert sorted(r.model_id for r in fakes.indexer.servicer.searches[-2:]) == sorted([MODEL, KIN])
    assert sorted(r.model_id for r in fakes.indexer.servicer.fetches[-2:]) == sorted([MODEL, KIN])
    assert all(list(r.filter.regions) == ["IT-MI"] for r in fakes.indexer.servicer.fetches[-2:])


def test_compare_kinship_agrees_with_find_relatives(calibrated_ranker):
    known = ranker_pb2.MissingPerson(regions=["IT-MI"])
    found = calibrated_ranker.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=FAMILY, missing_person=known), timeout=30
    ).candidates[0]
    by_person = calibrated_ranker.stub.CompareKinship(
        ranker_pb2.CompareKinshipRequest(relatives=FAMILY, candidate_person_id="son", missing_person=known), timeout=30
    )
    by_photo = calibrated_ranker.stub.CompareKinship(
        ranker_pb2.CompareKinshipRequest(
            relatives=FAMILY,
            candidate_photos=ranker_pb2.CandidatePhotos(
                photos=[ranker_pb2.Photo(image=b"son.jpg")], sex=common_pb2.SEX_MALE
            ),
        ),
        timeout=30,
    )
    for reply in (by_person, by_photo):
        c = reply.candidate
        assert reply.scoring.calibrated and c.rank == 1
        assert c.log10_likelihood_ratio == pytest.approx(found.log10_likelihood_ratio)
        assert [e.log10_likelihood_ratio for e in c.evidence] == pytest.approx(
            [e.log10_likelihood_ratio for e in found.evidence]
        )
        assert [e.calibration for e in c.evidence] == [e.calibration for e in found.evidence]
    assert by_person.candidate.person_id == "son" and by_photo.candidate.person_id == ""
    assert by_photo.candidate.evidence[0].record_id == "candidate_photos.photos[0]"


@pytest.mark.parametrize(
    ("request_", "code", "fields", "words"),
    [
        (
            ranker_pb2.CompareKinshipRequest(relatives=FAMILY),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["candidate"],
            "no candidate",
        ),
        (
            ranker_pb2.CompareKinshipRequest(
                relatives=FAMILY,
                candidate_person_id="son",
                missing_person=ranker_pb2.MissingPerson(sex=common_pb2.SEX_FEMALE),
            ),
            grpc.StatusCode.NOT_FOUND,
            [],
            "none passes",
        ),
        (
            ranker_pb2.CompareKinshipRequest(relatives=FAMILY, candidate_person_id="son", model_id="other"),
            grpc.StatusCode.FAILED_PRECONDITION,
            [],
            f"bound to ({MODEL})",
        ),
        (
            ranker_pb2.CompareKinshipRequest(relatives=FAMILY, candidate_person_id="son", prior_probability=1.0),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["prior_probability"],
            "prior probability must be above 0 and below 1",
        ),
    ],
    ids=["no-candidate", "filtered-out", "foreign-model", "bad-prior"],
)
def test_compare_kinship_errors(calibrated_ranker, request_, code, fields, words):
    with pytest.raises(grpc.RpcError) as caught:
        calibrated_ranker.stub.CompareKinship(request_, timeout=30)
    assert caught.value.code() == code
    assert words in caught.value.details()
    assert field_violations(caught.value) == fields


def test_a_foreign_model_id_is_a_failed_precondition(calibrated_ranker):
    with pytest.raises(grpc.RpcError) as caught:
        calibrated_ranker.stub.FindRelatives(
            ranker_pb2.FindRelativesRequest(relatives=FAMILY, model_id=UNINDEXED), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ARTIFACT in caught.value.details() and MODEL in caught.value.details()


def test_describe_scoring(calibrated_ranker, ranker):
    described = calibrated_ranker.stub.DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=10)
    assert described.scoring.calibrated and described.scoring.artifact_id == ARTIFACT
    assert dict(described.artifact_metrics) == pytest.approx({"auc": 0.8, "cllr": 0.7})
    by_name = {c.name: c for c in described.calibrations}
    assert set(by_name) == set(hand_calibration().relations)
    assert (by_name["self"].max_abs_log10_lr, by_name["self"].kin_pairs) == (3.0, 100)
    bare = ranker.stub.DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=10)
    assert not bare.scoring.calibrated and not bare.calibrations and "UNCALIBRATED" in bare.scoring.fusion_method


def test_readiness_needs_the_embedder_to_serve_the_artifacts_kinship_model(calibrated_ranker, fakes):
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_of(calibrated_ranker.health) == serving
    fakes.embedder.servicer.serves_kinship = False
    refresh(calibrated_ranker.server)
    assert health_of(calibrated_ranker.health) == not_serving
    fakes.embedder.servicer.serves_kinship = True
    refresh(calibrated_ranker.server)
    assert health_of(calibrated_ranker.health) == serving


def test_brother_and_sister_reach_the_ranker(ranker):
    reply = ranker.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(
            relatives=[
                relative(common_pb2.RELATION_BROTHER, b"dad.jpg"),
                relative(common_pb2.RELATION_SISTER, b"mum.jpg"),
            ]
        ),
        timeout=30,
    )
    assert [(e.label, e.relation) for e in reply.candidates[0].evidence] == [
        ("brother", common_pb2.RELATION_BROTHER),
        ("sister", common_pb2.RELATION_SISTER),
    ]
