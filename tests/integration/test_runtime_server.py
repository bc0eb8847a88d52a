"""The shared runtime with a real grpc.aio server: health, reflection, errors, shutdown.

The service here is a small hand-written Embedder servicer, so that the runtime's own
behaviour is tested without any model.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from kinship.runtime import clients, config, errors
from kinship.runtime.server import ServerThread
from kinship.security.settings import server_settings
from kinship.v1 import embedder_pb2, embedder_pb2_grpc


class ScriptedEmbedder(embedder_pb2_grpc.EmbedderServicer):
    """Answers by the request's model_id: 'bad', 'crash', 'slow', else OK with the image size."""

    def __init__(self) -> None:
        self.slow_started = threading.Event()
        self.last_time_remaining: float | None = None

    async def Embed(self, request, context):
        self.last_time_remaining = context.time_remaining()
        if request.model_id.startswith("forward:"):
            # Calls another embedder the way the ranker calls its dependencies.
            async with clients.aio_channel(request.model_id.removeprefix("forward:")) as channel:
                stub = embedder_pb2_grpc.EmbedderStub(channel)
                return await clients.call(
                    stub.Embed, embedder_pb2.EmbedRequest(image=b"z"), service="downstream", timeout=30
                )
        if request.model_id == "bad":
            raise errors.InvalidArgument("image is empty: send JPEG or PNG bytes", field="image")
        if request.model_id == "crash":
            raise RuntimeError("a bug")
        if request.model_id == "slow":
            self.slow_started.set()
            await asyncio.sleep(1.0)
        return embedder_pb2.EmbedResponse(model_id="echo", image_width=len(request.image))


class ScriptedService:
    name = "embedder"
    service_names = ("kinship.v1.Embedder",)

    def __init__(self) -> None:
        self.servicer = ScriptedEmbedder()
        self.ready = True
        self.closed = False

    def register(self, server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(self.servicer, server)

    async def check_ready(self) -> None:
        if not self.ready:
            raise errors.Unavailable("model not loaded")

    async def close(self) -> None:
        self.closed = True


def _settings(**overrides):
    s = config.resolve(server_settings("embedder", 0), {"port": "0"}, env={})
    s.health_interval_seconds = 0.1
    for key, value in overrides.items():
        setattr(s, key, value)
    return s


@pytest.fixture
def running():
    service = ScriptedService()
    srv = ServerThread(lambda _settings: service, _settings()).start()
    channel = grpc.insecure_channel(srv.address, options=[("grpc.max_send_message_length", 64 << 20)])
    yield srv, service, channel
    channel.close()
    srv.stop(grace=1.0)


def _health(channel, name="kinship.v1.Embedder"):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status


def _wait_status(channel, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _health(channel) == wanted:
            return True
        time.sleep(0.05)
    return False


def test_health_follows_the_readiness_check(running) -> None:
    srv, service, channel = running
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
    service.ready = False
    assert _wait_status(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    service.ready = True
    assert _wait_status(channel, health_pb2.HealthCheckResponse.SERVING)


def test_reflection_lists_the_service(running) -> None:
    _srv, _service, channel = running
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"kinship.v1.Embedder", "grpc.health.v1.Health"} <= names


def test_domain_error_becomes_its_status_with_details_and_the_server_keeps_serving(running) -> None:
    _srv, _service, channel = running
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(embedder_pb2.EmbedRequest(model_id="bad"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send JPEG or PNG" in caught.value.details()
    status = rpc_status.from_call(caught.value)
    assert status is not None and len(status.details) == 2
    assert stub.Embed(embedder_pb2.EmbedRequest(image=b"abc"), timeout=5).image_width == 3


def test_unexpected_exception_is_internal_with_request_id_never_unknown(running) -> None:
    _srv, _service, channel = running
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(embedder_pb2.EmbedRequest(model_id="crash"), timeout=5, metadata=(("x-request-id", "req-42"),))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "req-42" in caught.value.details()


def test_request_id_is_echoed_or_made(running) -> None:
    _srv, _service, channel = running
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    _reply, call = stub.Embed.with_call(embedder_pb2.EmbedRequest(), metadata=(("x-request-id", "abc-1"),), timeout=5)
    assert dict(call.initial_metadata())["x-request-id"] == "abc-1"
    _reply, call = stub.Embed.with_call(embedder_pb2.EmbedRequest(), timeout=5)
    assert len(dict(call.initial_metadata())["x-request-id"]) == 32


def test_a_ten_mebibyte_image_fits_the_default_message_size(running) -> None:
    _srv, _service, channel = running
    image = bytes(10 * 1024 * 1024)
    reply = embedder_pb2_grpc.EmbedderStub(channel).Embed(embedder_pb2.EmbedRequest(image=image), timeout=30)
    assert reply.image_width == len(image)


def test_graceful_stop_drains_in_flight_calls_then_refuses() -> None:
    service = ScriptedService()
    srv = ServerThread(lambda _settings: service, _settings()).start()
    channel = grpc.insecure_channel(srv.address)
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    in_flight = stub.Embed.future(embedder_pb2.EmbedRequest(model_id="slow", image=b"xy"), timeout=10)
    assert service.servicer.slow_started.wait(5), "slow call never reached the handler"
    srv.stop(grace=5.0)
    assert in_flight.result().image_width == 2, "the in-flight call was cut instead of drained"
    assert service.closed
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(embedder_pb2.EmbedRequest(), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_metrics_endpoint_counts_calls_by_method_and_code() -> None:
    import urllib.request

    service = ScriptedService()
    with ServerThread(lambda _settings: service, _settings(metrics_port=0)) as srv:
        with grpc.insecure_channel(srv.address) as channel:
            stub = embedder_pb2_grpc.EmbedderStub(channel)
            stub.Embed(embedder_pb2.EmbedRequest(image=b"x"), timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.Embed(embedder_pb2.EmbedRequest(model_id="bad"), timeout=5)
        port = srv.running.metrics_port
        assert port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    ok = 'kinship_rpc_total{code="OK",method="/kinship.v1.Embedder/Embed",service="embedder"}'
    refused = 'kinship_rpc_total{code="INVALID_ARGUMENT",method="/kinship.v1.Embedder/Embed",service="embedder"}'
    assert ok in body and refused in body
    assert "kinship_rpc_duration_seconds_bucket" in body


def test_a_taken_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{taken}: the port is taken"):
            ServerThread(lambda _settings: ScriptedService(), _settings(port=taken)).start()


def test_calls_to_other_services_inherit_the_callers_deadline() -> None:
    downstream, front = ScriptedService(), ScriptedService()
    with ServerThread(lambda _s: downstream, _settings()) as down, ServerThread(lambda _s: front, _settings()) as up:
        with grpc.insecure_channel(up.address) as channel:
            stub = embedder_pb2_grpc.EmbedderStub(channel)
            reply = stub.Embed(embedder_pb2.EmbedRequest(model_id=f"forward:{down.address}"), timeout=2.0)
            assert reply.image_width == 1  # the downstream answer, passed through
            # The front was allowed 30 s for its own call, but the caller only waits 2 s.
            assert downstream.servicer.last_time_remaining is not None
            # gRPC rounds the grpc-timeout header up to a coarser unit on each hop (for HPACK),
            # so a few milliseconds more may arrive; never the front's own 30 s.
            assert downstream.servicer.last_time_remaining <= 2.1
            stub.Embed(embedder_pb2.EmbedRequest(model_id=f"forward:{down.address}"))  # no deadline
            assert downstream.servicer.last_time_remaining > 20
