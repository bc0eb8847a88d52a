"""The search channel: a real grpc.aio call to a stand-in for Milvus's service on an ephemeral port.

The stand-in answers `Search` as the test says (a result, a refusal in the status, a gRPC
error, or no answer until cancelled) and records the headers and requests it got.
"""

from __future__ import annotations

import asyncio
import base64
import types

import grpc
import numpy as np
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from kinship.indexer.adapters.milvus_gallery import _hits_when_answered, _search_request
from kinship.indexer.adapters.milvus_search_channel import SearchChannel

from .test_milvus_results import result, row


class _Milvus(milvus_pb2_grpc.MilvusServiceServicer):
    def __init__(self, answer):
        self.answer = answer
        self.headers: list[dict[str, str]] = []
        self.requests: list[milvus_pb2.SearchRequest] = []
        self.cancelled = asyncio.Event()

    async def Search(self, request, context):
        self.headers.append(dict(context.invocation_metadata()))
        self.requests.append(request)
        if self.answer == "hang":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if self.answer == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "query node restarting")
        return self.answer


async def _serving(answer):
    milvus = _Milvus(answer)
    server = grpc.aio.server()
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(milvus, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return milvus, server, port


def _request():
    query = np.zeros((1, 4), dtype=np.float32)
    query[0, 0] = 1.0
    return _search_request("kinship_m1", query, 3, 'tenant == "t1"', {"metric_type": "COSINE", "params": {}}, "Bounded")


def _answer(topks, scores, rows, status_code=0):
    return milvus_pb2.SearchResults(
        status=common_pb2.Status(
            error_code=status_code, code=status_code, reason="collection not loaded" if status_code else ""
        ),
        results=result(topks, scores, rows),
    )


def _handler(port, *, identifier=0, secure=False, **files):
    return types.SimpleNamespace(server_address=f"127.0.0.1:{port}", _identifier=identifier, _secure=secure, **files)


def test_a_search_is_answered_on_the_event_loop_with_the_headers_pymilvus_sends():
    async def main():
        milvus, server, port = await _serving(_answer([1], [0.8], [row("r1", "p1")]))
        channel = SearchChannel.following(_handler(port, identifier=4711), "root:Milvus")
        try:
            hits = await _hits_when_answered(channel.search(_request(), timeout=5), queries=1)
        finally:
            channel.close()
            await server.stop(None)
        return milvus, hits

    milvus, hits = asyncio.run(main())
    assert [[h.record_id for h in q] for q in hits] == [["r1"]] and hits[0][0].similarity == pytest.approx(0.8)
    assert milvus.headers[0]["authorization"] == base64.b64encode(b"root:Milvus").decode()
    assert milvus.headers[0]["identifier"] == "4711"
    assert milvus.requests[0].collection_name == "kinship_m1" and milvus.requests[0].dsl == 'tenant == "t1"'


@pytest.mark.parametrize(
    "answer", ["unavailable", _answer([0], [], [], status_code=101)], ids=["grpc-error", "refused"]
)
def test_a_failed_search_gives_none_so_the_retrying_path_answers(answer):
    async def main():
        _, server, port = await _serving(answer)
        channel = SearchChannel.following(_handler(port), "")
        try:
            return await _hits_when_answered(channel.search(_request(), timeout=5), queries=1)
        finally:
            channel.close()
            await server.stop(None)

    assert asyncio.run(main()) is None


def test_a_cancelled_search_cancels_the_call_at_milvus():
    async def main():
        milvus, server, port = await _serving("hang")
        channel = SearchChannel.following(_handler(port), "")
        try:
            task = asyncio.ensure_future(_hits_when_answered(channel.search(_request(), timeout=20), queries=1))
            while not milvus.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(milvus.cancelled.wait(), timeout=5)
        finally:
            channel.close()
            await server.stop(None)
        return milvus

    assert asyncio.run(main()).cancelled.is_set()


def test_no_token_and_no_identifier_send_no_such_headers():
    channel = SearchChannel.following(_handler(19530), "")
    assert channel is not None and channel.metadata == () and not channel.secure


def test_a_connection_with_certificate_files_has_no_search_channel():
    # Its TLS material is pymilvus's to use; searches then take pymilvus's stub.
    assert SearchChannel.following(_handler(19530, secure=True, _ca_pem_path="/etc/ca.pem"), "") is None
    assert SearchChannel.following(types.SimpleNamespace(), "") is None
    assert SearchChannel.following(_handler(19530, secure=True), "").secure


def test_outside_an_event_loop_nothing_is_sent():
    assert SearchChannel.following(_handler(19530), "").search(_request(), timeout=1) is None


def test_a_channel_used_from_a_second_loop_opens_one_there():
    async def search_once():
        milvus, server, port = await _serving(_answer([1], [0.5], [row("r2", "p2")]))
        channel.address = f"127.0.0.1:{port}"
        try:
            return await _hits_when_answered(channel.search(_request(), timeout=5), queries=1)
        finally:
            await server.stop(None)

    channel = SearchChannel.following(_handler(1), "")
    assert asyncio.run(search_once())[0][0].record_id == "r2"
    assert asyncio.run(search_once())[0][0].record_id == "r2"
    channel.close()
