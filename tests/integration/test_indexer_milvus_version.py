"""The indexer accepts the Milvus it is tested with: the 2.3.5 server of the PyPI package, and Milvus Lite.

The refusal of versions outside the range is unit-tested (tests/unit/indexer/test_server_version.py);
here the real servers' own reports go through the same check, at start and on connecting.
"""

from __future__ import annotations

import importlib.metadata

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.indexer import bootstrap
from kinship.indexer.adapters.milvus_gallery import MilvusGallery
from kinship.indexer.domain import server_version
from kinship.runtime import config
from kinship.runtime.server import ServerThread

SERVING = health_pb2.HealthCheckResponse.SERVING


def indexer_settings(**values):
    return config.resolve(bootstrap.settings(), {"port": 0, "log_level": "warning", **values}, env={})


def serving(server: ServerThread) -> bool:
    with grpc.insecure_channel(server.address) as channel:
        request = health_pb2.HealthCheckRequest(service=bootstrap.SERVICE_NAME)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=30).status == SERVING


@pytest.mark.milvus_server
def test_the_tested_server_reports_a_version_in_the_supported_range(milvus_server):
    store = MilvusGallery(milvus_server.uri, timeout=30)
    try:
        reported = store.server_version()
    finally:
        store.close()
    assert server_version.parse(reported) == tuple(int(p) for p in importlib.metadata.version("milvus").split("."))
    assert server_version.refusal(reported, milvus_server.uri) is None
    assert bootstrap.refuse_unsupported_milvus(MilvusGallery(milvus_server.uri, timeout=30)) == reported


@pytest.mark.milvus_server
def test_the_indexer_starts_on_the_tested_server_and_serves(milvus_server, tmp_path):
    settings = indexer_settings(milvus_uri=milvus_server.uri, data_dir=tmp_path)
    with ServerThread(bootstrap.build, settings) as server:
        assert serving(server)
        reported = server.running.service.store.server_version()
    # The PyPI package's server says "v2.3.5-lite" (its build), the image "v2.3.5": both are 2.3.5 servers.
    assert reported.startswith(f"v{importlib.metadata.version('milvus')}")
    assert not server_version.is_lite_version(reported)


def test_the_indexer_accepts_its_milvus_lite_on_its_own_report(tmp_path):
    with ServerThread(bootstrap.build, indexer_settings(data_dir=tmp_path)) as server:
        assert serving(server)
        reported = server.running.service.store.server_version()
    assert server_version.is_lite_version(reported) and importlib.metadata.version("milvus-lite") in reported
