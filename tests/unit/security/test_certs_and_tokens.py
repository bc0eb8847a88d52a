from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import stat

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kinship.runtime.errors import Unauthenticated
from kinship.security import certs, tokens
from kinship.security.policy import Identity


def test_init_makes_a_ca_server_and_service_certificate_with_private_keys(tmp_path) -> None:
    written = certs.init(tmp_path, ["indexer.kinship.svc"])
    assert {p.name for p in written} == {
        "ca.crt", "ca.key", "server.crt", "server.key", "service.crt", "service.key"
    }  # fmt: skip
    for key in tmp_path.glob("*.key"):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    from cryptography import x509

    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "indexer.kinship.svc"} <= set(sans.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert certs.identity_from_pem((tmp_path / "service.crt").read_bytes()) == Identity("service", "service", None)
    with pytest.raises(certs.CertificateError, match="--force"):
        certs.init(tmp_path)


def test_a_client_certificate_carries_name_role_and_tenant(tmp_path) -> None:
    certs.init(tmp_path)
    certs.issue(tmp_path, "alice", role="searcher", tenant="agency-a")
    identity = certs.identity_from_pem((tmp_path / "alice.crt").read_bytes())
    assert (identity.name, identity.role, identity.tenant, identity.method) == (
        "alice",
        "searcher",
        "agency-a",
        "certificate",
    )


@pytest.mark.parametrize(
    ("name", "role", "tenant", "words"),
    [
        ("alice", "superuser", None, "role 'superuser' is unknown"),
        ("../etc", "searcher", None, "not usable"),
        ("server", "searcher", None, "taken"),
        ("alice", "searcher", "bad tenant!", "not a valid tenant id"),
    ],
)
def test_issue_refuses_what_it_cannot_vouch_for(tmp_path, name, role, tenant, words) -> None:
    certs.init(tmp_path)
    with pytest.raises(certs.CertificateError, match=words):
        certs.issue(tmp_path, name, role=role, tenant=tenant)


def test_issue_without_a_ca_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(certs.CertificateError, match="kinship certs init"):
        certs.issue(tmp_path, "alice", role="searcher")


def _verifier(folder):
    tokens.signing_key(folder)
    return tokens.TokenVerifier.from_files([folder / tokens.PUBLIC_KEY])


def test_a_valid_token_names_its_caller(tmp_path) -> None:
    verifier = _verifier(tmp_path)
    token = tokens.mint(tokens.signing_key(tmp_path), "tina", role="auditor", tenant="agency-a")
    assert verifier.verify(token) == Identity("tina", "auditor", "agency-a", method="token")


def test_expired_forged_and_unsigned_tokens_are_refused(tmp_path) -> None:
    verifier = _verifier(tmp_path)
    key = tokens.signing_key(tmp_path)
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(tokens.mint(key, "t", role="admin", ttl_seconds=60, now=old))
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(Unauthenticated, match="none of the configured keys"):
        verifier.verify(tokens.mint(tokens.signing_key(other), "t", role="admin"))
    claims = {"sub": "t", "role": "admin", "iss": "kinship-search", "aud": "kinship-search", "exp": 4102444800}
    with pytest.raises(Unauthenticated):
        verifier.verify(jwt.encode(claims, None, algorithm="none"))
    # The public key used as an HMAC secret (the classic algorithm confusion) is refused too.
    # PyJWT will not even sign that, so the token is put together by hand.
    public_pem = (tmp_path / tokens.PUBLIC_KEY).read_bytes()
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(Unauthenticated):
        verifier.verify(f"{header}.{body}.{signature}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_without_a_known_role_or_with_a_wrong_audience_is_refused(tmp_path) -> None:
    verifier = _verifier(tmp_path)
    key = tokens.signing_key(tmp_path)
    with pytest.raises(Unauthenticated, match="no known role"):
        verifier.verify(tokens.mint(key, "t", role="root"))
    with pytest.raises(Unauthenticated, match="not valid"):
        verifier.verify(tokens.mint(key, "t", role="admin", audience="someone-else"))


def test_rsa_keys_verify_too(tmp_path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = tokens.TokenVerifier([public])
    now = datetime.datetime.now(datetime.UTC)
    claims = {
        "sub": "r",
        "role": "searcher",
        "iss": "kinship-search",
        "aud": "kinship-search",
        "exp": now + datetime.timedelta(minutes=5),
    }
    assert verifier.verify(jwt.encode(claims, private, algorithm="RS256")).name == "r"
