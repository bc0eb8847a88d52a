from __future__ import annotations

from types import SimpleNamespace

import pytest

from kinship.runtime import config
from kinship.runtime.errors import ConfigError
from kinship.security import policy
from kinship.security.client import from_options
from kinship.security.settings import purpose_required, security_on, server_settings
from kinship.security.transport import is_loopback, server_credentials
from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2


def _all_rpcs() -> set[str]:
    out = set()
    for module in (embedder_pb2, indexer_pb2, ranker_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            out |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return out


def test_every_rpc_of_the_contracts_has_a_decision_in_the_permission_table() -> None:
    # A new RPC is closed to everyone until someone decides who may call it, and this test says so.
    assert _all_rpcs() == set(policy.PERMISSIONS)
    assert policy.PURPOSE_BOUND <= set(policy.PERMISSIONS)


def test_roles_grant_what_the_issue_asks() -> None:
    allowed = policy.allowed
    assert allowed("/kinship.v1.Indexer/Upsert", "enroller") and not allowed("/kinship.v1.Indexer/Upsert", "searcher")
    assert allowed("/kinship.v1.KinshipRanker/FindRelatives", "searcher")
    assert not allowed("/kinship.v1.KinshipRanker/FindRelatives", "admin")
    assert allowed("/kinship.v1.Indexer/Delete", "admin") and not allowed("/kinship.v1.Indexer/Delete", "searcher")
    assert allowed("/kinship.v1.Embedder/Embed", "service")
    assert not any(allowed(m, "auditor") for m in policy.PURPOSE_BOUND)
    assert not allowed("/kinship.v1.Indexer/NotYetDecided", "admin")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("[::]", False),
        ("10.0.0.5", False),
    ],
)
def test_loopback(host, loopback) -> None:
    assert is_loopback(host) is loopback


def test_plaintext_on_a_public_address_needs_an_explicit_choice() -> None:
    with pytest.raises(ConfigError, match="--plaintext"):
        server_credentials(SimpleNamespace(host="0.0.0.0", tls_dir=None, plaintext=False))
    assert server_credentials(SimpleNamespace(host="0.0.0.0", tls_dir=None, plaintext=True)) is None
    assert server_credentials(SimpleNamespace(host="127.0.0.1", tls_dir=None, plaintext=False)) is None


def test_security_is_on_with_a_tls_folder_and_then_purpose_is_required(tmp_path) -> None:
    from kinship.security import certs

    certs.init(tmp_path)
    on = config.resolve(server_settings("ranker", 1), {"tls_dir": str(tmp_path)}, env={})
    off = config.resolve(server_settings("ranker", 1), {}, env={})
    assert security_on(on) and purpose_required(on)
    assert not security_on(off) and not purpose_required(off)
    forced = config.resolve(server_settings("ranker", 1), {"require_purpose": "true"}, env={})
    assert purpose_required(forced)


def test_a_tls_folder_without_certificates_is_refused_at_start(tmp_path) -> None:
    with pytest.raises(ConfigError, match="kinship certs init"):
        config.resolve(server_settings("ranker", 1), {"tls_dir": str(tmp_path)}, env={})


def test_client_tls_needs_a_name(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KINSHIP_CLIENT_NAME", raising=False)
    with pytest.raises(ValueError, match="--as NAME"):
        from_options(tmp_path)
    security = from_options(tmp_path, "alice", case_id="c1", purpose="p")
    assert security.tls.name == "alice"
    assert dict(security.metadata()) == {"x-case-id": "c1", "x-purpose": "p"}


def test_plaintext_is_a_bare_flag_on_every_service() -> None:
    from kinship.cli.serve import service_parser

    parser = service_parser("indexer")
    flags = parser.parse_args(["--plaintext"])
    assert config.resolve(server_settings("indexer", 1), flags, env={}).plaintext is True
    flags = parser.parse_args(["--plaintext", "false"])
    assert config.resolve(server_settings("indexer", 1), flags, env={}).plaintext is False
