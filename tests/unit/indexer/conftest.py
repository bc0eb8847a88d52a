"""Unit-test fixtures of the indexer: a hand-written in-memory GalleryStore (a fake, not a mock)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from kinship.indexer.domain.gallery import Gallery
from kinship.indexer.domain.model import (
    CollectionInfo,
    CollectionStats,
    Consistency,
    GalleryRecord,
    Hit,
    SearchFilter,
)


class FakeStore:
    """Keeps records per model in dicts keyed by (tenant, record id), as Milvus keys by record id within
    a tenant's partition; search is exact cosine over the tenant's records the filter admits.

    Filters are applied with `SearchFilter.admits` (the meaning the Milvus adapter is tested
    against) and recorded, so tests can check both the translation and the result.
    """

    def __init__(self) -> None:
        self.collections: dict[str, tuple[int, dict[tuple[str, str], GalleryRecord]]] = {}
        self.last_filter: SearchFilter | None = None
        self.last_consistency: Consistency | None = None
        self.deleted_in: list[str] = []
        self.compacted: list[str] = []
        self.flushed: list[str] = []
        # Whether `search_soon` answers (as the Milvus adapter does once a collection is open);
        # off, every search takes the blocking path. `searched_soon` counts the answers it gave.
        self.soon = False
        self.searched_soon = 0

    def model_ids(self) -> list[str]:
        return list(self.collections)

    def dimension(self, model_id: str) -> int | None:
        entry = self.collections.get(model_id)
        return entry[0] if entry else None

    def upsert(self, model_id: str, dimension: int, tenant: str, records: Sequence[GalleryRecord]) -> str:
        _, stored = self.collections.setdefault(model_id, (dimension, {}))
        stored.update({(tenant, r.record_id): dataclasses.replace(r, tenant=tenant, enrolled_at=1) for r in records})
        return f"faces_{model_id}"

    def _of(self, model_id: str, tenant: str) -> list[GalleryRecord]:
        return [r for r in self.collections[model_id][1].values() if r.tenant == tenant]

    def search(self, model_id, tenant, queries, top_k, flt, consistency) -> list[list[Hit]]:
        self.last_filter, self.last_consistency = flt, consistency
        records = [r for r in self._of(model_id, tenant) if flt.admits(r.person_id, r.attributes)]
        results = []
        for query in queries:
            scored = sorted(records, key=lambda r: -float(r.embedding @ query))[:top_k]
            results.append([Hit(r.record_id, r.person_id, float(r.embedding @ query), r.attributes) for r in scored])
        return results

    def known_dimension(self, model_id: str) -> int | None:
        return self.dimension(model_id)

    def search_soon(self, model_id, tenant, queries, top_k, flt, consistency):
        if not self.soon:
            return None

        async def answer() -> list[list[Hit]]:
            self.searched_soon += 1
            return self.search(model_id, tenant, queries, top_k, flt, consistency)

        return answer()

    def get_records(self, model_id, tenant, person_ids, flt, consistency) -> list[GalleryRecord]:
        self.last_filter, self.last_consistency = flt, consistency
        return [
            r for r in self._of(model_id, tenant) if r.person_id in person_ids and flt.admits(r.person_id, r.attributes)
        ]

    def delete(self, model_id: str, tenant: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        self.deleted_in.append(model_id)
        stored = self.collections[model_id][1]
        doomed = [
            k
            for k, r in stored.items()
            if r.tenant == tenant and (r.person_id in person_ids or r.record_id in record_ids)
        ]
        for key in doomed:
            del stored[key]
        return len(doomed)

    def compact(self, model_id: str) -> None:
        self.compacted.append(model_id)

    def purge_expired(self, model_id: str, now: int) -> int:
        stored = self.collections[model_id][1]
        doomed = [k for k, r in stored.items() if r.expires_at is not None and r.expires_at <= now]
        for key in doomed:
            del stored[key]
        return len(doomed)

    def flush(self, model_id: str) -> None:
        self.flushed.append(model_id)

    def list_collections(self) -> list[CollectionInfo]:
        return [CollectionInfo(m, f"faces_{m}", dim, len(rs), 2) for m, (dim, rs) in self.collections.items()]

    def stats(self, model_id: str, tenant: str) -> CollectionStats:
        dim, records = self.collections[model_id]
        info = CollectionInfo(model_id, f"faces_{model_id}", dim, len(records), 2)
        return CollectionStats(info, len(self._of(model_id, tenant)), "FLAT", "{}", len(records), 0, "Finished")

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def gallery(store: FakeStore) -> Gallery:
    return Gallery(store)
