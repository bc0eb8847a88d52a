"""Credentials from a TLS folder, and the rule for plaintext.

Servers: with a TLS folder, TLS with client certificates verified against its
`ca.crt` (required by default). Without one, plaintext is allowed on a loopback
address with a warning (so `make run` and the tests work on one machine, where the
network cannot be reached from outside) and anywhere else only with an explicit
`--plaintext`.

Clients: a TLS folder's `ca.crt` verifies the server; the client certificate is
`NAME.crt`/`NAME.key` (`--as NAME`; a service uses `service`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import grpc

from kinship.runtime.errors import ConfigError
from kinship.runtime.logs import get_logger

from .certs import SERVICE_CLIENT, TlsFiles

log = get_logger("kinship.security")


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_credentials(settings: SimpleNamespace) -> grpc.ServerCredentials | None:
    """TLS credentials for the server, or None for plaintext (allowed only as the rule says)."""
    tls_dir = getattr(settings, "tls_dir", None)
    if tls_dir is not None:
        files = TlsFiles(Path(tls_dir))
        return grpc.ssl_server_credentials(
            [(files.server_key.read_bytes(), files.server_cert.read_bytes())],
            root_certificates=files.ca_cert.read_bytes(),
            require_client_auth=bool(getattr(settings, "tls_require_client_cert", True)),
        )
    if not is_loopback(settings.host) and not getattr(settings, "plaintext", False):
        raise ConfigError(
            f"refusing to serve plaintext on {settings.host}: give a TLS folder (--tls-dir / KINSHIP_TLS_DIR, "
            f"made by `kinship certs init`), bind loopback (--host 127.0.0.1), or choose plaintext explicitly "
            f"(--plaintext / KINSHIP_PLAINTEXT=true) for local development"
        )
    log.warning(
        "serving PLAINTEXT without authentication: for local development only; set --tls-dir for TLS and client "
        "certificates",
        host=settings.host,
    )
    return None


@dataclass(frozen=True)
class ClientTls:
    """What a client presents: the CA to trust, and its own certificate by name."""

    tls_dir: Path
    name: str = SERVICE_CLIENT

    def credentials(self) -> grpc.ChannelCredentials:
        files = TlsFiles(self.tls_dir)
        cert, key = files.client_cert(self.name), files.client_key(self.name)
        missing = [str(p) for p in (files.ca_cert, cert, key) if not p.is_file()]
        if missing:
            raise ConfigError(
                f"missing TLS file(s) {', '.join(missing)}: issue one with `kinship certs issue {self.tls_dir} {self.name} --role ...`"
            )
        return grpc.ssl_channel_credentials(
            root_certificates=files.ca_cert.read_bytes(),
            private_key=key.read_bytes(),
            certificate_chain=cert.read_bytes(),
        )
