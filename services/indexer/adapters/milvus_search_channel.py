"""A grpc.aio channel to Milvus for searches, owned by the indexer's event loop.

Searches are the calls the indexer makes by the hundred a second. Sent on pymilvus's stub
(a synchronous channel) each cost pymilvus's client interceptors, a thread of grpc's own
that polls for the answer (started afresh whenever no call was in flight) and a wake-up
of the event loop from that thread. On an aio channel the event loop sends the call and
reads the answer itself: the indexer's CPU per search fell from 2.03 to 1.78 ms at 200k
rows, measured side by side (docs/benchmarks.md, "Tenth run").

The channel goes where pymilvus's connection goes, with the headers pymilvus sends
(`authorization` from the token, the `identifier` Milvus gave that connection), so
Milvus sees one client. Everything else (writes, queries, retries after a failed search)
stays on pymilvus. Where the connection uses TLS material of its own (certificate files),
there is no search channel and searches take pymilvus's stub.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from kinship.runtime.logs import get_logger

log = get_logger("kinship.indexer.milvus")

#: pymilvus's own channel options (grpc_handler._create_grpc_channel), so both behave alike.
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", True),
)
#: Channels closing on their loop (close() called from the loop itself), until they are closed.
_CLOSING: set[asyncio.Task[None]] = set()
_CERTIFICATE_FILES = ("_server_pem_path", "_client_pem_path", "_client_key_path", "_ca_pem_path")


class SearchChannel:
    """Sends `milvus.proto.milvus.SearchRequest`s on a grpc.aio channel of the running event loop.

    The channel is opened on first use in a loop and belongs to it: used from another loop
    (a test's second `asyncio.run`), a new one is opened there.
    """

    def __init__(self, address: str, *, secure: bool, metadata: tuple[tuple[str, str], ...]):
        self.address = address
        self.secure = secure
        self.metadata = metadata
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    @classmethod
    def following(cls, handler: Any, token: str) -> SearchChannel | None:
        """A channel to where pymilvus's `handler` connects, or None where it cannot follow it."""
        address = getattr(handler, "server_address", None)
        if not isinstance(address, str) or not address:
            return None
        if any(getattr(handler, name, "") for name in _CERTIFICATE_FILES):
            return None
        metadata: list[tuple[str, str]] = []
        if token:
            metadata.append(("authorization", base64.b64encode(token.encode()).decode()))
        identifier = getattr(handler, "_identifier", None)
        if identifier:
            metadata.append(("identifier", str(identifier)))
        return cls(address, secure=bool(getattr(handler, "_secure", False)), metadata=tuple(metadata))

    def search(self, request: milvus_pb2.SearchRequest, timeout: float) -> grpc.aio.UnaryUnaryCall | None:
        """The call, sent; None where no event loop runs in this thread.

        Await it for the `SearchResults`; cancelling the awaiting task cancels the call.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._loop is not loop:
            self._open(loop)
        return self._stub.Search(request, timeout=timeout, metadata=self.metadata)

    def close(self) -> None:
        """Closes the channel, from its loop or from any other thread while that loop runs."""
        channel, loop = self._channel, self._loop
        self._channel, self._stub, self._loop = None, None, None
        if channel is None or loop is None or loop.is_closed():
            return  # nothing open, or its loop is gone (grpc frees the channel with it)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            closing = loop.create_task(channel.close())
            _CLOSING.add(closing)  # the loop keeps only a weak reference to a task
            closing.add_done_callback(_CLOSING.discard)
        elif loop.is_running():
            with contextlib.suppress(Exception):  # shutting down: a channel that will not close is dropped
                asyncio.run_coroutine_threadsafe(channel.close(), loop).result(timeout=5)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.secure:
            channel = grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(), options=_CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        self._channel, self._stub, self._loop = channel, milvus_pb2_grpc.MilvusServiceStub(channel), loop
        log.info("search channel opened", address=self.address, tls=self.secure)
