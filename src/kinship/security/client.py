"""What a client of the suite presents: TLS client certificate, bearer token, case id, purpose.

The CLI sets one `ClientSecurity` for the process from `--tls-dir DIR --as NAME`
(or KINSHIP_TLS_DIR / KINSHIP_CLIENT_NAME), `--token-file` (KINSHIP_TOKEN_FILE),
`--case-id` and `--purpose` (KINSHIP_CASE_ID / KINSHIP_PURPOSE);
`runtime.clients.sync_channel` uses it for every channel it opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from . import forwarding
from .transport import ClientTls


@dataclass(frozen=True)
class ClientSecurity:
    tls: ClientTls | None = None
    token: str | None = None
    case_id: str = ""
    purpose: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        if self.token:
            out.append(("authorization", f"Bearer {self.token}"))
        if self.case_id:
            out.append((forwarding.CASE_ID_KEY, self.case_id))
        if self.purpose:
            out.append((forwarding.PURPOSE_KEY, self.purpose))
        return tuple(out)


_current = ClientSecurity()


def configure(security: ClientSecurity) -> None:
    global _current
    _current = security


def current() -> ClientSecurity:
    return _current


def from_options(
    tls_dir: str | Path | None = None,
    name: str | None = None,
    token_file: str | Path | None = None,
    case_id: str | None = None,
    purpose: str | None = None,
) -> ClientSecurity:
    """Flags first, then KINSHIP_TLS_DIR, KINSHIP_CLIENT_NAME, KINSHIP_TOKEN_FILE, KINSHIP_CASE_ID, KINSHIP_PURPOSE."""
    tls_dir = tls_dir or os.environ.get("KINSHIP_TLS_DIR") or None
    name = name or os.environ.get("KINSHIP_CLIENT_NAME") or None
    token_file = token_file or os.environ.get("KINSHIP_TOKEN_FILE") or None
    if tls_dir and not name:
        raise ValueError("--tls-dir needs --as NAME (the client certificate NAME.crt/NAME.key in that folder)")
    tls = ClientTls(Path(tls_dir).expanduser(), name) if tls_dir else None
    token = Path(token_file).expanduser().read_text().strip() if token_file else None
    return ClientSecurity(
        tls=tls,
        token=token,
        case_id=(case_id if case_id is not None else os.environ.get("KINSHIP_CASE_ID", "")).strip(),
        purpose=(purpose if purpose is not None else os.environ.get("KINSHIP_PURPOSE", "")).strip(),
    )


class _AddMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, metadata: tuple[tuple[str, str], ...]):
        self._metadata = metadata

    def _details(self, details):
        merged = tuple(details.metadata or ()) + self._metadata
        return details._replace(metadata=merged) if hasattr(details, "_replace") else _Details(details, merged)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


@dataclass(frozen=True)
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple
    credentials: object
    wait_for_ready: bool | None
    compression: object

    def __init__(self, base, metadata):
        object.__setattr__(self, "method", base.method)
        object.__setattr__(self, "timeout", base.timeout)
        object.__setattr__(self, "metadata", metadata)
        object.__setattr__(self, "credentials", base.credentials)
        object.__setattr__(self, "wait_for_ready", getattr(base, "wait_for_ready", None))
        object.__setattr__(self, "compression", getattr(base, "compression", None))


def sync_channel(address: str, options: list, security: ClientSecurity | None = None) -> grpc.Channel:
    security = security or _current
    if security.tls is not None:
        channel = grpc.secure_channel(address, security.tls.credentials(), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    metadata = security.metadata()
    return grpc.intercept_channel(channel, _AddMetadata(metadata)) if metadata else channel


def aio_channel(address: str, options: list, tls: ClientTls | None = None) -> grpc.aio.Channel:
    if tls is not None:
        return grpc.aio.secure_channel(address, tls.credentials(), options=options)
    return grpc.aio.insecure_channel(address, options=options)
