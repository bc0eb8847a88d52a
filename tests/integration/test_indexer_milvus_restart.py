"""The indexer while its Milvus 2.3.5 server is killed mid-ingest and started again on the same data.

Done-when of issue 7: every record whose Upsert returned OK is present and searchable
after the restart; health is NOT_SERVING while Milvus is down and SERVING once it is
back; an erasure (awaited compaction) made before the crash still holds after it.
The test runs a server of its own (it kills it), on free ports in a tmp folder.
"""

from __future__ import annotations

import sys
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.indexer import bootstrap
from kinship.runtime.server import ServerThread
from kinship.v1 import indexer_pb2, indexer_pb2_grpc
from tests.integration.conftest import MilvusProcess, require_milvus_server
from tests.integration.test_indexer_gallery import STRONG, indexer_settings, record, unit_vectors

pytestmark = pytest.mark.milvus_server

MODEL = "restart-model"
BATCH = 25
HEALTH = health_pb2.HealthCheckRequest(service="kinship.v1.Indexer")
# Reads after the restart wait (as a real client's deadline would let them) while the
# indexer loads the collection that Milvus came back with released.
LOAD_WAIT_S = 120


def batch_of(index: int) -> list[indexer_pb2.GalleryRecord]:
    vectors = unit_vectors(BATCH, seed=1000 + index)
    return [record(f"k{index}-{j}", f"kp{index}", vectors[j], 1950 + j) for j in range(BATCH)]


class Ingest(threading.Thread):
    """Upserts batch after batch, remembering which returned OK and which failed (and how)."""

    def __init__(self, stub: indexer_pb2_grpc.IndexerStub):
        super().__init__(name="ingest", daemon=True)
        self.stub = stub
        self.acknowledged: dict[str, np.ndarray] = {}
        self.failures: list[grpc.StatusCode] = []
        self.calls: list[tuple[float, float]] = []  # (start, end) of every Upsert, monotonic
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            batch = batch_of(index)
            started = time.monotonic()
            try:
                self.stub.Upsert(indexer_pb2.UpsertRequest(model_id=MODEL, records=batch), timeout=15)
            except grpc.RpcError as error:
                self.failures.append(error.code())
            else:
                with self._lock:
                    self.acknowledged.update({r.record_id: np.asarray(r.embedding, np.float32) for r in batch})
            finally:
                self.calls.append((started, time.monotonic()))
            index += 1


def wait_for(condition, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.2)  # polling a bounded wait
    return time.monotonic() - started


def status(health) -> int:
    return health.Check(HEALTH, timeout=5).status


def test_no_acknowledged_record_is_lost_when_milvus_is_killed_mid_ingest(tmp_path):
    require_milvus_server()
    milvus = MilvusProcess(tmp_path)
    milvus.start()
    settings = indexer_settings(milvus_uri=milvus.uri, milvus_timeout_seconds=5.0, health_interval_seconds=0.5)
    try:
        with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
            stub, health = indexer_pb2_grpc.IndexerStub(channel), health_pb2_grpc.HealthStub(channel)
            # An erasure awaited through compaction before the crash.
            doomed = batch_of(-1)
            stub.Upsert(indexer_pb2.UpsertRequest(model_id=MODEL, records=doomed))
            erased = stub.Delete(indexer_pb2.DeleteRequest(model_id=MODEL, person_ids=["kp-1"], await_compaction=True))
            assert (erased.deleted_count, erased.compacted) == (BATCH, True)

            ingest = Ingest(stub)
            ingest.start()
            wait_for(lambda: ingest.count() >= 8 * BATCH, 120, "ingest before the kill")
            killed_at = time.monotonic()
            milvus.kill()
            acked_at_kill = ingest.count()
            down_s = wait_for(lambda: status(health) == health_pb2.HealthCheckResponse.NOT_SERVING, 30, "NOT_SERVING")
            restart_s = milvus.start()
            back_at = time.monotonic()
            up_s = wait_for(lambda: status(health) == health_pb2.HealthCheckResponse.SERVING, 120, "SERVING again")
            wait_for(lambda: ingest.count() >= acked_at_kill + 8 * BATCH, 120, "ingest after the restart")
            ingest.stop.set()
            ingest.join(timeout=60)
            spanning = [c for c in ingest.calls if c[0] < killed_at + 1 and c[1] > back_at]
            print(
                f"\nkill -> NOT_SERVING {down_s:.1f} s; restart {restart_s:.1f} s; SERVING again after "
                f"{up_s:.1f} s; {len(ingest.acknowledged)} records acknowledged, failures: {ingest.failures}, "
                f"{len(spanning)} upserts retried across the outage",
                file=sys.stderr,
            )
            # The kill hit the ingest: some call failed, or was retried by the indexer across the outage.
            assert ingest.failures or spanning, "no Upsert was in flight during the outage"

            acknowledged = ingest.acknowledged
            people = sorted({f"kp{rid[1:].split('-')[0]}" for rid in acknowledged})
            found: set[str] = set()
            for start in range(0, len(people), 1000):
                reply = stub.GetRecords(
                    indexer_pb2.GetRecordsRequest(
                        model_id=MODEL, person_ids=people[start : start + 1000], consistency=STRONG
                    ),
                    timeout=LOAD_WAIT_S,
                )
                found |= {r.record_id for r in reply.records}
            assert set(acknowledged) <= found, f"lost {len(set(acknowledged) - found)} acknowledged records"
            ids = sorted(acknowledged)
            for start in range(
                0, len(ids), 200
            ):  # every acknowledged record is searchable: its own vector finds it first
                chunk = ids[start : start + 200]
                reply = stub.Search(
                    indexer_pb2.SearchRequest(
                        model_id=MODEL,
                        queries=[indexer_pb2.QueryEmbedding(embedding=acknowledged[rid].tolist()) for rid in chunk],
                        top_k=1,
                        consistency=STRONG,
                    ),
                    timeout=LOAD_WAIT_S,
                )
                assert [result.hits[0].record_id for result in reply.results] == chunk
            # The erasure made before the crash holds after it.
            gone = stub.GetRecords(
                indexer_pb2.GetRecordsRequest(model_id=MODEL, person_ids=["kp-1"], consistency=STRONG),
                timeout=LOAD_WAIT_S,
            )
            assert not gone.records
            hits = (
                stub.Search(
                    indexer_pb2.SearchRequest(
                        model_id=MODEL,
                        queries=[indexer_pb2.QueryEmbedding(embedding=list(doomed[0].embedding))],
                        top_k=5,
                        consistency=STRONG,
                    ),
                    timeout=LOAD_WAIT_S,
                )
                .results[0]
                .hits
            )
            assert all(not h.record_id.startswith("k-1-") for h in hits)
    finally:
        milvus.stop()
