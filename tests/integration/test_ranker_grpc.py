"""The real ranker (transport, gRPC clients, health) against hand-written Embedder and
Indexer servicers, all over real gRPC on ephemeral ports.

The fakes answer from small tables of 3-d vectors, so every score is known by hand;
the real embedder and indexer are exercised in test_ranker_stack.py.
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

from kinship.ranker import bootstrap
from kinship.runtime import config, errors
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
from tests.conftest import free_port

MODEL = "fake-3d"
UNINDEXED = "served-but-not-indexed"  # the embedder serves it, the gallery has no collection for it


def unit(*v: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


class TableEmbedder(embedder_pb2_grpc.EmbedderServicer):
    """Known image bytes -> faces; anything else is refused like an undecodable image."""

    FACES = {
        b"dad.jpg": [unit(1, 0, 0)],
        b"mum.jpg": [unit(0, 1, 0)],
        b"empty.jpg": [],
    }

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    async def Embed(self, request, context):
        self.request_ids += [v for k, v in context.invocation_metadata() if k == "x-request-id"]
        if request.model_id not in ("", MODEL, UNINDEXED):
            raise errors.NotFound(f"model {request.model_id!r} is not served here")
        if request.image not in self.FACES:
            raise errors.InvalidArgument("image cannot be decoded: send JPEG or PNG bytes", field="image")
        faces = [
            embedder_pb2.Face(
                box=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=100, y_max=100),
                detection_score=0.9,
                embedding=vector,
                model_id=request.model_id or MODEL,
                dimension=3,
            )
            for vector in self.FACES[request.image]
        ]
        return embedder_pb2.EmbedResponse(faces=faces, model_id=request.model_id or MODEL, dimension=3)


class TableIndexer(indexer_pb2_grpc.IndexerServicer):
    """Brute-force cosine over a few records; remembers the searches it was sent."""

    RECORDS = [
        ("dad-1", "dad-1/r1", unit(1, 0, 0), common_pb2.PersonAttributes(birth_year=1960, sex=common_pb2.SEX_MALE)),
        (
            "son",
            "son/r1",
            unit(1, 1, 0),
            common_pb2.PersonAttributes(birth_year=1995, sex=common_pb2.SEX_MALE, region="IT-MI"),
        ),
        ("stranger", "stranger/r1", unit(0, 0, 1), common_pb2.PersonAttributes(sex=common_pb2.SEX_FEMALE)),
    ]

    def __init__(self) -> None:
        self.searches: list[indexer_pb2.SearchRequest] = []

    async def Search(self, request, context):
        if request.model_id != MODEL:
            raise errors.NotFound(f"the gallery holds no collection for model {request.model_id!r}")
        self.searches.append(request)
        excluded = set(request.filter.exclude_person_ids)
        results = []
        for query in request.queries:
            hits = [
                indexer_pb2.SearchHit(
                    record_id=record_id,
                    person_id=person_id,
                    similarity=float(np.dot(query.embedding, vector)),
                    attributes=attributes,
                )
                for person_id, record_id, vector, attributes in self.RECORDS
                if person_id not in excluded
            ]
            hits.sort(key=lambda h: -h.similarity)
            results.append(indexer_pb2.QueryResult(hits=hits[: request.top_k]))
        return indexer_pb2.SearchResponse(results=results)

    async def GetRecords(self, request, context):
        wanted = set(request.person_ids)
        return indexer_pb2.GetRecordsResponse(
            records=[
                indexer_pb2.GalleryRecord(record_id=r, person_id=p, embedding=v, attributes=a)
                for p, r, v, a in self.RECORDS
                if p in wanted
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
    values = vars(config.resolve(config.server_settings(service, 0), env={}))
    return SimpleNamespace(**{**values, "port": 0, **overrides})


def ranker_settings(embedder_address: str, indexer_address: str) -> SimpleNamespace:
    flags = {"port": "0", "embedder_address": embedder_address, "indexer_address": indexer_address}
    return config.resolve(bootstrap.settings(), flags, env={})


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


@pytest.fixture
def ranker(fakes):
    with ServerThread(bootstrap.build, ranker_settings(fakes.embedder_address, fakes.indexer_address)) as srv:
        with grpc.insecure_channel(srv.address) as channel:
            yield SimpleNamespace(
                server=srv,
                stub=ranker_pb2_grpc.KinshipRankerStub(channel),
                health=health_pb2_grpc.HealthStub(channel),
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
        missing_person=ranker_pb2.MissingPerson(sex=common_pb2.SEX_MALE),
        top_n=5,
    )
    reply, call = ranker.stub.FindRelatives.with_call(request, timeout=30, metadata=(("x-request-id", "case-42"),))

    assert reply.model_id == MODEL
    assert reply.fusion_method.startswith("mean-max-cosine-v1:")
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
    assert sent.filter.sex == common_pb2.SEX_MALE
    assert not sent.filter.HasField("birth_year")
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
            ranker_pb2.FindRelativesRequest(relatives=[relative(7, b"dad.jpg")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["relatives[0].relation"],
            "unknown relation 7",
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


def test_an_unreachable_embedder_means_not_serving_and_unavailable(fakes):
    nowhere = f"127.0.0.1:{free_port()}"
    with ServerThread(bootstrap.build, ranker_settings(nowhere, fakes.indexer_address)) as srv:
        with grpc.insecure_channel(srv.address) as channel:
            assert health_of(health_pb2_grpc.HealthStub(channel)) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as caught:
                ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives(
                    ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_SELF, b"dad.jpg")]),
                    timeout=30,
                )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "embedder" in caught.value.details()
