"""The indexer's flush policy over the fake store: a collection is flushed once its writes have settled."""

from __future__ import annotations

import asyncio
import time

from kinship.indexer.bootstrap import IndexerService


def test_a_collection_is_flushed_only_once_writes_to_it_have_settled(store):
    service = IndexerService(store, readiness_timeout=1.0, flush_interval=0, purge_interval=0)

    async def scenario():
        service.note_write("busy")
        service.note_write("quiet")
        service._written["quiet"] = time.monotonic() - 60  # last written a minute ago
        assert await service.flush_written(quiet_seconds=30) == ["quiet"]
        assert store.flushed == ["quiet"]
        assert await service.flush_written(quiet_seconds=30) == []  # "busy" is still being written
        assert await service.flush_written(quiet_seconds=0) == ["busy"]
        assert await service.flush_written(quiet_seconds=0) == []  # nothing written since
        await service.close()

    asyncio.run(scenario())
