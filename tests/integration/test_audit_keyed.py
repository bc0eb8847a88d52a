"""A real server (mutual TLS, the production security stack) signing audit checkpoints with a key file.

The server of tests/integration/test_security_gates.py (`_serve`: the in-memory indexer
behind `start_server`) with `--audit-key-file`: its trail and its checkpoint folder verify
with the public key alone, and an edited, re-hashed copy of the trail does not.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from kinship.audit import checkpoints, trail
from kinship.cli.main import main
from kinship.v1 import indexer_pb2
from tests.integration.test_security_gates import _serve, pki, records, stub  # noqa: F401 - pki is a fixture


def test_a_server_with_a_key_file_signs_checkpoints_that_verify_and_expose_a_rehashed_edit(
    pki,  # noqa: F811 - the fixture imported above
    tmp_path,
    capsys,
) -> None:
    private, public = checkpoints.keygen(tmp_path / "audit-key")
    audit_log = tmp_path / "audit" / "indexer.audit.jsonl"
    worm = tmp_path / "worm"  # stands for the mount that is shipped to write-once storage
    service, thread = _serve(
        pki,
        audit_log,
        audit_key_file=str(private),
        audit_checkpoint_dir=str(worm),
        audit_checkpoint_events="3",
        audit_checkpoint_seconds="0.5",
    )
    with thread as running:
        server = {"address": f"localhost:{running.port}", "tls": pki}
        stub(server, "erin").Upsert(indexer_pb2.UpsertRequest(records=records("kid-1", 2)), timeout=10)
        for _ in range(3):
            stub(server, "alice").Search(indexer_pb2.SearchRequest(top_k=5), timeout=10)
        with pytest.raises(grpc.RpcError):  # refused (a searcher may not delete), and audited
            stub(server, "bob").Delete(indexer_pb2.DeleteRequest(person_ids=["kid-1"]), timeout=10)
        # The last events wait for no further call: the timed checkpoint covers them.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [json.loads(x) for x in audit_log.read_text().splitlines()]
            if "checkpoint" in lines[-1]:
                break
            time.sleep(0.05)
    external = worm / "indexer.audit.checkpoints.jsonl"
    assert external.exists()
    lines = [json.loads(x) for x in audit_log.read_text().splitlines()]
    events = [line for line in lines if "checkpoint" not in line]
    assert len(events) == 5 and "checkpoint" in lines[-1]
    assert private.read_text() not in audit_log.read_text() + external.read_text()

    capsys.readouterr()
    code = main(["audit", "verify", str(audit_log), "--key", str(public), "--checkpoints", str(external), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["unanchored"] == 0 and report["anchors"] >= 2, report

    # Someone who can write the file changes who searched and recomputes the chain.
    searched = next(i for i, line in enumerate(lines) if line.get("caller") == "alice")
    lines[searched]["caller"] = "erin"
    prev, forged = trail.GENESIS, []
    for seq, line in enumerate(lines, start=1):
        linked = trail.chain({k: v for k, v in line.items() if k not in ("seq", "prev", "hash")}, seq, prev)
        prev = linked["hash"]
        forged.append(linked)
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(line) + "\n" for line in forged))
    assert main(["audit", "verify", str(edited)]) == 0  # the chain alone holds
    assert main(["audit", "verify", str(edited), "--key", str(public), "--checkpoints", str(external)]) == 1
    assert "re-hashed" in capsys.readouterr().err
