"""`kinship bench index` end to end on Milvus Lite: a real indexer subprocess, a small load, the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from kinship.cli.bench_index import clustered_vectors, exact_top_k, near_queries

REPORT_FIELDS = {
    "rows",
    "ingest_rows_per_s",
    "index_build_s",
    "index_settled_s",
    "search_steady_s",
    "recall_at_10",
    "search_p50_ms",
    "search_p99_ms",
    "qps_service",
    "qps_direct",
    "erased_rows",
    "ingest_cpu_ms_per_1000_rows",
    "search_cpu_ms_per_query",
}


def test_bench_index_loads_searches_and_reports_json(tmp_path):
    command = [
        sys.executable, "-m", "kinship.cli.main", "bench", "index", "--rows", "3000", "--dim", "64",
        "--concurrency", "2", "--queries", "40", "--qps-seconds", "1.5", "--index-type", "FLAT", "--json",
        "--indexer-cpus", "0", "--bench-cpus", "0",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # --json: the report alone on stdout
    assert REPORT_FIELDS <= set(report)
    assert report["rows"] == 3000 and report["backend"] == "lite" and report["qps_direct"] is None
    assert report["model_id"].startswith("bench-64d-"), "a kept gallery is measured again by its model id"
    assert report["ingest_rows_per_s"] > 0 and report["qps_service"] > 0
    assert report["recall_at_10"] >= 0.99, "FLAT is exact: the indexer must find what numpy finds"
    assert report["erased_rows"] == 400
    assert 0 < report["search_p50_ms"] <= report["search_p99_ms"]
    # CPU per unit of work, per process: the indexer and this bench always (Linux), Milvus where local.
    ingest_cpu, search_cpu = report["ingest_cpu_ms_per_1000_rows"], report["search_cpu_ms_per_query"]
    assert {"indexer", "bench"} <= set(ingest_cpu) and ingest_cpu["indexer"] > 0
    assert {"indexer", "bench"} <= set(search_cpu["service"]) and search_cpu["service"]["indexer"] > 0
    assert search_cpu["direct"] is None, "Milvus Lite has no direct path"
    # Each process kept to the CPUs it was given (the indexer from its first thread on).
    assert report["cpu_affinity"]["indexer"] == [0] and report["cpu_affinity"]["bench"] == [0]


def test_exact_search_leaves_out_the_rows_a_reused_gallery_erased():
    data = clustered_vectors(500, 16, 20, seed=3)
    queries = near_queries(data, 5, seed=3)
    skipped = exact_top_k(data, queries, 10, skip=100)
    assert skipped.min() >= 100
    scores = queries @ data.T
    scores[:, :100] = -np.inf
    np.testing.assert_array_equal(np.sort(skipped, axis=1), np.sort(np.argsort(-scores, axis=1)[:, :10], axis=1))
