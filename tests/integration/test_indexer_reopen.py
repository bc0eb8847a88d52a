"""A gallery opened again (a restart) whose first work is the retention purge, not a search.

Milvus gives a collection back released after a restart (Lite: every time its file is opened
again). The purge runs first at start-up, before any search has opened (and loaded) the
collection; it used to fail once with Milvus's "in state 'released'" and succeed only an
hour later, at its next round.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from kinship.indexer.adapters.milvus_gallery import MilvusGallery, collection_name
from kinship.indexer.domain.gallery import Gallery
from kinship.indexer.domain.model import Attributes, Consistency, GalleryRecord, SearchFilter

DIM = 16


@pytest.fixture(params=["lite", "server"])
def uri(request, tmp_path):
    return str(tmp_path / "gallery.db") if request.param == "lite" else request.getfixturevalue("milvus_server").uri


def test_the_first_purge_after_a_restart_loads_the_released_collection_and_erases(uri):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(4, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = int(time.time())
    records = [
        GalleryRecord(f"r{i}", f"p{i}", vectors[i], Attributes(), expires_at=now - 60 if i < 2 else None)
        for i in range(len(vectors))
    ]
    first = MilvusGallery(uri, timeout=60)
    try:
        first.upsert("reopen-model", DIM, "t1", records)
    finally:
        first.close()
    # As a restart leaves it (a new process on a Lite file; a Milvus server that came back).
    milvus = MilvusClient(uri=uri)
    try:
        milvus.release_collection(collection_name("reopen-model"))
    finally:
        milvus.close()

    again = MilvusGallery(uri, timeout=60)
    try:
        assert Gallery(again).purge_expired() == 2  # the first thing done with the reopened file
        kept = again.search("reopen-model", "t1", vectors, 4, SearchFilter(), Consistency.STRONG)
        assert {h.record_id for hits in kept for h in hits} == {"r2", "r3"}
    finally:
        again.close()
