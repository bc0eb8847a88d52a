"""Composition root of the indexer: settings, and the Milvus-backed gallery wired into gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import grpc

from kinship.runtime import config, deadlines, processes
from kinship.runtime.errors import ConfigError, DeadlineExceeded, Unavailable
from kinship.runtime.logs import get_logger
from kinship.security.settings import server_settings
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

from .adapters.milvus_gallery import MilvusGallery, VectorIndex
from .domain import server_version
from .domain.gallery import Gallery, GalleryStore
from .transport import GalleryExecutor, IndexerServicer

log = get_logger("kinship.indexer")

DEFAULT_PORT = 50052
SERVICE_NAME = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name
LITE_FILE = Path("milvus") / "gallery.db"
#: Longest wait at start for a Milvus server to tell its version (an unreachable one is checked when it answers).
VERSION_CHECK_S = 5.0
#: Milvus Lite's advisory lock inside that file's folder (milvus_lite.db.LOCK_FILENAME): one process holds it.
LITE_LOCK = LITE_FILE / "LOCK"


def settings() -> list[config.Setting]:
    return [
        *server_settings("indexer", DEFAULT_PORT),
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
            "longest timeout of one call to Milvus, in seconds (a caller's shorter deadline wins)",
            float,
            config.positive,
        ),
        config.Setting(
            "milvus_workers",
            "KINSHIP_MILVUS_WORKERS",
            8,
            "threads of the indexer's own pool for blocking Milvus calls, and as many again for bulk "
            "enrolments (the health ping has its own)",
            int,
            config.positive,
        ),
        config.Setting(
            "bulk_enrol_depth",
            "KINSHIP_BULK_ENROL_DEPTH",
            4,
            "batches of one BulkEnrol stream stored in Milvus at once (answers still come in order): "
            "storing one at a time leaves Milvus waiting on each batch's round trips (docs/indexer.md)",
            int,
            config.positive,
        ),
        config.Setting(
            "milvus_shards",
            "KINSHIP_MILVUS_SHARDS",
            2,
            "shards (DML channels) of new collections on a Milvus server: each is ingested by its own pipeline "
            "in Milvus, so more shards take writes faster on more cores (measured in docs/indexer.md); "
            "Milvus Lite has one",
            int,
            config.positive,
        ),
        config.Setting(
            "index_type",
            "KINSHIP_INDEX_TYPE",
            "HNSW",
            "vector index of new collections: HNSW, IVF_FLAT, IVF_SQ8 or FLAT (existing collections keep theirs)",
            str,
            _index_type_check,
        ),
        config.Setting(
            "index_build_params",
            "KINSHIP_INDEX_BUILD_PARAMS",
            "",
            'JSON object overriding the index build parameters, e.g. {"M": 16, "efConstruction": 128} or {"nlist": 1024}',
        ),
        config.Setting(
            "index_search_params",
            "KINSHIP_INDEX_SEARCH_PARAMS",
            "",
            'JSON object overriding the search parameters, e.g. {"ef": 64} or {"nprobe": 32}',
        ),
        config.Setting(
            "flush_interval_seconds",
            "KINSHIP_FLUSH_INTERVAL_SECONDS",
            10.0,
            "flush policy: a collection is flushed once no write has reached it for this long (0 = never; bulk "
            "enrolments flush at their end), so fresh rows get indexed instead of searched by brute force",
            float,
            config.non_negative,
        ),
        config.Setting(
            "retention_purge_interval_seconds",
            "KINSHIP_RETENTION_PURGE_INTERVAL_SECONDS",
            3600.0,
            "how often records past their expires_at are erased (0 = never)",
            float,
            config.non_negative,
        ),
    ]


def _index_type_check(value: str) -> str | None:
    try:
        VectorIndex.parse(value)
    except ValueError as exc:
        return str(exc)
    return None


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
    """The indexer as the runtime sees it: its servicer, readiness, background upkeep and shutdown.

    Upkeep runs as asyncio tasks: the flush policy (a collection is flushed once no write
    has reached it for `flush_interval` seconds, so a continuous bulk load is not cut into
    many small segments, each indexed on its own) and the retention purge (records past
    their expiry erased every `purge_interval` seconds).
    """

    name = "indexer"
    service_names = (SERVICE_NAME,)

    def __init__(
        self,
        store: GalleryStore,
        readiness_timeout: float,
        *,
        workers: int = 8,
        flush_interval: float = 10.0,
        purge_interval: float = 3600.0,
        bulk_depth: int = 4,
    ):
        self.store = store
        self.gallery = Gallery(store)
        self._readiness_timeout = readiness_timeout
        self.executor = GalleryExecutor(workers)
        # Bulk enrolments get their own threads: a load storing several batches per stream
        # would otherwise hold every thread, and searches would wait behind it.
        self.bulk_executor = GalleryExecutor(workers, name="indexer-bulk")
        # The health ping has a thread of its own: busy request threads never delay readiness.
        self._ping_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-health")
        self._flush_interval = flush_interval
        self._purge_interval = purge_interval
        self._bulk_depth = bulk_depth
        self._written: dict[str, float] = {}  # model id -> monotonic time of its last unflushed write
        self._tasks: list[asyncio.Task] = []

    def register(self, server: grpc.aio.Server) -> None:
        servicer = IndexerServicer(
            self.gallery,
            self.executor,
            on_write=self.note_write,
            bulk_depth=self._bulk_depth,
            bulk_executor=self.bulk_executor,
        )
        indexer_pb2_grpc.add_IndexerServicer_to_server(servicer, server)
        if self._flush_interval > 0:
            self._tasks.append(asyncio.get_running_loop().create_task(self._flush_loop()))
        if self._purge_interval > 0:
            self._tasks.append(asyncio.get_running_loop().create_task(self._purge_loop()))

    async def check_ready(self) -> None:
        # A real, cheap call: SERVING only while Milvus answers (and the schema versions match).
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(self._ping_pool, self.store.ping), self._readiness_timeout)

    def note_write(self, model_id: str) -> None:
        self._written[model_id] = time.monotonic()

    async def flush_written(self, quiet_seconds: float | None = None) -> list[str]:
        """The flush policy's one step: flushes the collections written to but quiet for `quiet_seconds`."""
        quiet = self._flush_interval if quiet_seconds is None else quiet_seconds
        now = time.monotonic()
        settled = sorted(m for m, last in self._written.items() if now - last >= quiet)
        for model_id in settled:
            self._written.pop(model_id, None)
        if settled:
            await self.executor.run(self.gallery.flush, settled)
        return settled

    async def purge_expired(self) -> int:
        """Erases the records whose expiry has passed (the retention purge's one step)."""
        return await self.executor.run(self.gallery.purge_expired)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval / 2)
            try:
                await self.flush_written()
            except Exception as exc:  # noqa: BLE001 - a failed flush is retried next round; Milvus flushes too
                log.warning("flush failed", error=str(exc))

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.purge_expired()
            except Exception as exc:  # noqa: BLE001 - retried next round; the failure is logged
                log.warning("retention purge failed; retrying next round", error=str(exc))
            await asyncio.sleep(self._purge_interval)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.executor.shutdown()
        self.bulk_executor.shutdown()
        self._ping_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.store.close)


def vector_index(settings: SimpleNamespace) -> VectorIndex:
    try:
        return VectorIndex.parse(settings.index_type, settings.index_build_params, settings.index_search_params)
    except ValueError as exc:
        raise ConfigError(f"--index-type / --index-build-params / --index-search-params: {exc}") from exc


def refuse_locked_lite(data_dir: Path) -> None:
    """ConfigError naming the holder when another process has the Milvus Lite file open (it allows one)."""
    lock = Path(data_dir).expanduser() / LITE_LOCK
    holders = processes.lock_holders(lock)
    if holders and all(h.pid == os.getpid() for h in holders):
        # This process's own Lite (an indexer stopped and built again in one process, as the tests
        # do): milvus_lite's server manager opens that file again itself.
        return
    if holders is not None:
        pids = " ".join(str(h.pid) for h in holders)
        raise ConfigError(
            f"the data folder {Path(data_dir).expanduser()} is in use: its Milvus Lite file {lock.parent} is locked "
            f"by {processes.describe(holders)}; stop {'it (kill ' + pids + ')' if pids else 'it'}, or choose "
            "another --data-dir, or --milvus-uri to share a Milvus server"
        )


def refuse_unsupported_milvus(store: server_version.ServerVersioned, timeout: float = VERSION_CHECK_S) -> str | None:
    """ConfigError (the indexer does not start) when the Milvus server answers with a version outside
    the supported range; the version it reported otherwise, or None when it did not answer within
    `timeout`: the indexer then starts NOT_SERVING, and the adapter checks the version when it connects."""
    try:
        with deadlines.deadline_scope(timeout):
            reported = store.server_version()
        server_version.check(reported, store.uri)
    except server_version.UnsupportedMilvus as exc:
        raise ConfigError(exc.message) from exc
    except (Unavailable, DeadlineExceeded) as exc:
        log.warning("milvus did not answer at start; its version is checked when it does", error=exc.message)
        return None
    return reported


async def build(settings: SimpleNamespace) -> IndexerService:
    if not settings.milvus_uri:
        refuse_locked_lite(settings.data_dir)
    uri = settings.milvus_uri or lite_uri(settings.data_dir)
    store = MilvusGallery(
        uri,
        token=settings.milvus_token,
        timeout=settings.milvus_timeout_seconds,
        vector_index=vector_index(settings),
        shards=settings.milvus_shards,
    )
    if settings.milvus_uri:  # Milvus Lite is the pinned package's, tested as pinned; it connects on first use
        timeout = min(settings.milvus_timeout_seconds, VERSION_CHECK_S)
        try:
            await asyncio.to_thread(refuse_unsupported_milvus, store, timeout)
        except ConfigError:
            await asyncio.to_thread(store.close)
            raise
    return IndexerService(
        store,
        readiness_timeout=settings.milvus_timeout_seconds,
        workers=settings.milvus_workers,
        flush_interval=settings.flush_interval_seconds,
        purge_interval=settings.retention_purge_interval_seconds,
        bulk_depth=settings.bulk_enrol_depth,
    )
