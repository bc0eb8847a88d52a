"""One call deadline, from the caller through the interceptors to every outgoing call.

The runtime's interceptor binds the caller's deadline and the security interceptor caps it at
`--max-deadline-seconds`, both less the answer margin, in `kinship.runtime.deadlines`; the
indexer's Milvus calls and the ranker's embedder calls take their timeouts from it. Each test
runs a real server on an ephemeral port and reads the timeout the outgoing call was given.
"""

from __future__ import annotations

import threading

import grpc
import pytest

from kinship.indexer import bootstrap as indexer_bootstrap
from kinship.ranker import bootstrap as ranker_bootstrap
from kinship.runtime import config, deadlines
from kinship.runtime.server import ServerThread
from kinship.v1 import common_pb2, embedder_pb2_grpc, indexer_pb2, indexer_pb2_grpc, ranker_pb2, ranker_pb2_grpc
from tests.integration.test_ranker_grpc import FakeService, TableEmbedder, TableIndexer, relative, server_settings
from tests.kinship_artifact import no_artifact

CAP = 2.0  # the deployment's --max-deadline-seconds in these tests
WORK = deadlines.for_work(CAP)  # 1.8: the cap less the answer margin (a tenth of it here)
#: A caller's timeout may reach the server rounded up (grpc core: the grpc-timeout "encoding may round up").
WIRE_ROUNDING = 0.05


class TimeoutsSeen:
    """A Milvus client, ours or pymilvus's, that notes the timeout of each call made on a gallery thread.

    The health ping runs on a thread of its own with the adapter's own timeout: it is left out.
    """

    def __init__(self, client):
        self._client = client
        self.timeouts: list[tuple[str, float]] = []

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def noted(*args, **kwargs):
            if "timeout" in kwargs and threading.current_thread().name.startswith("indexer-gallery"):
                self.timeouts.append((name, kwargs["timeout"]))
            return method(*args, **kwargs)

        return noted


class EmptyMilvus:
    """The one call of pymilvus's MilvusClient that ListCollections makes on an empty Milvus."""

    def list_collections(self, timeout=None):
        return []

    def close(self):
        pass


def indexer_settings(cap: float = CAP, **values):
    flags = {"port": 0, "log_level": "warning", "max_deadline_seconds": str(cap), "milvus_timeout_seconds": "30"}
    return config.resolve(indexer_bootstrap.settings(), {**flags, **values}, env={})


def indexer_with(client):
    """The real indexer, its Milvus client replaced before it connects."""

    async def build(settings):
        service = await indexer_bootstrap.build(settings)
        service.store._client = client
        return service

    return build


def list_collections_timeouts(server: ServerThread, seen: TimeoutsSeen, timeout: float | None) -> list[float]:
    seen.timeouts.clear()
    with grpc.insecure_channel(server.address) as channel:
        indexer_pb2_grpc.IndexerStub(channel).ListCollections(indexer_pb2.ListCollectionsRequest(), timeout=timeout)
    assert seen.timeouts, "no Milvus call was made on a gallery thread"
    return [t for _, t in seen.timeouts]


def test_the_deployments_cap_reaches_the_milvus_call(tmp_path):
    seen = TimeoutsSeen(EmptyMilvus())
    with ServerThread(indexer_with(seen), indexer_settings(data_dir=tmp_path)) as server:
        # The caller would wait 20 s, the deployment allows 2: Milvus is given under 2 less the margin.
        (capped,) = list_collections_timeouts(server, seen, 20.0)
        assert WORK - 0.8 < capped <= WORK, capped
        # A caller without a deadline gets the cap too (never the adapter's 30 s).
        (unbounded,) = list_collections_timeouts(server, seen, None)
        assert WORK - 0.8 < unbounded <= WORK, unbounded
        # A caller's shorter deadline wins over the cap, less its own margin (a tenth of 1 s).
        (shorter,) = list_collections_timeouts(server, seen, 1.0)
        assert 0.5 < shorter <= deadlines.for_work(1.0) + WIRE_ROUNDING, shorter


def test_the_cap_reaches_milvus_lite_calls(tmp_path):
    # Creating a collection in Lite takes seconds: a cap of 20 s, still under the adapter's own 30.
    cap = 20.0
    work = deadlines.for_work(cap)
    with ServerThread(indexer_bootstrap.build, indexer_settings(cap, data_dir=tmp_path)) as server:
        store = server.running.service.store
        seen = TimeoutsSeen(store._connect())  # readiness has connected: the real Milvus Lite client
        store._client = seen
        with grpc.insecure_channel(server.address) as channel:
            stub = indexer_pb2_grpc.IndexerStub(channel)
            record = indexer_pb2.GalleryRecord(record_id="r1", person_id="p1", embedding=[0.6, 0.8, 0.0, 0.0])
            stub.Upsert(indexer_pb2.UpsertRequest(model_id="deadline-m", records=[record]), timeout=60)
            assert seen.timeouts and all(0 < t <= work for _, t in seen.timeouts), seen.timeouts
            timeouts = list_collections_timeouts(server, seen, 60.0)
        assert all(work - 5 < t <= work for t in timeouts), timeouts


class DeadlineEmbedder(TableEmbedder):
    """The test's table embedder, noting the time each Embed call had left when it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.time_remaining: list[float | None] = []

    async def Embed(self, request, context):
        self.time_remaining.append(context.time_remaining())
        return await super().Embed(request, context)


@pytest.fixture
def ranker_stack(tmp_path):
    embedder = FakeService("embedder", DeadlineEmbedder(), embedder_pb2_grpc.add_EmbedderServicer_to_server)
    indexer = FakeService("indexer", TableIndexer(), indexer_pb2_grpc.add_IndexerServicer_to_server)
    with (
        ServerThread(lambda s: embedder, server_settings("embedder")) as emb_srv,
        ServerThread(lambda s: indexer, server_settings("indexer")) as idx_srv,
    ):
        flags = {
            "port": "0",
            "embedder_address": emb_srv.address,
            "indexer_address": idx_srv.address,
            "artifacts_dir": str(no_artifact(tmp_path / "none")),
            "call_timeout_seconds": "30",  # the ranker's own timeout per call: longer than the cap
            "max_deadline_seconds": str(CAP),
        }
        settings = config.resolve(ranker_bootstrap.settings(), flags, env={})
        with ServerThread(ranker_bootstrap.build, settings) as ranker, grpc.insecure_channel(ranker.address) as channel:
            yield ranker_pb2_grpc.KinshipRankerStub(channel), embedder.servicer


def find(stub, timeout: float | None) -> None:
    request = ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_FATHER, b"dad.jpg")], top_n=3)
    stub.FindRelatives(request, timeout=timeout)


def test_the_deployments_cap_reaches_the_rankers_call_to_the_embedder(ranker_stack):
    stub, embedder = ranker_stack
    find(stub, 20.0)  # the caller would wait 20 s; the ranker's deployment allows 2
    (capped,) = embedder.time_remaining
    assert WORK - 0.8 < capped <= WORK + WIRE_ROUNDING, capped  # the hop to the embedder is on the wire
    embedder.time_remaining.clear()
    find(stub, 1.0)  # a caller's shorter deadline wins, less its margin
    (shorter,) = embedder.time_remaining
    assert 0.3 < shorter <= deadlines.for_work(1.0) + WIRE_ROUNDING, shorter
