"""Unit-test fixtures of the indexer: a hand-written in-memory GalleryStore (a fake, not a mock)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from kinship.indexer.domain.gallery import Gallery
from kinship.indexer.domain.model import CollectionInfo, GalleryRecord, Hit, SearchFilter


class FakeStore:
    """Keeps records per model in dicts; search is exact cosine over the records the filter admits.

    Filters are applied with `SearchFilter.admits` (the meaning the Milvus adapter is tested
    against) and recorded, so tests can check both the translation and the result.
    """

    def __init__(self) -> None:
        self.collections: dict[str, tuple[int, dict[str, GalleryRecord]]] = {}
        self.last_filter: SearchFilter | None = None
        self.deleted_in: list[str] = []

    def model_ids(self) -> list[str]:
        return list(self.collections)

    def dimension(self, model_id: str) -> int | None:
        entry = self.collections.get(model_id)
        return entry[0] if entry else None

    def upsert(self, model_id: str, dimension: int, records: Sequence[GalleryRecord]) -> str:
        _, stored = self.collections.setdefault(model_id, (dimension, {}))
        stored.update({r.record_id: r for r in records})
        return f"faces_{model_id}"

    def search(self, model_id: str, queries: np.ndarray, top_k: int, flt: SearchFilter) -> list[list[Hit]]:
        self.last_filter = flt
        records = [r for r in self.collections[model_id][1].values() if flt.admits(r.person_id, r.attributes)]
        results = []
        for query in queries:
            scored = sorted(records, key=lambda r: -float(r.embedding @ query))[:top_k]
            results.append([Hit(r.record_id, r.person_id, float(r.embedding @ query), r.attributes) for r in scored])
        return results

    def get_records(self, model_id: str, person_ids: Sequence[str], flt: SearchFilter) -> list[GalleryRecord]:
        self.last_filter = flt
        return [
            r
            for r in self.collections[model_id][1].values()
            if r.person_id in person_ids and flt.admits(r.person_id, r.attributes)
        ]

    def delete(self, model_id: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        self.deleted_in.append(model_id)
        stored = self.collections[model_id][1]
        doomed = [k for k, r in stored.items() if r.person_id in person_ids or k in record_ids]
        for key in doomed:
            del stored[key]
        return len(doomed)

    def list_collections(self) -> list[CollectionInfo]:
        return [CollectionInfo(m, f"faces_{m}", dim, len(rs)) for m, (dim, rs) in self.collections.items()]

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
