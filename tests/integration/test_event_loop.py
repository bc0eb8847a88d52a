"""`kinship serve` on uvloop (the default) and on asyncio's own loop: the same service either way.

A real indexer process on Milvus Lite for each loop: enrol, search (on the event loop's own
channel to Milvus), the audit writer thread waking the loop with each fsynced event, and a
graceful stop on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from kinship.audit import trail
from kinship.cli.serve import wait_serving
from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc
from tests.conftest import free_ports


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_indexer_serves_searches_and_audits_them_on_either_event_loop(tmp_path, loop) -> None:
    (port,) = free_ports(1)
    log_path = tmp_path / "indexer.log"
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "indexer", "--port", str(port), "--metrics-port", "-1",
           "--data-dir", str(tmp_path / "data"), "--event-loop", loop]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_serving(f"127.0.0.1:{port}", time.monotonic() + 120, process), log_path.read_text()[-3000:]
        rng = np.random.default_rng(2)
        vectors = rng.normal(size=(6, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            indexer_pb2.GalleryRecord(
                record_id=f"r{i}", person_id=f"p{i}", embedding=v.tolist(), attributes=common_pb2.PersonAttributes()
            )
            for i, v in enumerate(vectors)
        ]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = indexer_pb2_grpc.IndexerStub(channel)
            stub.Upsert(indexer_pb2.UpsertRequest(model_id="loop-model", records=records), timeout=60)
            for i in range(len(vectors)):
                reply = stub.Search(
                    indexer_pb2.SearchRequest(
                        model_id="loop-model",
                        queries=[indexer_pb2.QueryEmbedding(embedding=vectors[i].tolist())],
                        top_k=2,
                        consistency=indexer_pb2.READ_CONSISTENCY_STRONG,
                    ),
                    timeout=30,
                )
                assert reply.results[0].hits[0].record_id == f"r{i}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    (listening,) = [line for line in lines if line.get("event") == "listening"]
    assert listening["event_loop"] == loop
    audit_path = tmp_path / "data" / "audit" / "indexer.audit.jsonl"
    assert trail.verify(audit_path).ok
    searches = [e for e in trail.read_events(audit_path) if e["rpc"].endswith("/Search")]
    assert [e["record_ids"][0] for e in searches] == [f"r{i}" for i in range(len(vectors))]
