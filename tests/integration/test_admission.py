"""Admission control and the health-only port, with a real grpc.aio server on ephemeral ports.

A small scripted Embedder holds each call until the test releases it, so "at capacity"
is a state the test sets up exactly, not a timing.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kinship.runtime import config, errors
from kinship.runtime.server import ServerThread
from kinship.security.settings import server_settings
from kinship.v1 import embedder_pb2, embedder_pb2_grpc


class HeldEmbedder(embedder_pb2_grpc.EmbedderServicer):
    """Embed waits until `release` is set (model_id 'hold'); otherwise answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self.lock = threading.Lock()

    async def Embed(self, request, context):
        if request.model_id == "hold":
            with self.lock:
                self.entered += 1
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return embedder_pb2.EmbedResponse(model_id="echo", image_width=len(request.image))


class HeldService:
    name = "embedder"
    service_names = ("kinship.v1.Embedder",)

    def __init__(self, ready: bool = True) -> None:
        self.servicer = HeldEmbedder()
        self.ready = ready

    def register(self, server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(self.servicer, server)

    async def check_ready(self) -> None:
        if not self.ready:
            raise errors.Unavailable("not ready")

    async def close(self) -> None:
        self.servicer.release.set()


def settings(**values):
    flags = {"port": "0", **{k: str(v) for k, v in values.items()}}
    s = config.resolve(server_settings("embedder", 0), flags, env={})
    s.health_interval_seconds = 0.1
    return s


def _wait(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_past_the_bound_calls_are_refused_at_once_with_a_retry_hint_and_health_still_answers() -> None:
    service = HeldService()
    with ServerThread(lambda _s: service, settings(max_concurrent_calls=2, health_port=0)) as srv:
        channel = grpc.insecure_channel(srv.address)
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        held = [stub.Embed.future(embedder_pb2.EmbedRequest(model_id="hold"), timeout=30) for _ in range(2)]
        assert _wait(lambda: service.servicer.entered == 2), "the two admitted calls never started"

        with pytest.raises(grpc.RpcError) as caught:
            stub.Embed(embedder_pb2.EmbedRequest(model_id="hold"), timeout=5)
        refused = caught.value
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at capacity (2 calls at work)" in refused.details()
        trailers = dict(refused.trailing_metadata())
        assert int(trailers["grpc-retry-pushback-ms"]) >= 10
        status = rpc_status.from_call(refused)
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(retry) == 1
        info = error_details_pb2.RetryInfo()
        retry[0].Unpack(info)
        assert info.retry_delay.ToMilliseconds() == int(trailers["grpc-retry-pushback-ms"])
        assert service.servicer.entered == 2, "a refused call reached the handler"

        # While full, a refusal comes before anything else runs: bytes that are no EmbedRequest
        # are not even parsed (no INVALID_ARGUMENT), and the request id comes back in the trailers.
        raw = channel.unary_unary("/kinship.v1.Embedder/Embed")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\xff\xff not a message", timeout=5, metadata=(("x-request-id", "flood-7"),))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(caught.value.trailing_metadata())["x-request-id"] == "flood-7"

        # Health is never counted against the bound, on the main port and on the health-only port.
        main_health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert main_health.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{srv.running.health_port}") as health_channel:
            probe = health_pb2_grpc.HealthStub(health_channel)
            reply = probe.Check(health_pb2.HealthCheckRequest(service="kinship.v1.Embedder"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        service.servicer.release.set()
        assert all(f.result().model_id == "echo" for f in held)
        # Slots free again: the next call is admitted.
        assert stub.Embed(embedder_pb2.EmbedRequest(image=b"ab"), timeout=5).image_width == 2
        admission = srv.running.admission
        assert admission.refused == 2 and admission.in_flight == 0
        channel.close()


def test_the_health_port_serves_only_health_and_follows_readiness() -> None:
    service = HeldService(ready=False)
    with ServerThread(lambda _s: service, settings(health_port=0)) as srv:
        with grpc.insecure_channel(f"127.0.0.1:{srv.running.health_port}") as channel:
            probe = health_pb2_grpc.HealthStub(channel)

            def status():
                return probe.Check(health_pb2.HealthCheckRequest(), timeout=5).status

            assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
            service.ready = True
            assert _wait(lambda: status() == health_pb2.HealthCheckResponse.SERVING)
            with pytest.raises(grpc.RpcError) as caught:
                embedder_pb2_grpc.EmbedderStub(channel).Embed(embedder_pb2.EmbedRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        port = srv.running.health_port
    # After a stop the health port is closed too.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)


def test_the_embedder_states_its_bound_from_its_workers() -> None:
    from kinship.runtime.server import max_concurrent_calls

    class Stated:
        max_concurrent_calls = 6

    assert max_concurrent_calls(Stated(), settings()) == 6
    assert max_concurrent_calls(Stated(), settings(max_concurrent_calls=3)) == 3
    assert max_concurrent_calls(object(), settings()) == 64


class BusyService(HeldService):
    """check_ready times out (as an indexer's Milvus ping behind request work) while `busy` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False

    async def check_ready(self) -> None:
        if self.busy:
            raise TimeoutError("ping waited behind request work")


def test_a_readiness_timeout_while_calls_keep_completing_is_busy_not_down() -> None:
    import time

    service = BusyService()
    with ServerThread(lambda _s: service, settings()) as srv:
        channel = grpc.insecure_channel(srv.address)
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        probe = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert probe.Check(health_pb2.HealthCheckRequest(), timeout=5).status == serving
        service.busy = True
        seen = set()
        until = time.monotonic() + 1.0  # ten readiness checks at 0.1 s
        while time.monotonic() < until:
            stub.Embed(embedder_pb2.EmbedRequest(image=b"x"), timeout=5)
            seen.add(probe.Check(health_pb2.HealthCheckRequest(), timeout=5).status)
            time.sleep(0.01)
        assert seen == {serving}, "health flipped while the service kept answering"
        # No call completes any more: a timed-out check now means not ready.
        assert _wait(lambda: probe.Check(health_pb2.HealthCheckRequest(), timeout=5).status != serving)
        channel.close()


def test_calls_refused_at_capacity_leave_one_audit_event_with_their_count(tmp_path) -> None:
    import json

    service = HeldService()
    audit_file = tmp_path / "embedder.audit.jsonl"
    s = settings(max_concurrent_calls=1)
    s.audit_log = str(audit_file)
    with ServerThread(lambda _s: service, s) as srv:
        channel = grpc.insecure_channel(srv.address)
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        held = stub.Embed.future(embedder_pb2.EmbedRequest(model_id="hold"), timeout=30)
        assert _wait(lambda: service.servicer.entered == 1), "the admitted call never started"
        for _ in range(4):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Embed(embedder_pb2.EmbedRequest(model_id="hold"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        def shed_events():
            lines = audit_file.read_text().splitlines() if audit_file.exists() else []
            return [e for e in map(json.loads, lines) if e.get("refused_by") == "admission control"]

        assert _wait(lambda: shed_events(), timeout=5), "no audit event for the refused calls"
        (event,) = shed_events()
        assert event["rpc"] == "/kinship.v1.Embedder/Embed" and event["refused_count"] == 4
        assert event["outcome"] == "RESOURCE_EXHAUSTED" and event["reason"] == "OVERLOADED"
        assert event["peers"] and event["peers"][0].startswith("ipv4:127.0.0.1:")
        service.servicer.release.set()
        assert held.result().model_id == "echo"
        channel.close()
