"""The gallery's use cases over a `GalleryStore`, with the rules that hold on every backend.

- Embeddings of different models never meet: one collection per model id; the first
  upsert for a model fixes its dimension.
- Every call acts for one tenant (an agency's gallery), decided by the transport with
  `kinship.runtime.tenancy.resolve_tenant`; a store reads and writes that tenant's
  records only, so a search never returns another tenant's records.
- Searching or reading a model the gallery does not hold is NOT_FOUND, naming the
  model ids it does hold, never an empty answer.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kinship.runtime.errors import NotFound
from kinship.runtime.tenancy import DEFAULT_TENANT

from . import rules
from .model import (
    CollectionInfo,
    CollectionStats,
    Consistency,
    DeleteResult,
    EnrolFailure,
    ExcludedUnknown,
    GalleryRecord,
    Hit,
    RecordPage,
    SearchFilter,
    UpsertResult,
)

#: People per page of a listing (GetRecords with all_people) unless the request says.
DEFAULT_PAGE_SIZE = 100


class GalleryStore(Protocol):
    """Where the records live (Milvus in production). Calls block; run them off the event loop,
    except `search_soon` and `known_dimension`, which never block.

    Inputs are already validated: ids, tenants and regions match the strict character sets
    of `rules` and `kinship.runtime.tenancy`. Every read and write is confined to `tenant`.
    """

    def model_ids(self) -> list[str]:
        """Model ids that have a collection."""

    def dimension(self, model_id: str) -> int | None:
        """Embedding length of the model's collection, or None when it has none."""

    def upsert(self, model_id: str, dimension: int, tenant: str, records: Sequence[GalleryRecord]) -> str:
        """Inserts or replaces records of `tenant` (creating the collection if absent); returns its name."""

    def search(
        self, model_id: str, tenant: str, queries: np.ndarray, top_k: int, flt: SearchFilter, consistency: Consistency
    ) -> list[list[Hit]]:
        """Nearest records of `tenant` for each row of `queries`, most similar first."""

    def search_soon(
        self, model_id: str, tenant: str, queries: np.ndarray, top_k: int, flt: SearchFilter, consistency: Consistency
    ) -> Awaitable[list[list[Hit]] | None] | None:
        """`search` started without blocking, to be awaited on the event loop; None where the store
        cannot start it so, and an awaitable that gives None where it failed: `search` answers then."""

    def known_dimension(self, model_id: str) -> int | None:
        """The model's embedding length where the store already knows it, without asking the backend."""

    def get_records(
        self, model_id: str, tenant: str, person_ids: Sequence[str], flt: SearchFilter, consistency: Consistency
    ) -> list[GalleryRecord]:
        """Every record of these people in `tenant` that passes `flt`, embeddings included."""

    def person_ids(self, model_id: str, tenant: str, flt: SearchFilter) -> list[str]:
        """Every person id of `tenant` with a record that passes `flt`, sorted, without duplicates."""

    def count_unknown(self, model_id: str, tenant: str, flt: SearchFilter, fact: str) -> int:
        """Records of `tenant` whose `fact` ("birth_year" or "sex") is unknown and that pass the
        filter's regions and exclusions (its birth-year and sex restrictions are not applied)."""

    def delete(self, model_id: str, tenant: str, person_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        """Erases `tenant`'s records matching any id; returns the exact number erased."""

    def compact(self, model_id: str) -> None:
        """Waits until deleted rows of the collection are physically removed."""

    def purge_expired(self, model_id: str, now: int) -> int:
        """Erases every record (of any tenant) whose expiry is at or before `now`; returns how many."""

    def flush(self, model_id: str) -> None:
        """Seals fresh rows into segments that get indexed (searches over them stay fast)."""

    def list_collections(self) -> list[CollectionInfo]:
        """One entry per model collection, with record counts."""

    def stats(self, model_id: str, tenant: str) -> CollectionStats:
        """Rows, index state and `tenant`'s record count of the model's collection."""

    def ping(self) -> None:
        """Returns when the store answers; raises Unavailable otherwise."""

    def close(self) -> None:
        """Releases connections."""


@dataclass(frozen=True)
class CheckedBatch:
    """A bulk-enrolment batch after its checks: the records to store and the refused ones."""

    good: list[GalleryRecord]
    failures: list[EnrolFailure]
    dimension: int | None


class Gallery:
    """Validates requests, applies the per-model rules and delegates storage to a GalleryStore."""

    def __init__(self, store: GalleryStore):
        self._store = store

    def upsert(self, model_id: str, records: Sequence[GalleryRecord], tenant: str = DEFAULT_TENANT) -> UpsertResult:
        rules.check_model_id(model_id)
        dimension = self._store.dimension(model_id)
        rules.validate_records(records, dimension)
        collection = self._store.upsert(model_id, dimension or records[0].embedding.size, tenant, records)
        return UpsertResult(upserted_count=len(records), collection=collection, tenant=tenant)

    def check_batch(
        self,
        model_id: str,
        records: Sequence[tuple[int, GalleryRecord]],
        seen: set[str],
        dimension: int | None = None,
    ) -> CheckedBatch:
        """Which records of one bulk-enrolment batch are valid, and why the others are not.

        `records` pairs each record with its position in the stream; `seen` holds the record
        ids already received in the stream (a repeat is refused, as in Upsert). Bad records
        are reported, never raised. A stream checks its batches one after another, in order (`seen` is the stream's), and
        may store several at once: `dimension` is the one its first batch settled on, while
        the collection that batch creates may not exist yet.
        """
        rules.check_model_id(model_id)
        dimension = self._store.dimension(model_id) or dimension
        expected = dimension or next((r.embedding.size for _, r in records if r.embedding.size), None)
        good: list[GalleryRecord] = []
        failures: list[EnrolFailure] = []
        bad_vectors = rules.vector_problems([record.embedding for _, record in records], expected)
        for position, (index, record) in enumerate(records):
            problems = rules.Violations()
            if record.record_id in seen:
                problems.add("record_id", f"repeats {record.record_id!r} earlier in this stream")
            rules.check_record(
                record, f"records[{index}]", problems, expected, vector_problem=bad_vectors.get(position, "")
            )
            if problems:
                reason = "; ".join(f"{v.field}: {v.description}" for v in problems.items)
                failures.append(EnrolFailure(record_id=record.record_id, index=index, reason=reason))
            else:
                seen.add(record.record_id)
                good.append(record)
        return CheckedBatch(good=good, failures=failures, dimension=int(expected or 0) or None)

    def store_batch(self, model_id: str, tenant: str, checked: CheckedBatch) -> int:
        """Stores the valid records of a checked batch; returns how many."""
        if checked.good:
            assert checked.dimension is not None  # valid records have one
            self._store.upsert(model_id, checked.dimension, tenant, checked.good)
        return len(checked.good)

    def search(
        self,
        model_id: str,
        queries: Sequence[np.ndarray],
        top_k: int,
        flt: SearchFilter,
        tenant: str = DEFAULT_TENANT,
        consistency: Consistency = Consistency.BOUNDED,
    ) -> list[list[Hit]]:
        rules.check_model_id(model_id)
        rules.validate_search(queries, top_k, flt)
        matrix = _query_matrix(queries, self._require_dimension(model_id))
        return self._store.search(model_id, tenant, matrix, top_k, flt, _read_consistency(consistency))

    def search_soon(
        self,
        model_id: str,
        queries: Sequence[np.ndarray],
        top_k: int,
        flt: SearchFilter,
        tenant: str = DEFAULT_TENANT,
        consistency: Consistency = Consistency.BOUNDED,
    ) -> Awaitable[list[list[Hit]] | None] | None:
        """`search` without a thread, where the store can: checked here as `search` checks.

        None, or an awaitable that gives None, where the store could not answer this way
        (the model's dimension not yet known, no connection yet, a failed call): the caller
        then runs the blocking `search`, which looks up, retries and says what failed.
        """
        rules.check_model_id(model_id)
        rules.validate_search(queries, top_k, flt)
        dimension = self._store.known_dimension(model_id)
        if dimension is None:
            return None
        matrix = _query_matrix(queries, dimension)
        return self._store.search_soon(model_id, tenant, matrix, top_k, flt, _read_consistency(consistency))

    def get_records(
        self,
        model_id: str,
        person_ids: Sequence[str],
        flt: SearchFilter | None = None,
        tenant: str = DEFAULT_TENANT,
        consistency: Consistency = Consistency.BOUNDED,
        *,
        with_embeddings: bool = True,
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
        read = _read_consistency(consistency)
        if not with_embeddings:
            return self._store.get_records(model_id, tenant, _unique(person_ids), flt, read, with_embeddings=False)
        return self._store.get_records(model_id, tenant, _unique(person_ids), flt, read)

    def list_people(
        self,
        model_id: str,
        flt: SearchFilter | None = None,
        tenant: str = DEFAULT_TENANT,
        consistency: Consistency = Consistency.BOUNDED,
        *,
        page_size: int = 0,
        page_token: str = "",
        with_embeddings: bool = True,
    ) -> RecordPage:
        """The records of every person of the tenant, `page_size` people at a time in id order.

        The page token is the last person id of the previous page, so a person enrolled or
        erased between pages neither repeats nor shifts the others.
        """
        rules.check_model_id(model_id)
        flt = flt or SearchFilter()
        problems = rules.Violations()
        size = page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= rules.MAX_IDS_PER_REQUEST:
            problems.add("page_size", f"must be between 1 and {rules.MAX_IDS_PER_REQUEST} people, got {page_size}")
        if page_token:
            rules.check_id(page_token, "page_token", problems)
        rules.validate_filter(flt, "filter", problems)
        problems.raise_if_any()
        self._require_dimension(model_id)
        people = self._store.person_ids(model_id, tenant, flt)
        start = bisect.bisect_right(people, page_token) if page_token else 0
        page = people[start : start + size]
        if not page:
            return RecordPage(records=[])
        read = _read_consistency(consistency)
        if with_embeddings:
            records = self._store.get_records(model_id, tenant, page, flt, read)
        else:
            records = self._store.get_records(model_id, tenant, page, flt, read, with_embeddings=False)
        records = sorted(records, key=lambda r: (r.person_id, r.record_id))
        more = start + size < len(people)
        return RecordPage(records=records, next_page_token=page[-1] if more else "")

    def count_excluded_unknown(self, model_id: str, flt: SearchFilter, tenant: str = DEFAULT_TENANT) -> ExcludedUnknown:
        """Records the filter leaves out only because their birth year or sex is unknown (zeros where
        it keeps them, or does not restrict that fact)."""
        if flt.include_unknown:
            return ExcludedUnknown()
        birth_year = self._store.count_unknown(model_id, tenant, flt, "birth_year") if flt.restricts_birth_year else 0
        sex = self._store.count_unknown(model_id, tenant, flt, "sex") if flt.sex else 0
        return ExcludedUnknown(birth_year=birth_year, sex=sex)

    def delete(
        self,
        model_id: str,
        person_ids: Sequence[str],
        record_ids: Sequence[str],
        tenant: str = DEFAULT_TENANT,
        *,
        await_compaction: bool = False,
    ) -> DeleteResult:
        """Erases in one model's collection, or in every collection when `model_id` is empty.

        With `await_compaction`, returns only after Milvus has rewritten the affected
        segments without the erased rows (they are then gone from storage, not only hidden).
        """
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
        deleted = {target: self._store.delete(target, tenant, people, records) for target in targets}
        if not await_compaction:
            return DeleteResult(deleted_count=sum(deleted.values()))
        started = time.monotonic()
        for target, count in deleted.items():
            if count:
                self._store.compact(target)
        return DeleteResult(
            deleted_count=sum(deleted.values()), compacted=True, compaction_seconds=time.monotonic() - started
        )

    def purge_expired(self, now: int | None = None) -> int:
        """The retention purge: erases every record whose expiry has passed, in every collection."""
        moment = int(time.time()) if now is None else now
        return sum(self._store.purge_expired(model_id, moment) for model_id in self._store.model_ids())

    def flush(self, model_ids: Sequence[str]) -> None:
        for model_id in model_ids:
            self._store.flush(model_id)

    def list_collections(self) -> list[CollectionInfo]:
        return sorted(self._store.list_collections(), key=lambda c: c.model_id)

    def stats(self, tenant: str = DEFAULT_TENANT) -> list[CollectionStats]:
        return [self._store.stats(model_id, tenant) for model_id in sorted(self._store.model_ids())]

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


def _query_matrix(queries: Sequence[np.ndarray], dimension: int) -> np.ndarray:
    rules.validate_queries(queries, dimension)
    return np.stack([np.asarray(q, dtype=np.float32) for q in queries])


def _read_consistency(consistency: Consistency) -> Consistency:
    return Consistency.BOUNDED if consistency == Consistency.UNSPECIFIED else Consistency(consistency)


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))
