"""The gallery's use cases over a `GalleryStore`, with the rules that hold on every backend.

- Embeddings of different models never meet: one collection per model id; the first
  upsert for a model fixes its dimension.
- Searching or reading a model the gallery does not hold is NOT_FOUND, naming the
  model ids it does hold, never an empty answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from kinship.runtime.errors import NotFound

from . import rules
from .model import CollectionInfo, GalleryRecord, Hit, SearchFilter, UpsertResult


class GalleryStore(Protocol):
    """Where the records live (Milvus in production). Calls block; run them off the event loop.

    Inputs are already validated: ids and regions match the strict character sets of `rules`.
    """

    def model_ids(self) -> list[str]:
        """Model ids that have a collection."""

    def dimension(self, model_id: str) -> int | None:
        """Embedding length of the model's collection, or None when it has none."""

    def upsert(self, model_id: str, dimension: int, records: Sequence[GalleryRecord]) -> str:
        """Inserts or replaces records (creating the collection with `dimension` if absent); returns its name."""

    def search(self, model_id: str, queries: np.ndarray, top_k: int, flt: SearchFilter) -> list[list[Hit]]:
        """Nearest records for each row of `queries`, most similar first."""

    def get_records(self, model_id: str, person_ids: Sequence[str], flt: SearchFilter) -> list[GalleryRecord]:
        """Every record of these people that passes `flt`, embeddings included."""

    def delete(self, model_id: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        """Erases records matching any id in the model's collection; returns the exact number erased."""

    def list_collections(self) -> list[CollectionInfo]:
        """One entry per model collection, with record counts."""

    def ping(self) -> None:
        """Returns when the store answers; raises Unavailable otherwise."""

    def close(self) -> None:
        """Releases connections."""


class Gallery:
    """Validates requests, applies the per-model rules and delegates storage to a GalleryStore."""

    def __init__(self, store: GalleryStore):
        self._store = store

    def upsert(self, model_id: str, records: Sequence[GalleryRecord]) -> UpsertResult:
        rules.check_model_id(model_id)
        dimension = self._store.dimension(model_id)
        rules.validate_records(records, dimension)
        collection = self._store.upsert(model_id, dimension or records[0].embedding.size, records)
        return UpsertResult(upserted_count=len(records), collection=collection)

    def search(self, model_id: str, queries: Sequence[np.ndarray], top_k: int, flt: SearchFilter) -> list[list[Hit]]:
        rules.check_model_id(model_id)
        rules.validate_search(queries, top_k, flt)
        dimension = self._require_dimension(model_id)
        rules.validate_queries(queries, dimension)
        matrix = np.stack([np.asarray(q, dtype=np.float32) for q in queries])
        return self._store.search(model_id, matrix, top_k, flt)

    def get_records(
        self, model_id: str, person_ids: Sequence[str], flt: SearchFilter | None = None
    ) -> list[GalleryRecord]:
        """The records of these people that pass `flt` (the same typed filter as Search).

        A caller that found a person through one matching record thus never gets (and
        never scores) that person's records that fail the filter.
        """
        rules.check_model_id(model_id)
        flt = flt or SearchFilter()
        problems = rules.Violations()
        rules.check_id_list(person_ids, "person_ids", problems, required=True)
        rules.validate_filter(flt, "filter", problems)
        problems.raise_if_any()
        self._require_dimension(model_id)
        return self._store.get_records(model_id, _unique(person_ids), flt)

    def delete(self, model_id: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        """Erases in one model's collection, or in every collection when `model_id` is empty."""
        problems = rules.Violations()
        if model_id:
            rules.check_model_id(model_id, problems=problems)
        if not person_ids and not record_ids:
            problems.add("person_ids", "give at least one person id or record id to erase")
        rules.check_id_list(person_ids, "person_ids", problems, required=False)
        rules.check_id_list(record_ids, "record_ids", problems, required=False)
        problems.raise_if_any()
        if model_id:
            self._require_dimension(model_id)
            targets = [model_id]
        else:
            targets = self._store.model_ids()
        people, records = _unique(person_ids), _unique(record_ids)
        return sum(self._store.delete(target, people, records) for target in targets)

    def list_collections(self) -> list[CollectionInfo]:
        return sorted(self._store.list_collections(), key=lambda c: c.model_id)

    def _require_dimension(self, model_id: str) -> int:
        dimension = self._store.dimension(model_id)
        if dimension is None:
            held = sorted(self._store.model_ids())
            listed = ", ".join(repr(m) for m in held) if held else "none yet (enrol records with Upsert first)"
            raise NotFound(
                f"the gallery holds no embeddings of model {model_id!r}; models it holds: {listed}",
                reason="MODEL_NOT_FOUND",
                metadata={"model_id": model_id},
            )
        return dimension


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))
