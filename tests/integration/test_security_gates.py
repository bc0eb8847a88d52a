"""The security layer through real gRPC with mutual TLS, in front of a hand-written in-memory indexer.

The fake is our own kinship.v1.Indexer interface keeping records per tenant through
`resolve_tenant`, as the real indexer does; everything in front of it is the
production stack (`start_server`: TLS credentials, CallContextInterceptor, the
security interceptor, the audit trail). Each refusal is checked for its status, its
message, its audit event, and for having changed nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path

import grpc
import pytest

from kinship.audit import trail
from kinship.runtime import config
from kinship.runtime.clients import sync_channel
from kinship.runtime.server import ServerThread
from kinship.runtime.tenancy import resolve_tenant
from kinship.security import certs, tokens
from kinship.security.client import ClientSecurity
from kinship.security.settings import server_settings
from kinship.security.transport import ClientTls
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

SERVICE = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name
CASE = {"case_id": "case-7", "purpose": "missing child report 7"}


class InMemoryIndexer(indexer_pb2_grpc.IndexerServicer):
    """Records per tenant (the tenant the security layer binds), no vectors."""

    def __init__(self):
        self.records: dict[str, dict[str, indexer_pb2.GalleryRecord]] = {}

    def _gallery(self) -> dict[str, indexer_pb2.GalleryRecord]:
        return self.records.setdefault(resolve_tenant(""), {})

    async def Upsert(self, request, context):
        for record in request.records:
            self._gallery()[record.record_id] = record
        return indexer_pb2.UpsertResponse(upserted_count=len(request.records), collection="fake")

    async def Search(self, request, context):
        hits = [indexer_pb2.SearchHit(record_id=r.record_id, person_id=r.person_id) for r in self._gallery().values()]
        return indexer_pb2.SearchResponse(results=[indexer_pb2.QueryResult(hits=hits[: request.top_k])])

    async def GetRecords(self, request, context):
        wanted = set(request.person_ids)
        return indexer_pb2.GetRecordsResponse(records=[r for r in self._gallery().values() if r.person_id in wanted])

    async def ListCollections(self, request, context):
        # Slow on purpose: longer than the token server's deadline cap.
        await asyncio.sleep(30)
        return indexer_pb2.ListCollectionsResponse()

    async def Delete(self, request, context):
        gallery = self._gallery()
        gone = [k for k, r in gallery.items() if r.person_id in request.person_ids or k in request.record_ids]
        for key in gone:
            del gallery[key]
        return indexer_pb2.DeleteResponse(deleted_count=len(gone))


class FakeIndexerService:
    name = "indexer"
    service_names = (SERVICE,)

    def __init__(self):
        self.servicer = InMemoryIndexer()

    def register(self, server):
        indexer_pb2_grpc.add_IndexerServicer_to_server(self.servicer, server)

    async def check_ready(self):
        return None

    async def close(self):
        return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    tls = tmp_path_factory.mktemp("tls")
    certs.init(tls)
    certs.issue(tls, "alice", role="searcher", tenant="agency-a")
    certs.issue(tls, "bob", role="searcher", tenant="agency-b")
    certs.issue(tls, "erin", role="enroller", tenant="agency-a")
    certs.issue(tls, "eric", role="enroller", tenant="agency-b")
    certs.issue(tls, "ada", role="admin", tenant="agency-a")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    certs.issue(tls, "stale", role="admin", tenant="agency-a", days=1, not_before=past)
    # A CA of its own: its certificates look right and mean nothing here.
    rogue = tmp_path_factory.mktemp("rogue")
    certs.init(rogue)
    certs.issue(rogue, "mallory", role="admin", tenant="agency-a")
    for name in ("mallory.crt", "mallory.key"):
        (tls / name).write_bytes((rogue / name).read_bytes())
    tokens.signing_key(tls)
    return tls


def _serve(pki: Path, audit_log: Path, **extra: str):
    settings = config.resolve(
        server_settings("indexer", 0),
        {
            "port": "0",
            "log_level": "warning",
            "tls_dir": str(pki),
            "audit_log": str(audit_log),
            "rate_limit_per_second": "200",
            "rate_limit_burst": "200",
            "max_top_k": "50",
            "max_batch": "10",
            **extra,
        },
        env={},
    )
    service = FakeIndexerService()
    return service, ServerThread(lambda _s: service, settings)


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory):
    """Mutual TLS: every caller presents a client certificate signed by the CA."""
    audit_log = tmp_path_factory.mktemp("audit") / "indexer.audit.jsonl"
    service, thread = _serve(pki, audit_log)
    with thread as running:
        yield {"address": f"localhost:{running.port}", "service": service, "audit": audit_log, "tls": pki}


@pytest.fixture(scope="module")
def token_server(pki, tmp_path_factory):
    """TLS without client certificates: callers present bearer tokens (grpc cannot make a client certificate optional)."""
    audit_log = tmp_path_factory.mktemp("audit-token") / "indexer.audit.jsonl"
    service, thread = _serve(
        pki,
        audit_log,
        tls_require_client_cert="false",
        jwt_public_keys=str(pki / tokens.PUBLIC_KEY),
        rate_limit_per_second="1",
        rate_limit_burst="3",
        max_deadline_seconds="1",
    )
    with thread as running:
        yield {"address": f"localhost:{running.port}", "service": service, "audit": audit_log, "tls": pki}


def stub(server, name: str | None = None, *, token: str | None = None, case: bool = True):
    security = ClientSecurity(
        tls=ClientTls(server["tls"], name) if name else None, token=token, **(CASE if case else {})
    )
    if name is None:
        # TLS that trusts the CA but presents no client certificate.
        channel = grpc.secure_channel(
            server["address"], grpc.ssl_channel_credentials(root_certificates=(server["tls"] / "ca.crt").read_bytes())
        )
        channel = grpc.intercept_channel(channel, *_metadata(security))
    else:
        channel = sync_channel(server["address"], security=security)
    return indexer_pb2_grpc.IndexerStub(channel)


def _metadata(security: ClientSecurity):
    from kinship.security.client import _AddMetadata

    return [_AddMetadata(security.metadata())] if security.metadata() else []


def records(person: str, n: int = 1) -> list[indexer_pb2.GalleryRecord]:
    return [indexer_pb2.GalleryRecord(record_id=f"{person}:{i}", person_id=person) for i in range(n)]


def events(server) -> list[dict]:
    return list(trail.read_events(server["audit"])) if server["audit"].exists() else []


def refused(call, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def test_each_tenant_sees_and_changes_only_its_own_gallery(server) -> None:
    stub(server, "erin").Upsert(indexer_pb2.UpsertRequest(records=records("anna")), timeout=10)
    stub(server, "eric").Upsert(indexer_pb2.UpsertRequest(records=records("boris")), timeout=10)
    a_hits = stub(server, "alice").Search(indexer_pb2.SearchRequest(top_k=10), timeout=10).results[0].hits
    b_hits = stub(server, "bob").Search(indexer_pb2.SearchRequest(top_k=10), timeout=10).results[0].hits
    assert [h.person_id for h in a_hits] == ["anna"]
    assert [h.person_id for h in b_hits] == ["boris"]
    # Another tenant's record, asked for by id, is simply not there for this caller.
    assert not stub(server, "alice").GetRecords(indexer_pb2.GetRecordsRequest(person_ids=["boris"]), timeout=10).records


def test_wrong_role_is_refused_audited_and_changes_nothing(server) -> None:
    stub(server, "erin").Upsert(indexer_pb2.UpsertRequest(records=records("carla")), timeout=10)
    before = len(events(server))
    err = refused(
        lambda: stub(server, "alice").Delete(indexer_pb2.DeleteRequest(person_ids=["carla"]), timeout=10),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "alice (role searcher) may not call /kinship.v1.Indexer/Delete; it needs role admin" in err.details()
    assert "carla:0" in server["service"].servicer.records["agency-a"]
    (event,) = events(server)[before:]
    assert (event["caller"], event["outcome"], event["reason"], event["refused_by"]) == (
        "alice", "PERMISSION_DENIED", "ROLE_NOT_ALLOWED", "authorisation"
    )  # fmt: skip
    # The admin of the same tenant may, and the deletion is audited with the ids it changed.
    deleted = stub(server, "ada").Delete(indexer_pb2.DeleteRequest(person_ids=["carla"]), timeout=10)
    assert deleted.deleted_count == 1
    last = events(server)[-1]
    assert (last["rpc"], last["outcome"], last["person_ids"], last["case_id"]) == (
        "/kinship.v1.Indexer/Delete", "OK", ["carla"], "case-7"
    )  # fmt: skip


def test_no_case_id_is_refused_with_a_message_that_says_so(server) -> None:
    err = refused(
        lambda: stub(server, "alice", case=False).Search(indexer_pb2.SearchRequest(top_k=5), timeout=10),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "needs a case id and a purpose" in err.details() and "x-case-id" in err.details()
    assert events(server)[-1]["reason"] == "PURPOSE_REQUIRED"


def test_untrusted_and_expired_certificates_fail_the_handshake(server) -> None:
    before = len(events(server))
    for name in ("mallory", "stale"):
        refused(
            lambda name=name: stub(server, name).Delete(indexer_pb2.DeleteRequest(person_ids=["anna"]), timeout=10),
            grpc.StatusCode.UNAVAILABLE,
        )
    assert "anna:0" in server["service"].servicer.records["agency-a"]
    assert len(events(server)) == before  # no call reached the server


def test_no_credentials_expired_and_forged_tokens_are_unauthenticated(token_server, tmp_path) -> None:
    server = token_server
    server["service"].servicer.records["agency-a"] = {r.record_id: r for r in records("anna")}
    key = tokens.signing_key(server["tls"])
    now = datetime.datetime.now(datetime.UTC)
    expired = tokens.mint(
        key, "tina", role="admin", tenant="agency-a", ttl_seconds=60, now=now - datetime.timedelta(hours=2)
    )
    forged = tokens.mint(tokens.signing_key(tmp_path), "tina", role="admin", tenant="agency-a")
    cases = {
        None: "no credentials",
        expired: "expired",
        forged: "matches none of the configured keys",
    }
    for token, words in cases.items():
        err = refused(
            lambda token=token: stub(server, None, token=token).Delete(
                indexer_pb2.DeleteRequest(person_ids=["anna"]), timeout=10
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert words in err.details()
    assert "anna:0" in server["service"].servicer.records["agency-a"]
    valid = tokens.mint(key, "tina", role="searcher", tenant="agency-a")
    hits = stub(server, None, token=valid).Search(indexer_pb2.SearchRequest(top_k=5), timeout=10).results[0].hits
    assert "anna" in [h.person_id for h in hits]
    assert events(server)[-1]["caller"] == "tina" and events(server)[-1]["auth"] == "token"


def test_only_the_suites_service_identity_may_act_on_behalf_of_another(server) -> None:
    channel = sync_channel(server["address"], security=ClientSecurity(tls=ClientTls(server["tls"], "alice"), **CASE))
    err = refused(
        lambda: indexer_pb2_grpc.IndexerStub(channel).Delete(
            indexer_pb2.DeleteRequest(person_ids=["anna"]),
            timeout=10,
            metadata=(("x-on-behalf-of", "ada"), ("x-on-behalf-of-role", "admin")),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "only from the suite's own services" in err.details()
    # The service identity may, and the indexer then applies the original caller's role and tenant.
    service = indexer_pb2_grpc.IndexerStub(
        sync_channel(server["address"], security=ClientSecurity(tls=ClientTls(server["tls"], "service"), **CASE))
    )
    delegated = (("x-on-behalf-of", "bob"), ("x-on-behalf-of-role", "searcher"), ("x-on-behalf-of-tenant", "agency-b"))
    hits = service.Search(indexer_pb2.SearchRequest(top_k=5), timeout=10, metadata=delegated).results[0].hits
    assert [h.person_id for h in hits] == ["boris"]
    assert (events(server)[-1]["caller"], events(server)[-1]["via"]) == ("bob", "service")


def test_oversized_requests_are_refused_before_the_handler(server) -> None:
    err = refused(
        lambda: stub(server, "alice").Search(indexer_pb2.SearchRequest(top_k=51), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "top_k 51 is over this deployment's limit of 50" in err.details()
    err = refused(
        lambda: stub(server, "eric").Upsert(indexer_pb2.UpsertRequest(records=records("many", 11)), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "11 records" in err.details()
    assert "many:0" not in server["service"].servicer.records.get("agency-b", {})


def test_malformed_request_bytes_are_refused_and_the_server_keeps_serving(server) -> None:
    channel = sync_channel(server["address"], security=ClientSecurity(tls=ClientTls(server["tls"], "alice"), **CASE))
    raw = channel.unary_unary("/kinship.v1.Indexer/Search", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff not a protobuf", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in caught.value.details() and "DecodeError" not in caught.value.details()
    assert events(server)[-1]["reason"] == "MALFORMED_REQUEST"
    assert stub(server, "alice").Search(indexer_pb2.SearchRequest(top_k=1), timeout=10).results


def test_a_caller_over_its_rate_is_told_when_to_retry(token_server) -> None:
    server = token_server
    key = tokens.signing_key(server["tls"])
    stub_ = stub(server, None, token=tokens.mint(key, "rita", role="searcher", tenant="agency-a"))
    codes = []
    for _ in range(6):
        try:
            stub_.Search(indexer_pb2.SearchRequest(top_k=1), timeout=10)
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "retry in" in exc.details()
    assert "RESOURCE_EXHAUSTED" in codes and codes[0] == "OK"
    # Another caller is not slowed by rita.
    other = stub(server, None, token=tokens.mint(key, "tom", role="searcher", tenant="agency-a"))
    assert other.Search(indexer_pb2.SearchRequest(top_k=1), timeout=10).results


def test_the_trail_verifies_and_any_edit_is_found(server, tmp_path) -> None:
    assert trail.verify(server["audit"]).ok
    lines = server["audit"].read_text().splitlines()
    assert len(lines) >= 4
    changed = json.loads(lines[1])
    changed["caller"] = "someone-else"
    variants = {
        "changed": [lines[0], json.dumps(changed), *lines[2:]],
        "removed": [lines[0], *lines[2:]],
        "reordered": [lines[1], lines[0], *lines[2:]],
    }
    for what, content in variants.items():
        path = tmp_path / f"{what}.jsonl"
        path.write_text("\n".join(content) + "\n")
        result = trail.verify(path)
        assert not result.ok and result.line in (1, 2), (what, result)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")
    assert trail.verify(cut).ok  # a cut-off end is found only against a head kept elsewhere
    assert not trail.verify(cut, expect_head=trail.verify(server["audit"]).head).ok


def test_a_call_without_a_deadline_gets_the_configured_maximum(token_server) -> None:
    key = tokens.signing_key(token_server["tls"])
    admin = stub(token_server, None, token=tokens.mint(key, "ada", role="admin"))
    started = time.monotonic()
    err = refused(
        lambda: admin.ListCollections(indexer_pb2.ListCollectionsRequest()), grpc.StatusCode.DEADLINE_EXCEEDED
    )
    assert time.monotonic() - started < 10  # the handler would take 30 s; the cap is 1 s
    assert "deadline" in err.details()


# The ranker over mutual TLS, in front of the hand-written embedder and indexer of test_ranker_grpc.


def test_an_auth_failure_inside_the_suite_reaches_the_caller_as_itself_not_unavailable(tmp_path, pki) -> None:
    """The ranker's own certificate lacks role service (a misconfiguration): its dependencies refuse it,
    and the ranker's caller learns PERMISSION_DENIED from whom, not UNAVAILABLE."""
    import shutil

    from kinship.ranker import bootstrap as ranker_bootstrap
    from kinship.v1 import common_pb2, embedder_pb2_grpc, ranker_pb2, ranker_pb2_grpc
    from tests.integration.test_ranker_grpc import FakeService, TableEmbedder, TableIndexer, relative

    misissued = tmp_path / "ranker-tls"
    shutil.copytree(pki, misissued)
    certs.issue(misissued, "service", role="searcher")  # same CA, wrong role
    embedder = FakeService("embedder", TableEmbedder(), embedder_pb2_grpc.add_EmbedderServicer_to_server)
    indexer = FakeService("indexer", TableIndexer(), indexer_pb2_grpc.add_IndexerServicer_to_server)

    def settings(name: str, tls: Path):
        values = {
            "port": "0",
            "log_level": "warning",
            "tls_dir": str(tls),
            "audit_log": str(tmp_path / f"{name}.jsonl"),
        }
        return config.resolve(server_settings(name, 0), values, env={})

    with (
        ServerThread(lambda _s: embedder, settings("embedder", pki)) as emb,
        ServerThread(lambda _s: indexer, settings("indexer", pki)) as idx,
    ):
        ranker_values = {
            "port": "0",
            "log_level": "warning",
            "tls_dir": str(misissued),
            "audit_log": str(tmp_path / "ranker.jsonl"),
            "embedder_address": f"localhost:{emb.port}",
            "indexer_address": f"localhost:{idx.port}",
            "artifacts_dir": str(tmp_path / "none"),
        }
        ranker_settings = config.resolve(ranker_bootstrap.settings(), ranker_values, env={})
        with ServerThread(ranker_bootstrap.build, ranker_settings) as rk:
            security = ClientSecurity(tls=ClientTls(pki, "alice"), **CASE)
            stub_ = ranker_pb2_grpc.KinshipRankerStub(sync_channel(f"localhost:{rk.port}", security=security))
            request = ranker_pb2.FindRelativesRequest(relatives=[relative(common_pb2.RELATION_FATHER, b"dad.jpg")])
            err = refused(lambda: stub_.FindRelatives(request, timeout=30), grpc.StatusCode.PERMISSION_DENIED)
    assert "embedder refused the call" in err.details() and "role service" in err.details()
    ranker_events = list(trail.read_events(tmp_path / "ranker.jsonl"))
    assert [(e["caller"], e["outcome"]) for e in ranker_events] == [("alice", "PERMISSION_DENIED")]
    assert ranker_events[0]["reason"] == "DELEGATION_REFUSED"


class StreamingIndexer:
    """A streaming variant of two Indexer RPCs (none of the contracts streams yet): the gates must hold there too."""

    name = "indexer"
    service_names = (SERVICE,)

    def register(self, server) -> None:
        async def search(request, context):
            for n in range(3):
                yield indexer_pb2.SearchResponse(
                    results=[indexer_pb2.QueryResult(hits=[indexer_pb2.SearchHit(person_id=f"s{n}")])]
                )

        async def upsert(requests, context):
            count = 0
            async for request in requests:
                count += len(request.records)
                yield indexer_pb2.UpsertResponse(upserted_count=count)

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Search": grpc.unary_stream_rpc_method_handler(
                            search,
                            request_deserializer=indexer_pb2.SearchRequest.FromString,
                            response_serializer=indexer_pb2.SearchResponse.SerializeToString,
                        ),
                        "Upsert": grpc.stream_stream_rpc_method_handler(
                            upsert,
                            request_deserializer=indexer_pb2.UpsertRequest.FromString,
                            response_serializer=indexer_pb2.UpsertResponse.SerializeToString,
                        ),
                    },
                ),
            )
        )

    async def check_ready(self) -> None:
        return None

    async def close(self) -> None:
        return None


def test_streaming_calls_pass_the_same_gates_and_are_audited_once(pki, tmp_path) -> None:
    audit_log = tmp_path / "stream.jsonl"
    values = {"port": "0", "log_level": "warning", "tls_dir": str(pki), "audit_log": str(audit_log)}
    settings = config.resolve(server_settings("indexer", 0), values, env={})
    with ServerThread(lambda _s: StreamingIndexer(), settings) as running:

        def channel(name: str, **case):
            return sync_channel(f"localhost:{running.port}", security=ClientSecurity(tls=ClientTls(pki, name), **case))

        def search(ch):
            method = ch.unary_stream(
                f"/{SERVICE}/Search",
                request_serializer=indexer_pb2.SearchRequest.SerializeToString,
                response_deserializer=indexer_pb2.SearchResponse.FromString,
            )
            return [r.results[0].hits[0].person_id for r in method(indexer_pb2.SearchRequest(top_k=3), timeout=10)]

        def upsert(ch, requests):
            method = ch.stream_stream(
                f"/{SERVICE}/Upsert",
                request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                response_deserializer=indexer_pb2.UpsertResponse.FromString,
            )
            return [r.upserted_count for r in method(iter(requests), timeout=10)]

        assert search(channel("alice", **CASE)) == ["s0", "s1", "s2"]
        refused(lambda: search(channel("erin", **CASE)), grpc.StatusCode.PERMISSION_DENIED)  # enroller
        err = refused(lambda: search(channel("alice")), grpc.StatusCode.PERMISSION_DENIED)  # no case id
        assert "x-case-id" in err.details()
        assert upsert(channel("erin"), [indexer_pb2.UpsertRequest(records=records("z", 2))] * 2) == [2, 4]
        refused(lambda: upsert(channel("alice"), [indexer_pb2.UpsertRequest()]), grpc.StatusCode.PERMISSION_DENIED)
        bad = refused(lambda: upsert(channel("erin"), [b"\xff\xff\xff not protobuf"]), grpc.StatusCode.INVALID_ARGUMENT)
        assert "not a valid message" in bad.details()
    outcomes = [(e["caller"], e["rpc"].rsplit("/", 1)[-1], e["outcome"]) for e in trail.read_events(audit_log)]
    assert outcomes == [
        ("alice", "Search", "OK"),
        ("erin", "Search", "PERMISSION_DENIED"),
        ("alice", "Search", "PERMISSION_DENIED"),
        ("erin", "Upsert", "OK"),
        ("alice", "Upsert", "PERMISSION_DENIED"),
        ("erin", "Upsert", "INVALID_ARGUMENT"),
    ]
    first = next(trail.read_events(audit_log))
    assert first["person_ids"] == ["s0", "s1", "s2"]  # every streamed response's ids
    enrolled = [e for e in trail.read_events(audit_log) if e["rpc"].endswith("Upsert") and e["outcome"] == "OK"]
    assert enrolled[0]["record_ids"] == ["z:0", "z:1"]  # what the streamed requests changed
    assert trail.verify(audit_log).ok
