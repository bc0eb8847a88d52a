"""A local certificate authority and the suite's certificates (`kinship certs`).

`init` makes, in one folder: the CA (`ca.crt`, `ca.key`), the servers' certificate
(`server.crt`, `server.key`, valid for localhost, 127.0.0.1, ::1 and the names given)
and the suite's own client certificate (`service.crt`, `service.key`, role `service`)
that a service presents when it calls another. `issue` adds a client certificate
`NAME.crt` + `NAME.key` for one caller.

A client certificate carries who the caller is: the subject's common name is the
caller's name, and two URI subject-alternative names carry its role and tenant:
`urn:kinship-search:role:<role>` and `urn:kinship-search:tenant:<tenant>`. Only the
CA's signature makes them believable, so `ca.key` stays with whoever issues
certificates and never goes into a running service.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kinship.runtime.tenancy import TENANT_PATTERN

from .policy import ROLES, SERVICE, Identity

ROLE_URI = "urn:kinship-search:role:"
TENANT_URI = "urn:kinship-search:tenant:"
ORGANISATION = "kinship-search"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
SERVICE_CLIENT = "service"


class CertificateError(ValueError):
    """A certificate request or file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class TlsFiles:
    """Where a TLS folder keeps each file."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def client_cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Owner-only from the first byte: a key never sits world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not files.ca_cert.exists() or not files.ca_key.exists():
        raise CertificateError(f"no CA in {files.folder}: run `kinship certs init {files.folder}` first")
    cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _leaf(
    subject_name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    usage: list[x509.ObjectIdentifier],
    days: int,
    not_before: datetime.datetime | None = None,
) -> x509.Certificate:
    start = not_before or (_now() - datetime.timedelta(minutes=5))
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, subject_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def init(folder: Path, server_names: list[str] = (), *, days: int = 365, force: bool = False) -> list[Path]:
    """Makes the CA, the server certificate and the suite's own client certificate in `folder`."""
    files = TlsFiles(Path(folder))
    if files.ca_key.exists() and not force:
        raise CertificateError(
            f"{files.ca_key} exists: a new CA would invalidate every certificate it issued; pass --force to replace it"
        )
    files.folder.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    start = _now() - datetime.timedelta(minutes=5)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, "kinship-search local CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.ca_key, ca_key)
    _write_cert(files.ca_cert, ca_cert)
    names = list(dict.fromkeys([*DEFAULT_SERVER_NAMES, *server_names]))
    server_key = _new_key()
    server_cert = _leaf(
        "kinship-search server",
        ca_cert,
        ca_key,
        server_key,
        [_san(n) for n in names],
        [ExtendedKeyUsageOID.SERVER_AUTH],
        days,
    )
    _write_key(files.server_key, server_key)
    _write_cert(files.server_cert, server_cert)
    written = [files.ca_cert, files.ca_key, files.server_cert, files.server_key]
    written += issue(files.folder, SERVICE_CLIENT, role=SERVICE, days=days)
    return written


def issue(
    folder: Path,
    name: str,
    *,
    role: str,
    tenant: str | None = None,
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> list[Path]:
    """Makes the client certificate `NAME.crt` + `NAME.key` for one caller, signed by the folder's CA."""
    if not NAME_PATTERN.match(name):
        raise CertificateError(f"name {name!r} is not usable: use 1-63 letters, digits, '.', '_' or '-'")
    if name in ("ca", "server"):
        raise CertificateError(f"name {name!r} is taken by the CA or the server certificate; choose another")
    if role not in ROLES:
        raise CertificateError(f"role {role!r} is unknown: choose one of {', '.join(ROLES)}")
    if tenant is not None and not TENANT_PATTERN.match(tenant):
        raise CertificateError(f"tenant {tenant!r} is not a valid tenant id: use 1-63 letters, digits, '.', '_' or '-'")
    files = TlsFiles(Path(folder))
    ca_cert, ca_key = _load(files)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(ROLE_URI + role)]
    if tenant:
        sans.append(x509.UniformResourceIdentifier(TENANT_URI + tenant))
    key = _new_key()
    cert = _leaf(name, ca_cert, ca_key, key, sans, [ExtendedKeyUsageOID.CLIENT_AUTH], days, not_before)
    _write_key(files.client_key(name), key)
    _write_cert(files.client_cert(name), cert)
    return [files.client_cert(name), files.client_key(name)]


@functools.lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> Identity:
    """The caller a (CA-verified) client certificate names; raises CertificateError without a role.

    Only called on certificates the TLS handshake already verified against the CA,
    so what they say is what the CA signed.
    """
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise CertificateError("the client certificate has no common name (the caller's name)")
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except x509.ExtensionNotFound:
        uris = []
    roles = [u[len(ROLE_URI) :] for u in uris if u.startswith(ROLE_URI)]
    tenants = [u[len(TENANT_URI) :] for u in uris if u.startswith(TENANT_URI)]
    if len(roles) != 1 or roles[0] not in ROLES:
        raise CertificateError(
            f"the client certificate must name exactly one known role as a URI {ROLE_URI}<role>; it names {roles or 'none'}"
        )
    if len(tenants) > 1:
        raise CertificateError("the client certificate names more than one tenant")
    return Identity(
        name=str(names[0].value), role=roles[0], tenant=tenants[0] if tenants else None, method="certificate"
    )
