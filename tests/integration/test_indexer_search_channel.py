"""Searches on the event loop's own channel, against real Milvus (Lite and the 2.3.5 server).

The channel follows pymilvus's connection (its address, headers and TLS); this proves on
both backends, with the pinned pymilvus, that it opens and answers the same hits as the
blocking path, so a pymilvus change that hid what it follows would fail here, not only
make searches slower. The last test covers the other way round: a pymilvus without the
stub our requests are sent on, where writes and searches take pymilvus's own calls.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kinship.indexer.adapters import milvus_gallery
from kinship.indexer.adapters.milvus_gallery import MilvusGallery
from kinship.indexer.domain.model import Attributes, Consistency, GalleryRecord, SearchFilter

DIM = 16


@pytest.fixture(params=["lite", "server"])
def gallery(request, tmp_path):
    uri = str(tmp_path / "gallery.db") if request.param == "lite" else request.getfixturevalue("milvus_server").uri
    store = MilvusGallery(uri, timeout=60)
    yield store
    store.close()


def _records(*, seed: int, people: int, born_from: int, region: str) -> tuple[np.ndarray, list[GalleryRecord]]:
    """8 unit vectors, and a record of each: r{i} of person p{i % people}, born `born_from` + i."""
    vectors = np.random.default_rng(seed).normal(size=(8, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        GalleryRecord(f"r{i}", f"p{i % people}", vectors[i], Attributes(birth_year=born_from + i, region=region))
        for i in range(len(vectors))
    ]
    return vectors, records


def test_a_search_on_the_event_loop_answers_what_the_blocking_path_answers(gallery):
    vectors, records = _records(seed=3, people=8, born_from=1980, region="IT-MI")
    model_id = "channel-model"
    gallery.upsert(model_id, DIM, "t1", records)
    queries = vectors[[2, 5]]
    blocking = gallery.search(model_id, "t1", queries, 3, SearchFilter(), Consistency.STRONG)

    async def on_the_loop():
        soon = gallery.search_soon(model_id, "t1", queries, 3, SearchFilter(), Consistency.STRONG)
        assert soon is not None, "no search channel: pymilvus's connection no longer says where it goes"
        return await soon

    hits = asyncio.run(on_the_loop())
    assert [[h.record_id for h in q] for q in hits] == [[h.record_id for h in q] for q in blocking]
    assert [hits[0][0].record_id, hits[1][0].record_id] == ["r2", "r5"]
    assert hits[0][0].attributes.birth_year == 1982 and hits[0][0].similarity == pytest.approx(1.0, abs=1e-4)
    # Another tenant's search on the same channel sees none of these records.
    other = asyncio.run(_soon(gallery, model_id, "t2", queries))
    assert other == [[], []]


async def _soon(gallery, model_id, tenant, queries):
    return await gallery.search_soon(model_id, tenant, queries, 3, SearchFilter(), Consistency.STRONG)


def test_where_pymilvus_has_no_stub_writes_and_searches_take_its_own_calls_and_answer_alike(gallery, monkeypatch):
    """The fallbacks for a pymilvus whose handler lacks the stub our requests are sent on."""
    vectors, records = _records(seed=11, people=3, born_from=1970, region="FR-75")
    model_id = "fallback-model"
    gallery.upsert(model_id, DIM, "t1", records[:4])  # on the stub
    queries = vectors[[1, 6]]
    with monkeypatch.context() as patched:
        patched.setattr(milvus_gallery, "_stub_of", lambda client: None)
        gallery.upsert(model_id, DIM, "t1", records[4:])  # pymilvus's own insert or upsert
        fallback = gallery.search(model_id, "t1", queries, 4, SearchFilter(), Consistency.STRONG)
    on_stub = gallery.search(model_id, "t1", queries, 4, SearchFilter(), Consistency.STRONG)
    assert [[h.record_id for h in q] for q in fallback] == [[h.record_id for h in q] for q in on_stub]
    assert [fallback[0][0].record_id, fallback[1][0].record_id] == ["r1", "r6"]
    assert fallback[1][0].attributes == on_stub[1][0].attributes and fallback[1][0].attributes.birth_year == 1976
    assert [h.similarity for h in fallback[0]] == pytest.approx([h.similarity for h in on_stub[0]], abs=1e-5)
