"""The ranker spreads its embedder calls over every replica, as on the cluster, and finds new ones.

On the cluster the ranker dials `dns:///kinship-embedder:50051`, a headless Service whose
DNS name has one A record per ready pod. Here the same shape is made on loopback: a
small DNS server (dnslib) answers `embedder.kinship.test` with 127.0.0.1, 127.0.0.2
(and later 127.0.0.3), where real `kinship serve embedder` replicas listen on one port,
and the ranker is started with the dev overlay's own environment except for the
addresses, which name that DNS server (`dns://127.0.0.1:PORT/embedder.kinship.test:PORT`).
A DNS server given in the address needs gRPC's c-ares resolver (GRPC_DNS_RESOLVER=ares);
the cluster's resolver reads /etc/resolv.conf instead, with the same balancing above it.

Each replica counts the Embed calls it served on its own /metrics (kinship_rpc_total).
The embedders cap connection age at AGE seconds (60 in the manifests) so that the
scale-up case stays short; the ranker re-resolves at most every DNS_REFRESH seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from kinship.v1 import common_pb2, ranker_pb2, ranker_pb2_grpc
from tests.conftest import free_ports
from tests.manifests import container_env, render

AGE = 3.0
AGE_GRACE = 1.0
DNS_REFRESH = 2.0
CALLS = 100
# A new replica must get calls within one connection age (+10% jitter gRPC adds), its
# grace, one DNS refresh, and a few seconds for a busy 2-core machine.
SCALE_UP_BOUND = AGE * 1.1 + AGE_GRACE + DNS_REFRESH + 6.0


class Zone(BaseResolver):
    """A records for a few names; AAAA and anything else: no answer."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def set(self, name: str, addresses: list[str]) -> None:
        with self.lock:
            self.records[name.rstrip(".") + "."] = list(addresses)

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname)
        with self.lock:
            addresses = self.records.get(name)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply


@contextlib.contextmanager
def dns_server():
    zone = Zone()
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        yield zone, server.server.server_address[1]
    finally:
        server.stop()


def health(address: str, service: str = "") -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                .status
            )
        except grpc.RpcError:
            return None


def wait_serving(address: str, process: subprocess.Popen, service: str = "", timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server for {address} exited with {process.returncode}"
        if health(address, service) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.3)
    pytest.fail(f"{address} not SERVING within {timeout}s")


def embeds_served(host: str, metrics_port: int) -> int:
    """Embed calls a replica has served, from its own /metrics (on the replica's host)."""
    with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "kinship_rpc"
            for sample in family.samples
            if sample.name == "kinship_rpc_total" and sample.labels["method"].endswith("/Embed")
        )
    )


class Processes:
    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.running: list[tuple[str, subprocess.Popen, object]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("KINSHIP_", "GRPC_"))}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        process = subprocess.Popen(
            [sys.executable, "-m", "kinship.cli.main", *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append((name, process, log))
        return process

    def stop_all(self) -> None:
        for _, process, _ in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, log in self.running:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def test_the_ranker_balances_over_embedder_replicas_and_reaches_a_new_one(tmp_path, portrait_photo) -> None:
    embedder_port, indexer_port, ranker_port, *metrics = free_ports(7)
    replica_hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    replica_metrics = dict(zip(replica_hosts, metrics[:3], strict=True))
    ranker_env = container_env(render("dev"), "ranker")
    processes = Processes(tmp_path)

    def start_embedder(host: str) -> None:
        process = processes.start(
            f"embedder-{host}",
            ["serve", "embedder"],
            {
                "KINSHIP_HOST": host,
                "KINSHIP_EMBEDDER_PORT": str(embedder_port),
                "KINSHIP_EMBEDDER_METRICS_PORT": str(replica_metrics[host]),
                "KINSHIP_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                "KINSHIP_MAX_CONNECTION_AGE_SECONDS": str(AGE),
                "KINSHIP_MAX_CONNECTION_AGE_GRACE_SECONDS": str(AGE_GRACE),
                "KINSHIP_LOG_FORMAT": "console",
            },
        )
        wait_serving(f"{host}:{embedder_port}", process, "kinship.v1.Embedder")

    with dns_server() as (zone, dns_port):
        try:
            for host in replica_hosts[:2]:
                start_embedder(host)
            zone.set("embedder.kinship.test", replica_hosts[:2])
            zone.set("indexer.kinship.test", ["127.0.0.1"])
            indexer = processes.start(
                "indexer",
                ["serve", "indexer"],
                {"KINSHIP_INDEXER_PORT": str(indexer_port), "KINSHIP_DATA_DIR": str(tmp_path / "indexer")},
            )
            wait_serving(f"127.0.0.1:{indexer_port}", indexer, "kinship.v1.Indexer")
            # One person in the gallery, so that FindRelatives has something to search.
            photo = tmp_path / "tom.png"
            photo.write_bytes(portrait_photo)
            subprocess.run(
                [sys.executable, "-m", "kinship.cli.main", "enroll", str(photo), "--person-id", "tom",
                 "--embedder", f"127.0.0.1:{embedder_port}", "--indexer", f"127.0.0.1:{indexer_port}"],
                env=processes.env, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            # The ranker exactly as the dev overlay configures it, but for ports, folders and DNS.
            env = {k: v for k, v in ranker_env.items() if isinstance(v, str)}
            env.update(
                KINSHIP_HOST="127.0.0.1",
                KINSHIP_RANKER_PORT=str(ranker_port),
                KINSHIP_RANKER_METRICS_PORT=str(metrics[3]),
                KINSHIP_ARTIFACTS_DIR=str(tmp_path / "artifacts"),
                KINSHIP_EMBEDDER_ADDRESS=f"dns://127.0.0.1:{dns_port}/embedder.kinship.test:{embedder_port}",
                KINSHIP_INDEXER_ADDRESS=f"dns://127.0.0.1:{dns_port}/indexer.kinship.test:{indexer_port}",
                KINSHIP_DNS_MIN_REFRESH_SECONDS=str(DNS_REFRESH),
                KINSHIP_LOG_FORMAT="console",
                GRPC_DNS_RESOLVER="ares",
            )
            assert ranker_env["KINSHIP_EMBEDDER_ADDRESS"].startswith("dns:///"), "the cluster dials a DNS name too"
            ranker = processes.start("ranker", ["serve", "ranker"], env)
            wait_serving(f"127.0.0.1:{ranker_port}", ranker, "kinship.v1.KinshipRanker")

            request = ranker_pb2.FindRelativesRequest(
                relatives=[
                    ranker_pb2.Relative(
                        relation=common_pb2.RELATION_SELF, photos=[ranker_pb2.Photo(image=portrait_photo)]
                    )
                ],
                top_n=1,
            )
            with grpc.insecure_channel(f"127.0.0.1:{ranker_port}") as channel:
                find = ranker_pb2_grpc.KinshipRankerStub(channel).FindRelatives
                before = {h: embeds_served(h, replica_metrics[h]) for h in replica_hosts[:2]}
                for _ in range(CALLS):
                    find(request, timeout=60)
                served = {h: embeds_served(h, replica_metrics[h]) - before[h] for h in replica_hosts[:2]}
                assert sum(served.values()) >= CALLS, f"every call embeds its photo once: {served}"
                for host, count in served.items():
                    assert count >= 0.3 * CALLS, f"{host} served {count} of {CALLS} Embed calls: {served}"

                # Scale-up: a third replica becomes ready and appears in DNS.
                start_embedder(replica_hosts[2])
                zone.set("embedder.kinship.test", replica_hosts)
                appeared = time.monotonic()
                while embeds_served(replica_hosts[2], replica_metrics[replica_hosts[2]]) == 0:
                    waited = time.monotonic() - appeared
                    assert waited <= SCALE_UP_BOUND, f"the new replica got no call within {SCALE_UP_BOUND:.1f}s"
                    find(request, timeout=60)
                print(f"\nEmbed calls over two replicas: {served}; the third got calls after {waited:.1f}s")
        finally:
            processes.stop_all()
