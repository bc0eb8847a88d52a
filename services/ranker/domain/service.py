"""The kinship question end to end: validate, embed, gather candidates, score, rank.

1. Every relative's photos are embedded (concurrently, at most `max_concurrent_embeds`
   at a time); the most prominent face of each photo stands for it.
2. One gallery search with every relative-face as a query, filtered by what is known
   of the missing person, the relatives' own person ids excluded; the candidates are
   the union of the people found.
3. Every candidate's records are fetched and scored exactly against every relative,
   then fused and ranked (see `scoring`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from kinship.runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted

from . import scoring
from .model import EmbeddedImage, FindRelativesInput, GalleryRecord, KinshipQuery, Ranking, Relative, SearchFilter
from .ports import FaceEmbedder, GalleryIndex
from .validation import Limits, validate

T = TypeVar("T")

#: The indexer's limit on person ids per GetRecords call.
GET_RECORDS_BATCH = 1000


@dataclass(frozen=True)
class RankerOptions:
    candidate_k: int = 100
    max_concurrent_embeds: int = 4
    limits: Limits = Limits()


async def _gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the rest and is raised as is.

    (A TaskGroup would wrap it in an ExceptionGroup, which the error mapping cannot read.)
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class KinshipRanker:
    """Answers FindRelatives with an embedder and a gallery behind their ports."""

    def __init__(self, embedder: FaceEmbedder, gallery: GalleryIndex, options: RankerOptions = RankerOptions()):
        self._embedder = embedder
        self._gallery = gallery
        self._options = options

    async def find_relatives(self, request: FindRelativesInput) -> Ranking:
        query = validate(request, self._options.limits)
        faces, model_id = await self._embed_relatives(query)
        retrieved_by = await self._candidates(query, faces, model_id)
        records = await self._records(model_id, sorted(retrieved_by))
        scored = scoring.score_candidates(faces, records, retrieved_by)
        return Ranking(
            candidates=scoring.rank(scored, query.top_n),
            model_id=model_id,
            fusion_method=scoring.FUSION_METHOD,
            candidates_considered=len(scored),
        )

    # -- 1. embedding -------------------------------------------------------------------

    async def _embed_relatives(self, query: KinshipQuery) -> tuple[list[scoring.RelativeFaces], str]:
        limit = asyncio.Semaphore(self._options.max_concurrent_embeds)

        async def embed(i: int, j: int, relative: Relative) -> EmbeddedImage:
            async with limit:
                return await self._embed_photo(i, j, relative, query.model_id)

        jobs = [(i, j, rel) for i, rel in enumerate(query.relatives) for j in range(len(rel.photos))]
        images = await _gather_or_cancel([embed(i, j, rel) for i, j, rel in jobs])

        model_ids = {image.model_id for image in images}
        if len(model_ids) != 1:
            # Only possible when no model id was named and embedder replicas disagree on the default.
            raise FailedPrecondition(
                f"the embedder answered with several models ({', '.join(sorted(model_ids))}) for one request; "
                "name model_id in the request so that every photo uses the same model"
            )
        chosen: dict[tuple[int, int], np.ndarray] = {}
        for (i, j, rel), image in zip(jobs, images, strict=True):
            face = scoring.most_prominent(image.faces)
            if face is None:
                raise InvalidArgument(
                    f"relatives[{i}].photos[{j}]: no face found in the photo of '{rel.label}'; "
                    "send a photo where the face is visible",
                    field=f"relatives[{i}].photos[{j}].image",
                    reason="NO_FACE",
                )
            chosen[(i, j)] = np.asarray(face.embedding, dtype=np.float32)
        dimensions = {v.shape for v in chosen.values()}
        if len(dimensions) != 1:
            raise FailedPrecondition(f"the embedder returned embeddings of different shapes {sorted(dimensions)}")
        faces = [
            scoring.RelativeFaces(rel, np.stack([chosen[(i, j)] for j in range(len(rel.photos))]))
            for i, rel in enumerate(query.relatives)
        ]
        return faces, model_ids.pop()

    async def _embed_photo(self, i: int, j: int, relative: Relative, model_id: str) -> EmbeddedImage:
        try:
            return await self._embedder.embed(relative.photos[j], model_id)
        except InvalidArgument as exc:
            # Say which photo the embedder refused (it only saw bytes).
            path = f"relatives[{i}].photos[{j}]"
            raise InvalidArgument(
                f"{path}: the photo of '{relative.label}' was refused: {exc.message}",
                violations=[FieldViolation(f"{path}.image", exc.message)],
                reason=exc.reason,
            ) from exc
        except ResourceExhausted as exc:
            raise ResourceExhausted(
                f"relatives[{i}].photos[{j}]: the photo of '{relative.label}' is too large: {exc.message}",
                reason=exc.reason,
            ) from exc

    # -- 2. candidate generation -------------------------------------------------------------

    async def _candidates(
        self, query: KinshipQuery, faces: list[scoring.RelativeFaces], model_id: str
    ) -> dict[str, set[int]]:
        """Person id -> indices of the relatives whose search found that person."""
        known = query.missing_person
        search_filter = SearchFilter(
            sex=known.sex,
            birth_year_min=known.birth_year_min,
            birth_year_max=known.birth_year_max,
            regions=known.regions,
            exclude_person_ids=tuple(dict.fromkeys(r.person_id for r in query.relatives if r.person_id)),
        )
        owners = [r for r, rel in enumerate(faces) for _ in range(len(rel.embeddings))]
        queries = [row for rel in faces for row in rel.embeddings]
        results = await self._gallery.search(model_id, queries, self._options.candidate_k, search_filter)
        if len(results) != len(queries):
            raise FailedPrecondition(f"the indexer answered {len(results)} results for {len(queries)} queries")
        excluded = set(search_filter.exclude_person_ids)
        retrieved_by: dict[str, set[int]] = {}
        for owner, hits in zip(owners, results, strict=True):
            for hit in hits:
                if hit.person_id not in excluded:
                    retrieved_by.setdefault(hit.person_id, set()).add(owner)
        return retrieved_by

    # -- 3. exact scoring -------------------------------------------------------------------

    async def _records(self, model_id: str, person_ids: list[str]) -> list[GalleryRecord]:
        batches = [person_ids[k : k + GET_RECORDS_BATCH] for k in range(0, len(person_ids), GET_RECORDS_BATCH)]
        fetched = await _gather_or_cancel([self._gallery.get_records(model_id, batch) for batch in batches])
        # A person erased between search and fetch simply drops out.
        wanted = set(person_ids)
        return [record for batch in fetched for record in batch if record.person_id in wanted]
