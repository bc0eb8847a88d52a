"""Each service starts exactly as deploy/k8s/overlays/dev configures it, `[::]` included.

The environment is the rendered pod's (ConfigMap + env); only what cannot be the same on
one machine is swapped: ports (free ones instead of 50051-50053 and 9090 for all three),
the artifacts and scratch folders, the Milvus server (Milvus Lite in a temp folder: the
URI is a Secret's in the cluster) and the DNS names of the headless Services (localhost).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_ports
from tests.manifests import SERVICES, container, container_env, render


def _health(address: str, service: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                .status
            )
        except grpc.RpcError:
            return None


def _wait_serving(address: str, service: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the service exited with {process.returncode}"
        if _health(address, service) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.3)
    pytest.fail(f"{address} did not become SERVING for {service!r} within {timeout}s")


def test_the_three_services_serve_with_the_dev_overlays_environment(tmp_path) -> None:
    docs = render("dev")
    ports = dict(zip(SERVICES, free_ports(3), strict=True))
    metrics = dict(zip(SERVICES, free_ports(3), strict=True))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KINSHIP_")}
    processes: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for service in SERVICES:
            env = container_env(docs, service)
            assert env["KINSHIP_HOST"] == "[::]"
            upper = service.upper()
            env[f"KINSHIP_{upper}_PORT"] = str(ports[service])
            env[f"KINSHIP_{upper}_METRICS_PORT"] = str(metrics[service])
            if "KINSHIP_ARTIFACTS_DIR" in env:
                env["KINSHIP_ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
            if service == "indexer":
                env["KINSHIP_DATA_DIR"] = str(tmp_path / "indexer")
                assert isinstance(env["KINSHIP_MILVUS_URI"], dict), "a Secret's in the cluster"
                env["KINSHIP_MILVUS_URI"] = ""  # Milvus Lite in KINSHIP_DATA_DIR
                env.pop("KINSHIP_MILVUS_TOKEN")
            if service == "ranker":
                for dependency in ("embedder", "indexer"):
                    key = f"KINSHIP_{dependency.upper()}_ADDRESS"
                    assert (
                        env[key]
                        == f"dns:///kinship-{dependency}:{container(docs, dependency)['ports'][0]['containerPort']}"
                    )
                    env[key] = f"dns:///localhost:{ports[dependency]}"
            assert all(isinstance(v, str) for v in env.values())
            logs[service] = open(tmp_path / f"{service}.log", "wb")  # noqa: SIM115 - closed in finally
            args = container(docs, service)["args"]
            processes[service] = subprocess.Popen(
                [sys.executable, "-m", "kinship.cli.main", *args],
                env={**base_env, **env},
                stdout=logs[service],
                stderr=subprocess.STDOUT,
            )
        for service in SERVICES:
            probe = container(docs, service)["readinessProbe"]["grpc"]["service"]
            _wait_serving(f"127.0.0.1:{ports[service]}", probe, processes[service])
            if socket_has_ipv6():
                assert _health(f"[::1]:{ports[service]}", probe) == health_pb2.HealthCheckResponse.SERVING
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics[service]}/metrics", timeout=5) as reply:
                assert b"kinship_rpc_total" in reply.read()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for service, process in processes.items():
            try:
                codes[service] = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[service] = process.wait()
        for log in logs.values():
            log.close()
    assert codes == dict.fromkeys(SERVICES, 0), "each drains and exits cleanly on SIGTERM: " + "".join(
        (tmp_path / f"{s}.log").read_text()[-2000:] for s in SERVICES if codes.get(s)
    )


def socket_has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
