"""The client's retry rule and typed errors, against a real gRPC server on an ephemeral port.

The server implements kinship.v1's Embedder and Indexer and fails the first calls of a
method with UNAVAILABLE (or with a rich INVALID_ARGUMENT), as a restarting service would;
both clients must send idempotent calls again with backoff and never a Delete.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kinship.client import (
    IDEMPOTENT,
    AsyncKinshipClient,
    DeadlineExceeded,
    InvalidArgument,
    KinshipClient,
    RetryPolicy,
    Targets,
    Unavailable,
)
from kinship.v1 import embedder_pb2, embedder_pb2_grpc, indexer_pb2, indexer_pb2_grpc

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


class Flaky(embedder_pb2_grpc.EmbedderServicer, indexer_pb2_grpc.IndexerServicer):
    """Fails the first `failures[method]` calls of a method with UNAVAILABLE; counts every call."""

    def __init__(self):
        self.failures: dict[str, int] = collections.Counter()
        self.calls: dict[str, int] = collections.Counter()
        self.request_ids: list[str] = []

    def _maybe_fail(self, method: str, context) -> None:
        self.calls[method] += 1
        self.request_ids.append(dict(context.invocation_metadata()).get("x-request-id", ""))
        if self.calls[method] <= self.failures[method]:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method} is restarting")

    def ListModels(self, request, context):
        self._maybe_fail("ListModels", context)
        return embedder_pb2.ListModelsResponse(
            models=[embedder_pb2.ModelInfo(model_id="ident", is_default=True, kind=embedder_pb2.MODEL_KIND_IDENTITY)]
        )

    def Delete(self, request, context):
        self._maybe_fail("Delete", context)
        return indexer_pb2.DeleteResponse(deleted_count=len(request.person_ids))

    def GetRecords(self, request, context):
        self.calls["GetRecords"] += 1
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="person_ids[0]", description="has a space; drop it")
            ]
        )
        info = error_details_pb2.ErrorInfo(reason="BAD_PERSON_ID", domain="kinship-search")
        details = []
        for message in (info, bad):
            packed = any_pb2.Any()
            packed.Pack(message)
            details.append(packed)
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad person id", details=details)
        context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture
def server():
    servicer = Flaky()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, srv)
    indexer_pb2_grpc.add_IndexerServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    srv.stop(0)


def call(kind: str, target: str, method: str, *args, **kwargs):
    """client.method(...) with the sync client, or awaited with the asyncio one."""
    if kind == "sync":
        with KinshipClient(target, retry=FAST, timeout=5) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run():
        async with AsyncKinshipClient(target, retry=FAST, timeout=5) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_idempotent_call_is_sent_again_after_unavailable(server, kind):
    server.failures["ListModels"] = 2
    (model,) = call(kind, server.target, "models")
    assert model.model_id == "ident"
    assert server.calls["ListModels"] == 3
    # The attempts of one call share its request id, so the server's logs tie them together.
    assert len(set(server.request_ids)) == 1 and server.request_ids[0]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_delete_is_never_sent_again(server, kind):
    server.failures["Delete"] = 1
    with pytest.raises(Unavailable) as caught:
        call(kind, server.target, "delete", person_ids=["p1"])
    assert server.calls["Delete"] == 1 and caught.value.attempts == 1
    assert "restarting" in caught.value.message and isinstance(caught.value, grpc.RpcError)
    assert call(kind, server.target, "delete", person_ids=["p1"]) == 1  # the server is back


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_retries_stop_at_the_policy_s_attempts(server, kind):
    server.failures["ListModels"] = 10
    with pytest.raises(Unavailable) as caught:
        call(kind, server.target, "models")
    assert server.calls["ListModels"] == FAST.max_attempts == caught.value.attempts


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_rich_details_become_a_typed_exception(server, kind):
    with pytest.raises(InvalidArgument) as caught:
        call(kind, server.target, "records", ["bad id"], model_id="ident")
    error = caught.value
    assert error.reason == "BAD_PERSON_ID" and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in error.violations] == [("person_ids[0]", "has a space; drop it")]
    assert server.calls["GetRecords"] == 1, "a bad request is never sent again"


def test_nothing_listens_is_unavailable_within_the_deadline():
    with KinshipClient("127.0.0.1:1", retry=FAST, timeout=2) as client:
        with pytest.raises((Unavailable, DeadlineExceeded)):
            client.models()


def test_the_retry_rule():
    unavailable = Unavailable("down")
    assert FAST.wait_before_retry(unavailable, "/kinship.v1.Embedder/Embed", 1, None) is not None
    assert FAST.wait_before_retry(unavailable, "/kinship.v1.Indexer/Delete", 1, None) is None
    assert FAST.wait_before_retry(unavailable, "/kinship.v1.Indexer/BulkEnrol", 1, None) is None
    assert FAST.wait_before_retry(unavailable, "/kinship.v1.Embedder/Embed", FAST.max_attempts, None) is None
    assert FAST.wait_before_retry(InvalidArgument("bad"), "/kinship.v1.Embedder/Embed", 1, None) is None
    waits = [RetryPolicy(initial_backoff=1, max_backoff=100).backoff(n) for n in (1, 2, 3)]
    assert 0.5 <= waits[0] < 1.5 and 1 <= waits[1] < 3 and 2 <= waits[2] < 6  # doubling, jittered 0.5-1.5x
    assert "/kinship.v1.Indexer/Delete" not in IDEMPOTENT


def test_targets():
    assert Targets.resolve("db.example").ranker == "db.example:50053"
    assert Targets.resolve("gw.example:443") == Targets("gw.example:443", "gw.example:443", "gw.example:443")
    assert Targets.resolve("[::1]").embedder == "[::1]:50051"
    assert Targets.resolve({"ranker": "r:1"}).ranker == "r:1"
    with pytest.raises(ValueError, match="unknown service"):
        Targets.resolve({"rankr": "r:1"})
