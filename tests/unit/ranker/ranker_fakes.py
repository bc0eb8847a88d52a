"""Hand-written fakes of the ranker's ports (FaceEmbedder, GalleryIndex), and helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kinship.ranker.domain.model import (
    Box,
    DetectedFace,
    EmbeddedImage,
    GalleryRecord,
    PersonAttributes,
    SearchFilter,
    SearchHit,
)
from kinship.runtime.errors import InvalidArgument


def unit(*components: float) -> np.ndarray:
    v = np.asarray(components, dtype=np.float32)
    return v / np.linalg.norm(v)


def face(embedding: np.ndarray, *, size: float = 100.0, score: float = 0.9) -> DetectedFace:
    return DetectedFace(
        embedding=np.asarray(embedding, dtype=np.float32), box=Box(0, 0, size, size), detection_score=score
    )


class FakeEmbedder:
    """Answers from a table image bytes -> faces; unknown bytes are refused like an undecodable image."""

    def __init__(self, faces_by_image: dict[bytes, list[DetectedFace]], model_id: str = "fake-model"):
        self.faces_by_image = faces_by_image
        self.model_id = model_id
        self.calls: list[tuple[bytes, str]] = []

    async def embed(self, image: bytes, model_id: str) -> EmbeddedImage:
        self.calls.append((image, model_id))
        if image not in self.faces_by_image:
            raise InvalidArgument("image cannot be decoded; send JPEG or PNG bytes", field="image")
        return EmbeddedImage(faces=list(self.faces_by_image[image]), model_id=model_id or self.model_id)


class FakeGallery:
    """An in-memory gallery doing brute-force cosine search with the indexer's filter rules."""

    def __init__(self, records: Sequence[GalleryRecord] = ()):
        self.records = list(records)
        self.searches: list[tuple[str, int, int, SearchFilter]] = []  # model id, queries, top_k, filter
        self.fetches: list[list[str]] = []

    def add(self, person_id: str, record_id: str, embedding: np.ndarray, **attributes) -> None:
        self.records.append(
            GalleryRecord(record_id, person_id, np.asarray(embedding, dtype=np.float32), PersonAttributes(**attributes))
        )

    def _admits(self, record: GalleryRecord, f: SearchFilter) -> bool:
        a = record.attributes
        if record.person_id in f.exclude_person_ids:
            return False
        if f.sex.value != "unspecified" and a.sex != f.sex:
            return False
        if f.regions and a.region not in f.regions:
            return False
        if f.birth_year_min is not None or f.birth_year_max is not None:
            if a.birth_year is None:
                return False
            if f.birth_year_min is not None and a.birth_year < f.birth_year_min:
                return False
            if f.birth_year_max is not None and a.birth_year > f.birth_year_max:
                return False
        return True

    async def search(self, model_id, queries, top_k, search_filter) -> list[list[SearchHit]]:
        self.searches.append((model_id, len(queries), top_k, search_filter))
        admitted = [r for r in self.records if self._admits(r, search_filter)]
        results = []
        for q in queries:
            hits = sorted(
                (SearchHit(r.record_id, r.person_id, float(np.dot(q, r.embedding))) for r in admitted),
                key=lambda h: -h.similarity,
            )
            results.append(hits[:top_k])
        return results

    async def get_records(self, model_id, person_ids) -> list[GalleryRecord]:
        assert 1 <= len(person_ids) <= 1000, "the indexer refuses more than 1000 person ids"
        self.fetches.append(list(person_ids))
        wanted = set(person_ids)
        return [r for r in self.records if r.person_id in wanted]
