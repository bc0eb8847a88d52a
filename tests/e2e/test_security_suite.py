"""End to end with security on: `kinship certs`, `kinship serve all --tls-dir`, the CLI with --tls-dir --as.

One run of the whole suite with mutual TLS (the services call each other with the
suite's own certificate), enrolling the sample gallery as an enroller, then the
issue's "done when": a call without a client certificate fails the handshake, a
searcher cannot delete, a call without a case id is refused, each allowed call leaves
exactly one audit event, and `kinship audit verify` passes untouched and fails edited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from kinship.v1 import indexer_pb2, indexer_pb2_grpc, ranker_pb2, ranker_pb2_grpc
from tests.conftest import free_ports

READY_LINE = "kinship: press Ctrl-C to stop"
FIND = "/kinship.v1.KinshipRanker/FindRelatives"


def kinship(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args], capture_output=True, text=True, env=env, timeout=300
    )


def audit_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def secure_suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    tls, data = root / "tls", root / "data"
    assert kinship("certs", "init", str(tls)).returncode == 0
    for name, role in (("enrol-bot", "enroller"), ("investigator", "searcher"), ("overseer", "auditor")):
        issued = kinship("certs", "issue", str(tls), name, "--role", role)
        assert issued.returncode == 0, issued.stderr
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "all", "--data-dir", str(data), "--tls-dir", str(tls)]
    cmd += ["--sample-gallery", "--as", "enrol-bot", "--grace-seconds", "3"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    log_path = root / "serve-all.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while READY_LINE not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"serve all --tls-dir did not get ready; log:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        env = dict(os.environ, **{f"KINSHIP_{n.upper()}_ADDRESS": f"localhost:{p}" for n, p in ports.items()})
        for key in ("KINSHIP_TLS_DIR", "KINSHIP_CLIENT_NAME", "KINSHIP_CASE_ID", "KINSHIP_PURPOSE"):
            env.pop(key, None)
        yield {
            "tls": tls,
            "data": data,
            "env": env,
            "ports": ports,
            "query": data / "sample" / "queries" / "tom-hanks-mirrored.jpg",
            "log": log_path,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def _find(suite, *extra: str) -> subprocess.CompletedProcess:
    return kinship(
        "find", "--relative", f"self={suite['query']}", "--top-n", "3", "--json",
        "--tls-dir", str(suite["tls"]), "--as", "investigator", *extra, env=suite["env"],
    )  # fmt: skip


def test_a_call_without_a_client_certificate_fails_the_handshake(secure_suite) -> None:
    ca = (secure_suite["tls"] / "ca.crt").read_bytes()
    address = f"localhost:{secure_suite['ports']['ranker']}"
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            ranker_pb2_grpc.KinshipRankerStub(channel).DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself failed
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError):
            ranker_pb2_grpc.KinshipRankerStub(channel).DescribeScoring(ranker_pb2.DescribeScoringRequest(), timeout=10)


def test_status_over_mutual_tls(secure_suite) -> None:
    status = kinship(
        "status", "--json", "--tls-dir", str(secure_suite["tls"]), "--as", "overseer", env=secure_suite["env"]
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert {v["status"] for v in json.loads(status.stdout).values()} == {"SERVING"}


def test_search_needs_a_case_id_and_a_purpose_and_is_audited_once(secure_suite) -> None:
    ranker_log = secure_suite["data"] / "audit" / "ranker.audit.jsonl"
    indexer_log = secure_suite["data"] / "audit" / "indexer.audit.jsonl"
    before = len(audit_events(ranker_log)) if ranker_log.exists() else 0

    refused = _find(secure_suite)
    assert refused.returncode == 1
    # With --json the refusal is JSON on stdout (the CLI's error shape), naming the code and the missing header.
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "PERMISSION_DENIED" and "x-case-id" in error["message"], refused.stdout

    found = _find(secure_suite, "--case-id", "case-42", "--purpose", "missing person 2026-117")
    assert found.returncode == 0, found.stderr
    reply = json.loads(found.stdout)
    assert reply["candidates"][0]["person_id"] == "tom-hanks"

    new = audit_events(ranker_log)[before:]
    assert [(e["rpc"], e["outcome"]) for e in new] == [(FIND, "PERMISSION_DENIED"), (FIND, "OK")]
    allowed = new[1]
    assert allowed["caller"] == "investigator" and allowed["role"] == "searcher"
    assert allowed["case_id"] == "case-42" and allowed["purpose"] == "missing person 2026-117"
    assert allowed["person_ids"][: len(reply["candidates"])] == [c["person_id"] for c in reply["candidates"]]
    # The ranker's own calls to the indexer carry the investigator, as the ranker's service identity vouches.
    searches = [e for e in audit_events(indexer_log) if e["request_id"] == allowed["request_id"]]
    assert searches and all(
        e["caller"] == "investigator" and e["via"] == "service" and e["case_id"] == "case-42" and e["outcome"] == "OK"
        for e in searches
    )
    for log in sorted((secure_suite["data"] / "audit").glob("*.audit.jsonl")):
        verified = kinship("audit", "verify", str(log))
        assert verified.returncode == 0, verified.stderr
    query = kinship("audit", "query", str(ranker_log), "--case-id", "case-42", "--person", "tom-hanks", "--json")
    assert [json.loads(line)["request_id"] for line in query.stdout.splitlines()] == [allowed["request_id"]]


def test_a_searcher_cannot_delete_and_nothing_changes(secure_suite) -> None:
    from kinship.runtime.clients import sync_channel
    from kinship.security.client import ClientSecurity
    from kinship.security.transport import ClientTls

    security = ClientSecurity(tls=ClientTls(secure_suite["tls"], "investigator"), case_id="case-42", purpose="erase")
    with sync_channel(f"localhost:{secure_suite['ports']['indexer']}", security=security) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            indexer_pb2_grpc.IndexerStub(channel).Delete(
                indexer_pb2.DeleteRequest(person_ids=["tom-hanks"]), timeout=30
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not call /kinship.v1.Indexer/Delete" in refused.value.details()
    found = _find(secure_suite, "--case-id", "case-43", "--purpose", "check after refused delete")
    assert found.returncode == 0 and json.loads(found.stdout)["candidates"][0]["person_id"] == "tom-hanks"


def test_audit_verify_fails_on_an_edited_log(secure_suite, tmp_path: Path) -> None:
    original = (secure_suite["data"] / "audit" / "ranker.audit.jsonl").read_text().splitlines()
    assert len(original) >= 2
    edited = tmp_path / "edited.jsonl"
    first = json.loads(original[0])
    first["caller"] = "someone-else"
    edited.write_text("\n".join([json.dumps(first, sort_keys=True, separators=(",", ":")), *original[1:]]) + "\n")
    broken = kinship("audit", "verify", str(edited))
    assert broken.returncode == 1 and "line 1" in broken.stderr and "changed" in broken.stderr
