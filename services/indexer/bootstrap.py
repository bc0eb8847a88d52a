"""Composition root of the indexer: settings, and the Milvus-backed gallery wired into gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import grpc

from kinship.runtime import config
from kinship.runtime.errors import ConfigError
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

from .adapters.milvus_gallery import MilvusGallery
from .domain.gallery import Gallery, GalleryStore
from .transport import IndexerServicer

DEFAULT_PORT = 50052
SERVICE_NAME = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name
LITE_FILE = Path("milvus") / "gallery.db"


def settings() -> list[config.Setting]:
    return [
        *config.server_settings("indexer", DEFAULT_PORT),
        config.Setting(
            "data_dir",
            "KINSHIP_DATA_DIR",
            config.default_data_dir(),
            f"data directory; the default gallery is the Milvus Lite file <data-dir>/{LITE_FILE}",
            Path,
        ),
        config.Setting(
            "milvus_uri",
            "KINSHIP_MILVUS_URI",
            "",
            "Milvus server URI, e.g. http://milvus:19530; empty uses the Milvus Lite file in the data directory "
            "(one process per file: run a single indexer, or use a server to scale out)",
        ),
        config.Setting(
            "milvus_token", "KINSHIP_MILVUS_TOKEN", "", "Milvus token (user:password or API key); empty for none"
        ),
        config.Setting(
            "milvus_timeout_seconds",
            "KINSHIP_MILVUS_TIMEOUT_SECONDS",
            10.0,
            "timeout of each call to Milvus, in seconds",
            float,
            config.positive,
        ),
    ]


def lite_uri(data_dir: Path) -> str:
    """Path of the Milvus Lite file under `data_dir`, creating its folder; ConfigError if that fails."""
    path = Path(data_dir).expanduser() / LITE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the data directory {path.parent} ({exc.strerror or exc}); "
            "set --data-dir / KINSHIP_DATA_DIR to a writable folder, or --milvus-uri to use a Milvus server"
        ) from exc
    return str(path)


class IndexerService:
    """The indexer as the runtime sees it: its servicer, readiness and shutdown."""

    name = "indexer"
    service_names = (SERVICE_NAME,)

    def __init__(self, store: GalleryStore, readiness_timeout: float):
        self.store = store
        self.gallery = Gallery(store)
        self._readiness_timeout = readiness_timeout

    def register(self, server: grpc.aio.Server) -> None:
        indexer_pb2_grpc.add_IndexerServicer_to_server(IndexerServicer(self.gallery), server)

    async def check_ready(self) -> None:
        # A real, cheap call: SERVING only while Milvus answers.
        await asyncio.wait_for(asyncio.to_thread(self.store.ping), self._readiness_timeout)

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)


async def build(settings: SimpleNamespace) -> IndexerService:
    uri = settings.milvus_uri or lite_uri(settings.data_dir)
    store = MilvusGallery(uri, token=settings.milvus_token, timeout=settings.milvus_timeout_seconds)
    return IndexerService(store, readiness_timeout=settings.milvus_timeout_seconds)
