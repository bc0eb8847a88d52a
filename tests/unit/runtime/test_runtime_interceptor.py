"""RuntimeInterceptor's fast paths, with a recording chain and grpc's own handler objects."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc

from kinship.runtime.admission import Admission
from kinship.runtime.interceptors import RuntimeInterceptor


class Recording(grpc.aio.ServerInterceptor):
    """A chain link that records the methods it saw and passes them on."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept_service(self, continuation, handler_call_details):
        self.seen.append(handler_call_details.method)
        return await continuation(handler_call_details)


async def _unary(request, context):
    return request


async def _stream(requests, context):
    return b""


HANDLERS = {
    "/grpc.health.v1.Health/Check": grpc.unary_unary_rpc_method_handler(_unary),
    "/kinship.v1.Embedder/Embed": grpc.unary_unary_rpc_method_handler(_unary),
    "/kinship.v1.Indexer/BulkEnrol": grpc.stream_unary_rpc_method_handler(_stream),
}


def _lookup(runtime: RuntimeInterceptor, method: str):
    async def continuation(details):
        return HANDLERS.get(details.method)

    details = SimpleNamespace(method=method, invocation_metadata=())
    return asyncio.run(runtime.intercept_service(continuation, details))


def test_health_skips_the_chain_and_service_calls_take_it() -> None:
    chain = Recording()
    runtime = RuntimeInterceptor("embedder", [chain], Admission("embedder", 1))
    assert _lookup(runtime, "/grpc.health.v1.Health/Check") is HANDLERS["/grpc.health.v1.Health/Check"]
    assert _lookup(runtime, "/kinship.v1.Embedder/Embed") is HANDLERS["/kinship.v1.Embedder/Embed"]
    assert chain.seen == ["/kinship.v1.Embedder/Embed"]


def test_while_full_only_methods_known_to_be_unary_are_refused_before_the_chain() -> None:
    chain = Recording()
    admission = Admission("indexer", 1)
    runtime = RuntimeInterceptor("indexer", [chain], admission)
    admission.enter(None)  # every slot taken
    # First sight of a method: the chain decides (it may be streaming, or unknown).
    assert _lookup(runtime, "/kinship.v1.Embedder/Embed") is HANDLERS["/kinship.v1.Embedder/Embed"]
    assert _lookup(runtime, "/kinship.v1.Indexer/BulkEnrol") is HANDLERS["/kinship.v1.Indexer/BulkEnrol"]
    assert _lookup(runtime, "/kinship.v1.Indexer/BulkEnrol") is HANDLERS["/kinship.v1.Indexer/BulkEnrol"]
    assert _lookup(runtime, "/kinship.v1.Indexer/Nope") is None
    seen_before = list(chain.seen)
    refusal = _lookup(runtime, "/kinship.v1.Embedder/Embed")
    assert refusal is not HANDLERS["/kinship.v1.Embedder/Embed"] and refusal.unary_unary is not None
    assert refusal.request_deserializer is None  # the bytes are never parsed
    assert chain.seen == seen_before and admission.refused == 1
    admission.leave(0.05)
    assert _lookup(runtime, "/kinship.v1.Embedder/Embed") is HANDLERS["/kinship.v1.Embedder/Embed"]
