"""Signed bearer tokens (JWT) for callers that cannot present a client certificate.

A token is verified against the public keys the server is configured with (ES256
or RS256 only; `none` and HMAC algorithms are refused, so a public key can never be
used as a shared secret). It must carry `sub` (the caller's name), `role`, `exp`,
`iss` and `aud` as configured, and may carry `tenant`. `kinship certs token` mints
one with a signing key kept in the TLS folder, for tests and small deployments; a
real deployment points `KINSHIP_JWT_PUBLIC_KEYS` at its identity provider's keys.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kinship.runtime.errors import Unauthenticated
from kinship.runtime.tenancy import TENANT_PATTERN

from .policy import ROLES, Identity

ALGORITHMS = ["ES256", "RS256"]
DEFAULT_ISSUER = "kinship-search"
DEFAULT_AUDIENCE = "kinship-search"
SIGNING_KEY = "jwt-signing.key"
PUBLIC_KEY = "jwt-signing.pub"


class TokenVerifier:
    """Checks bearer tokens against a fixed set of public keys."""

    def __init__(self, public_keys: Sequence[bytes], *, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE):
        self._keys = [serialization.load_pem_public_key(k) for k in public_keys]
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_files(cls, paths: Sequence[Path], **kwargs) -> TokenVerifier:
        return cls([Path(p).read_bytes() for p in paths], **kwargs)

    def verify(self, token: str) -> Identity:
        """The caller the token names; Unauthenticated with the reason when it is not valid."""
        last: Exception | None = None
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=ALGORITHMS,
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "sub", "iss", "aud"]},
                    leeway=30,
                )
            except jwt.ExpiredSignatureError as exc:
                raise Unauthenticated("the bearer token has expired: get a new one", reason="TOKEN_EXPIRED") from exc
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.InvalidTokenError as exc:
                raise Unauthenticated(f"the bearer token is not valid: {exc}", reason="TOKEN_INVALID") from exc
            return _identity(claims)
        raise Unauthenticated(
            "the bearer token's signature matches none of the configured keys", reason="TOKEN_INVALID"
        ) from last


def _identity(claims: dict) -> Identity:
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated(
            f"the bearer token names no known role (one of {', '.join(ROLES)})", reason="TOKEN_INVALID"
        )
    tenant = claims.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant)):
        raise Unauthenticated("the bearer token's tenant is not a valid tenant id", reason="TOKEN_INVALID")
    return Identity(name=str(claims["sub"]), role=role, tenant=tenant or None, method="token")


def signing_key(folder: Path) -> ec.EllipticCurvePrivateKey:
    """The folder's token signing key, made on first use (its public half beside it)."""
    key_path, pub_path = Path(folder) / SIGNING_KEY, Path(folder) / PUBLIC_KEY
    if key_path.exists():
        return serialization.load_pem_private_key(key_path.read_bytes(), password=None)  # type: ignore[return-value]
    key = ec.generate_private_key(ec.SECP256R1())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    pub_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key


def mint(
    key: ec.EllipticCurvePrivateKey,
    name: str,
    *,
    role: str,
    tenant: str | None = None,
    ttl_seconds: float = 3600,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: datetime.datetime | None = None,
) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    claims = {
        "sub": name,
        "role": role,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + datetime.timedelta(seconds=ttl_seconds),
    }
    if tenant:
        claims["tenant"] = tenant
    return jwt.encode(claims, key, algorithm="ES256")
