"""Metrics on the pod's wildcard host, and the gRPC options that balance calls over pods."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from kinship.runtime import config
from kinship.runtime.metrics import http_bind_host, serve_metrics
from kinship.runtime.server import client_options, server_options


@pytest.mark.parametrize(
    ("host", "bind"), [("[::]", "::"), ("[::1]", "::1"), ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1")]
)
def test_grpc_hosts_become_socket_bind_addresses(host, bind) -> None:
    assert http_bind_host(host) == bind


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6(), reason="this machine has no IPv6 loopback")
def test_metrics_serve_on_the_bracketed_wildcard_the_manifests_set() -> None:
    # Before the fix: socket.gaierror from getaddrinfo('[::]'), and every pod crashed at start.
    port = serve_metrics("[::]", 0)
    for url in (f"http://127.0.0.1:{port}/metrics", f"http://[::1]:{port}/metrics"):
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert reply.status == 200
            assert b"kinship_rpc_total" in reply.read()


def _defaults():
    return config.resolve(config.server_settings("embedder", 0) + config.client_settings(), env={})


def test_servers_cap_connection_age_and_tolerate_the_clients_pings() -> None:
    settings = _defaults()
    options = dict(server_options(settings))
    assert options["grpc.max_connection_age_ms"] == settings.max_connection_age_seconds * 1000
    assert options["grpc.max_connection_age_grace_ms"] == settings.max_connection_age_grace_seconds * 1000
    allowed = options["grpc.http2.min_ping_interval_without_data_ms"]
    client = dict(client_options(16, keepalive_seconds=settings.keepalive_seconds))
    assert client["grpc.keepalive_time_ms"] >= allowed, "clients would get GOAWAY too_many_pings"
    assert allowed <= 10_000, "pymilvus and other clients ping every 10 s"


def test_settings_come_from_the_environment() -> None:
    env = {
        "KINSHIP_MAX_CONNECTION_AGE_SECONDS": "2",
        "KINSHIP_MAX_CONNECTION_AGE_GRACE_SECONDS": "0.5",
        "KINSHIP_KEEPALIVE_SECONDS": "15",
        "KINSHIP_MIN_PING_INTERVAL_SECONDS": "5",
    }
    settings = config.resolve(config.server_settings("ranker", 0), env=env)
    options = dict(server_options(settings))
    assert options["grpc.max_connection_age_ms"] == 2000
    assert options["grpc.max_connection_age_grace_ms"] == 500
    assert options["grpc.keepalive_time_ms"] == 15000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 5000
    with pytest.raises(config.ConfigError, match="KINSHIP_MAX_CONNECTION_AGE_SECONDS"):
        config.resolve(config.server_settings("ranker", 0), env={"KINSHIP_MAX_CONNECTION_AGE_SECONDS": "0"})


def test_clients_balance_round_robin_over_every_resolved_address() -> None:
    options = dict(client_options(16, dns_min_refresh_seconds=3))
    policies = json.loads(options["grpc.service_config"])["loadBalancingConfig"]
    assert policies == [{"round_robin": {}}], "pick_first would pin every call to one pod"
    assert options["grpc.dns_min_time_between_resolutions_ms"] == 3000


def test_calls_in_flight_get_an_hour_when_their_connection_ages() -> None:
    # New calls move to a new connection at the age; only calls already running use the grace,
    # and the longest (a bulk enrolment stream) runs for minutes.
    assert _defaults().max_connection_age_grace_seconds >= 3600


def test_a_stream_window_is_fixed_so_a_fast_sender_cannot_fill_the_service() -> None:
    # With gRPC's automatic window growth (BDP probing) on, a million-row bulk enrolment over 4
    # streams held 350 MiB more in the indexer than the rows in work (docs/benchmarks.md, "Costs behind the defaults").
    fixed = dict(server_options(config.resolve(config.server_settings("indexer", 0), env={})))
    assert fixed["grpc.http2.bdp_probe"] == 0
    assert fixed["grpc.http2.lookahead_bytes"] == 4 << 20
    chosen = config.resolve(config.server_settings("indexer", 0), env={"KINSHIP_STREAM_WINDOW_MB": "8"})
    assert dict(server_options(chosen))["grpc.http2.lookahead_bytes"] == 8 << 20
    automatic = dict(
        server_options(config.resolve(config.server_settings("indexer", 0), env={"KINSHIP_STREAM_WINDOW_MB": "0"}))
    )
    assert "grpc.http2.bdp_probe" not in automatic and "grpc.http2.lookahead_bytes" not in automatic
