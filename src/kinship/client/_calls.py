"""What the sync and the asyncio client share: targets, channels, metadata and the retry rule.

Channels come from the project's runtime (kinship.runtime.server.client_options: message
limits, round_robin over every address a name resolves to, keepalive) and its security
layer (kinship.security: TLS with a client certificate, bearer token, case id, purpose),
exactly as the CLI's and the services' own clients are built.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kinship.runtime import addresses
from kinship.runtime.server import DEFAULT_KEEPALIVE_SECONDS, client_options
from kinship.security import client as client_security
from kinship.security.client import ClientSecurity
from kinship.security.transport import ClientTls

from . import errors

REQUEST_ID_KEY = "x-request-id"

#: Methods that may be sent again after UNAVAILABLE: reads, and writes keyed so that a
#: second copy replaces the first (Upsert by record id). Delete is not (its count would
#: be wrong), nor BulkEnrol (a stream: `enroll` resumes it from its journal instead).
IDEMPOTENT = frozenset(
    {
        "/kinship.v1.Embedder/Embed",
        "/kinship.v1.Embedder/EmbedBatch",
        "/kinship.v1.Embedder/ListModels",
        "/kinship.v1.Indexer/Upsert",
        "/kinship.v1.Indexer/Search",
        "/kinship.v1.Indexer/GetRecords",
        "/kinship.v1.Indexer/ListCollections",
        "/kinship.v1.Indexer/Stats",
        "/kinship.v1.KinshipRanker/FindRelatives",
        "/kinship.v1.KinshipRanker/CompareKinship",
        "/kinship.v1.KinshipRanker/DescribeScoring",
        "/grpc.health.v1.Health/Check",
    }
)


@dataclass(frozen=True)
class Targets:
    """The address of each service ("host:port"; any gRPC target, e.g. dns:///name:50051)."""

    embedder: str
    indexer: str
    ranker: str

    @classmethod
    def resolve(cls, target: str | Mapping[str, str] | Targets | None = None) -> Targets:
        """None: KINSHIP_<SERVICE>_ADDRESS or 127.0.0.1 on the default ports; "host": that host on
        the default ports; "host:port": all three behind one address (a gateway that routes by
        gRPC service); a mapping: per service, the others as for None."""
        if isinstance(target, Targets):
            return target
        if target is None or isinstance(target, Mapping):
            given = dict(target or {})
            unknown = set(given) - set(addresses.SERVICES)
            if unknown:
                raise ValueError(f"unknown service(s) {sorted(unknown)} in target: use {', '.join(addresses.SERVICES)}")
            return cls(**{s: addresses.service_address(s, given.get(s)) for s in addresses.SERVICES})
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"target must be 'host', 'host:port' or a mapping of service to address, got {target!r}")
        target = target.strip()
        if _has_port(target):
            return cls(target, target, target)
        return cls(**{s: f"{target}:{port}" for s, port in addresses.DEFAULT_PORTS.items()})

    def of(self, service: str) -> str:
        return getattr(self, service)


def _has_port(target: str) -> bool:
    if "://" in target or target.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return True
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return False
    if host.startswith("["):  # [::1]:50051
        return host.endswith("]")
    return ":" not in host  # a bare IPv6 address (::1) has no port


def security_of(
    tls: ClientTls | str | Path | None,
    token: str | None,
    *,
    client_name: str | None,
    case_id: str,
    purpose: str,
    security: ClientSecurity | None,
) -> ClientSecurity:
    """One ClientSecurity from the client's keyword arguments (or the one given whole)."""
    if security is not None:
        if tls is not None or token is not None:
            raise ValueError("give either security= or tls=/token=, not both")
        return security
    if isinstance(tls, str | Path):
        if not client_name:
            raise ValueError("tls=DIR needs client_name= (the client certificate NAME.crt/NAME.key in DIR)")
        tls = ClientTls(Path(tls).expanduser(), client_name)
    return ClientSecurity(tls=tls, token=token or None, case_id=case_id, purpose=purpose)


@dataclass(frozen=True)
class ChannelSettings:
    max_message_mb: float = 16.0
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS

    def options(self) -> list:
        return client_options(self.max_message_mb, keepalive_seconds=self.keepalive_seconds)


def sync_channel(address: str, security: ClientSecurity, settings: ChannelSettings) -> grpc.Channel:
    # Metadata goes on each call (see `metadata`), so the channel carries the transport only.
    return client_security.sync_channel(address, settings.options(), ClientSecurity(tls=security.tls))


def aio_channel(address: str, security: ClientSecurity, settings: ChannelSettings) -> grpc.aio.Channel:
    return client_security.aio_channel(address, settings.options(), security.tls)


def metadata(security: ClientSecurity, request_id: str) -> tuple[tuple[str, str], ...]:
    return ((REQUEST_ID_KEY, request_id), *security.metadata())


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for UNAVAILABLE on idempotent methods.

    Attempt n (from 1) waits `initial_backoff * multiplier**(n-1)`, at most `max_backoff`,
    times a random factor in [0.5, 1.5) so that callers refused together do not return
    together. Every attempt shares the call's one deadline. A refusal by admission control
    (RESOURCE_EXHAUSTED with RetryInfo) did no work, so it is sent again after the server's
    hint whatever the method.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 3.0
    multiplier: float = 2.0
    jitter: tuple[float, float] = field(default=(0.5, 1.5))

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: max_attempts >= 1, backoffs >= 0 and multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * random.uniform(*self.jitter)

    def wait_before_retry(
        self, error: errors.KinshipClientError, method: str, attempt: int, end: float | None
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: give `error` to the caller."""
        if attempt >= self.max_attempts:
            return None
        if error.status == grpc.StatusCode.UNAVAILABLE and method in IDEMPOTENT:
            wait = self.backoff(attempt)
        elif error.status == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None:
            wait = error.retry_after * random.uniform(*self.jitter)
        else:
            return None
        if end is not None and time.monotonic() + wait >= end:
            return None
        return wait


NO_RETRY = RetryPolicy(max_attempts=1)


def deadline_end(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def time_left(end: float | None, method: str, request_id: str, attempts: int) -> float | None:
    if end is None:
        return None
    left = end - time.monotonic()
    if left <= 0:
        raise errors.DeadlineExceeded(
            f"the deadline passed before {method} could be sent again",
            method=method,
            request_id=request_id,
            attempts=attempts,
        )
    return left
