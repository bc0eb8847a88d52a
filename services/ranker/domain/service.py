"""The kinship question end to end: validate, embed, gather candidates, score, rank.

1. Every photo (relatives', and a CompareKinship candidate's) is embedded once
   (concurrently, at most `max_concurrent_embeds` at a time) with the identity model
   and, when a trained artifact is loaded, the artifact's kinship model as an
   additional model (`EmbedRequest.additional_model_ids`); the most prominent face of
   each photo stands for it, with both vectors and its quality.
2. Candidates. Calibrated, the whole family is one query (`family_query`): before
   its bounds the fused score is an inner product with the record's combined
   [kinship; identity] vector plus a constant, so one search per calibration group
   (candidate sex) of the gallery's combined collection (`kinship.family_vectors`)
   returns the pool that rescoring orders: max(10 x top_n, `family_pool`) records,
   within the indexer's top_k limit. The family query runs only where the combined
   collection covers the tenant's gallery: it holds at least as many of the tenant's
   records as the identity collection (the indexer's Stats, re-read every
   `family_check_seconds`); a gallery only partly enrolled with combined vectors (say,
   before the SDK wrote them) is searched per photo, and the ranker logs a warning.
   Without a combined collection, with too few rows in it, or uncalibrated:
   one identity-space search with every photo's identity vector and, when calibrated,
   one kinship-space search with the kin relatives' photos (SELF searches identity
   only), the union of the people found. Every search is filtered by what is known of
   the missing person, the relatives' own person ids excluded; with soft facts
   (birth years, regions) a second search without them joins the pool, and
   `scoring.apply_soft_facts` adds their stated penalty. `retrieved` says which
   relative's search found whom (the family query counts for every relative).
3. Exact rescoring: every candidate's records are fetched from the identity
   collection (and the kinship collection when a kin relative needs it) WITH the same
   filter (without the soft facts), so a person is never scored on, nor shown with, a record that fails it;
   the two collections' records pair by record id. Then `scoring` scores, fuses and
   ranks. CompareKinship goes through the same steps 1 and 3 for one candidate.

When an artifact is loaded the identity model is the one it is bound to: a request
naming another model id is refused (FAILED_PRECONDITION), since the calibration and
the gallery's kinship vectors belong to that model. So is a request naming a
grandparent when the artifact has no grandparent calibration for it, before any photo
is embedded (`calibration.require_calibration`, for the sex known of the candidate).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from kinship.family_vectors import family_model_id
from kinship.runtime.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from kinship.runtime.logs import get_logger

from . import scoring
from .calibration import photo_age_gap, require_calibration
from .family_query import family_queries
from .model import (
    CompareKinshipInput,
    Comparison,
    DetectedFace,
    EmbeddedImage,
    ExcludedUnknown,
    FindRelativesInput,
    GalleryRecord,
    KinshipQuery,
    PersonAttributes,
    Photo,
    Ranking,
    Relation,
    ScoringDescription,
    SearchFilter,
    Sex,
)
from .ports import FaceEmbedder, GalleryIndex
from .scoring import RelativeFaces, ScoringConfig
from .validation import Limits, validate, validate_comparison

T = TypeVar("T")

_log = get_logger(__name__)

#: The indexer's limit on person ids per GetRecords call.
GET_RECORDS_BATCH = 1000


#: The indexer's limit on top_k per search.
MAX_SEARCH_TOP_K = 1000


@dataclass(frozen=True)
class RankerOptions:
    candidate_k: int = 100
    #: Records one family-query search returns at least (0: no family query, the per-photo union only).
    family_pool: int = 1000
    #: Run the per-photo searches beside the family query as well (they add latency; see docs/kinship.md).
    per_photo_search: bool = False
    #: How long the combined collection's coverage of a tenant's gallery (row counts) is trusted, seconds.
    family_check_seconds: float = 30.0
    max_concurrent_embeds: int = 4
    limits: Limits = Limits()


@dataclass(frozen=True)
class _PhotoJob:
    photo: Photo
    path: str  # e.g. "relatives[0].photos[1]"
    whose: str  # e.g. "the photo of 'father'"


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


def soft_facts_of(query: KinshipQuery) -> scoring.SoftFacts:
    """The facts the caller marked soft, with the penalties it stated or the ranker's defaults."""
    known = query.missing_person
    per_year = known.birth_year_log10_lr_per_year
    region = known.region_log10_lr
    return scoring.SoftFacts(
        birth_year_min=known.birth_year_min if known.soft_birth_year else None,
        birth_year_max=known.birth_year_max if known.soft_birth_year else None,
        regions=known.regions if known.soft_regions else (),
        birth_year_log10_lr_per_year=scoring.SOFT_BIRTH_YEAR_LOG10_LR_PER_YEAR if per_year is None else per_year,
        region_log10_lr=scoring.SOFT_REGION_LOG10_LR if region is None else region,
    )


def widened(search_filter: SearchFilter, soft: scoring.SoftFacts) -> SearchFilter:
    """The filter without the facts that are soft."""
    if soft.birth_year_min is not None or soft.birth_year_max is not None:
        search_filter = dataclasses.replace(search_filter, birth_year_min=None, birth_year_max=None)
    if soft.regions:
        search_filter = dataclasses.replace(search_filter, regions=())
    return search_filter


def search_filter_of(query: KinshipQuery) -> SearchFilter:
    """What is known of the missing person, and the relatives themselves excluded."""
    known = query.missing_person
    return SearchFilter(
        sex=known.sex,
        birth_year_min=known.birth_year_min,
        birth_year_max=known.birth_year_max,
        regions=known.regions,
        exclude_person_ids=tuple(dict.fromkeys(r.person_id for r in query.relatives if r.person_id)),
        include_unknown=known.include_unknown,
        tenant=query.tenant,
    )


class KinshipRanker:
    """Answers FindRelatives, CompareKinship and DescribeScoring with an embedder and a gallery behind their ports."""

    def __init__(
        self,
        embedder: FaceEmbedder,
        gallery: GalleryIndex,
        options: RankerOptions = RankerOptions(),
        scoring_config: ScoringConfig | None = None,
    ):
        self._embedder = embedder
        self._gallery = gallery
        self._options = options
        self._scoring = scoring_config or ScoringConfig()  # None: uncalibrated
        #: tenant -> (monotonic time read, whether the combined collection covers its gallery).
        self._family_coverage: dict[str, tuple[float, bool]] = {}

    @property
    def scoring(self) -> ScoringConfig:
        return self._scoring

    # -- the three questions ------------------------------------------------------------

    async def find_relatives(self, request: FindRelativesInput) -> Ranking:
        query = validate(request, self._options.limits)
        config = self._scoring.with_prior(query.prior_probability)
        model_id = self._identity_model(query.model_id)
        self._check_relations(query, query.missing_person.sex)
        jobs = self._relative_jobs(query)
        faces, model_id = await self._embed(jobs, model_id)
        family = self._family(query, faces)
        search_filter = search_filter_of(query)
        soft = soft_facts_of(query)
        # Soft facts widen what is fetched and scored; the hard filter still bounds one search
        # so that the window's own best candidates are never crowded out of the pool.
        wide_filter = widened(search_filter, soft)
        filters = [search_filter, wide_filter] if wide_filter != search_filter else [search_filter]
        retrieved_by, excluded = await _gather_or_cancel(
            [self._candidates(family, model_id, filters, query), self._excluded_unknown(family, model_id, wide_filter)]
        )
        records = await self._records(model_id, sorted(retrieved_by), wide_filter, self._needs_kinship(query))
        scored = scoring.score_candidates(family, records, retrieved_by, config, model_id=model_id)
        scored = scoring.apply_soft_facts(scored, soft, records)
        candidates = scoring.rank(scored, query.top_n)
        return Ranking(
            candidates=candidates,
            model_id=model_id,
            fusion_method=config.fusion_method,
            candidates_considered=len(scored),
            scoring=config.info(model_id),
            strong_candidates=sum(1 for c in candidates if c.strong_candidate),
            excluded_unknown=excluded,
        )

    async def compare_kinship(self, request: CompareKinshipInput) -> Comparison:
        comparison = validate_comparison(request, self._options.limits)
        query = comparison.query
        config = self._scoring.with_prior(query.prior_probability)
        model_id = self._identity_model(query.model_id)
        known_sex = comparison.candidate_sex if comparison.candidate_photos else query.missing_person.sex
        self._check_relations(query, known_sex)
        jobs = self._relative_jobs(query)
        candidate_jobs = [
            _PhotoJob(photo, f"candidate_photos.photos[{k}]", "the candidate's photo")
            for k, photo in enumerate(comparison.candidate_photos)
        ]
        faces, model_id = await self._embed([*jobs, *candidate_jobs], model_id)
        family = self._family(query, faces[: len(jobs)])
        if candidate_jobs:
            attributes = PersonAttributes(sex=comparison.candidate_sex)
            records = [
                GalleryRecord(
                    record_id=job.path,
                    person_id="",
                    embedding=np.asarray(face.embedding, dtype=np.float32),
                    attributes=attributes,
                    kinship_embedding=self._kinship_vector(face),
                )
                for job, face in zip(candidate_jobs, faces[len(jobs) :], strict=True)
            ]
        else:
            records = await self._person_records(comparison.candidate_person_id, model_id, query)
        scored = scoring.score_candidates(family, records, {}, config, model_id=model_id)
        return Comparison(
            candidate=scoring.candidate(scored, 0, rank=1), scoring=config.info(model_id), model_id=model_id
        )

    def describe_scoring(self) -> ScoringDescription:
        return self._scoring.describe()

    async def check_models(self) -> None:
        """Readiness: with an artifact, the embedder must serve its kinship model and the identity model."""
        config = self._scoring
        if not config.calibrated:
            return
        served = {m.model_id for m in await self._embedder.list_models()}
        for wanted, what in (
            (config.kinship_model_id, "the kinship model"),
            (config.identity_model_id, "the identity model"),
        ):
            if wanted not in served:
                raise Unavailable(
                    f"the embedder does not serve {what} {wanted} of kinship artifact {config.artifact_id} "
                    f"(kinship model {config.kinship_model_id}, bound to identity model {config.identity_model_id}); "
                    f"it serves {', '.join(sorted(served)) or 'nothing'}: start the embedder with the same "
                    "--artifacts-dir (KINSHIP_ARTIFACTS_DIR) as the ranker"
                )

    # -- helpers ----------------------------------------------------------------------------

    def _identity_model(self, requested: str) -> str:
        config = self._scoring
        if not config.calibrated:
            return requested
        if requested and requested != config.identity_model_id:
            raise FailedPrecondition(
                f"model_id {requested!r} is not the identity model the kinship artifact {config.artifact_id} is "
                f"bound to ({config.identity_model_id}); its calibration and the gallery's kinship vectors "
                f"belong to that model: leave model_id empty or name {config.identity_model_id}",
                reason="ARTIFACT_BOUND_TO_ANOTHER_MODEL",
            )
        return config.identity_model_id

    def _check_relations(self, query: KinshipQuery, candidate_sex: Sex) -> None:
        """Every relation must have a calibration for a candidate of the sex known (FAILED_PRECONDITION).

        Only a grandparent can lack one (`check_calibration` requires the others' fallbacks).
        With the sex known, the gallery's filter passes only candidates of that sex; unknown,
        the grandparent's calibration for a candidate of unknown sex is needed.
        """
        sexes = [candidate_sex]
        if query.missing_person.include_unknown and candidate_sex != Sex.UNSPECIFIED:
            sexes.append(Sex.UNSPECIFIED)  # candidates of unknown sex are kept, and scored as such
        for relation in dict.fromkeys(r.relation for r in query.relatives):
            for sex in sexes:
                require_calibration(relation, sex, self._scoring.calibration)

    async def _excluded_unknown(
        self, family: list[RelativeFaces], model_id: str, search_filter: SearchFilter
    ) -> ExcludedUnknown:
        """What the (widened) filter leaves out for an unknown birth year or sex: asked of the indexer only
        where it restricts one of them and keeps no unknown ones."""
        restricts = search_filter.sex != Sex.UNSPECIFIED or (
            search_filter.birth_year_min is not None or search_filter.birth_year_max is not None
        )
        if not restricts or search_filter.include_unknown:
            return ExcludedUnknown()
        return await self._gallery.excluded_unknown(model_id, family[0].embeddings[0], search_filter)

    def _needs_kinship(self, query: KinshipQuery) -> bool:
        return self._scoring.calibrated and any(r.relation is not Relation.SELF for r in query.relatives)

    @staticmethod
    def _relative_jobs(query: KinshipQuery) -> list[_PhotoJob]:
        return [
            _PhotoJob(photo, f"relatives[{i}].photos[{j}]", f"the photo of '{rel.label}'")
            for i, rel in enumerate(query.relatives)
            for j, photo in enumerate(rel.photos)
        ]

    def _kinship_vector(self, face: DetectedFace) -> np.ndarray | None:
        if not self._scoring.calibrated:
            return None
        return np.asarray(face.additional[self._scoring.kinship_model_id], dtype=np.float32)

    def _family(self, query: KinshipQuery, faces: Sequence[DetectedFace]) -> list[RelativeFaces]:
        """Each relative's faces as RelativeFaces, with quality and per-photo age gaps."""
        known = query.missing_person
        family, k = [], 0
        for rel in query.relatives:
            mine = faces[k : k + len(rel.photos)]
            k += len(rel.photos)
            gaps = [
                photo_age_gap(
                    age_at_photo=p.age_at_photo,
                    capture_year=p.capture_year,
                    birth_year_min=known.birth_year_min,
                    birth_year_max=known.birth_year_max,
                    current_year=query.current_year,
                )
                for p in rel.photos
            ]
            kinship = [self._kinship_vector(f) for f in mine]
            family.append(
                RelativeFaces(
                    relative=rel,
                    embeddings=np.stack([np.asarray(f.embedding, dtype=np.float32) for f in mine]),
                    kinship=np.stack(kinship) if self._scoring.calibrated else None,  # type: ignore[arg-type]
                    quality=np.array([f.quality for f in mine], dtype=np.float64),
                    age_gap_years=np.array([np.nan if g is None else g for g in gaps], dtype=np.float64),
                )
            )
        return family

    # -- 1. embedding -------------------------------------------------------------------

    async def _embed(self, jobs: list[_PhotoJob], model_id: str) -> tuple[list[DetectedFace], str]:
        limit = asyncio.Semaphore(self._options.max_concurrent_embeds)
        additional = (self._scoring.kinship_model_id,) if self._scoring.calibrated else ()

        async def embed(job: _PhotoJob) -> EmbeddedImage:
            async with limit:
                return await self._embed_photo(job, model_id, additional)

        images = await _gather_or_cancel([embed(job) for job in jobs])
        model_ids = {image.model_id for image in images}
        if len(model_ids) != 1:
            # Only possible when no model id was named and embedder replicas disagree on the default.
            raise FailedPrecondition(
                f"the embedder answered with several models ({', '.join(sorted(model_ids))}) for one request; "
                "name model_id in the request so that every photo uses the same model"
            )
        chosen: list[DetectedFace] = []
        for job, image in zip(jobs, images, strict=True):
            face = scoring.most_prominent(image.faces)
            if face is None:
                raise InvalidArgument(
                    f"{job.path}: no face found in {job.whose}; send a photo where the face is visible",
                    field=f"{job.path}.image",
                    reason="NO_FACE",
                )
            missing = [m for m in additional if m not in face.additional]
            if missing:
                raise FailedPrecondition(
                    f"{job.path}: the embedder returned no vector of the kinship model {missing[0]}; it must serve "
                    "the kinship artifact the ranker loaded (start it with the same --artifacts-dir)"
                )
            chosen.append(face)
        for name, vectors in (
            ("identity", [np.shape(f.embedding) for f in chosen]),
            ("kinship", [np.shape(f.additional[m]) for f in chosen for m in additional]),
        ):
            if len(set(vectors)) > 1:
                raise FailedPrecondition(
                    f"the embedder returned {name} embeddings of different shapes {sorted(set(vectors))}"
                )
        return chosen, model_ids.pop()

    async def _embed_photo(self, job: _PhotoJob, model_id: str, additional: Sequence[str]) -> EmbeddedImage:
        try:
            if job.photo.pre_aligned:  # only then: an embedder port without the option still serves the rest
                return await self._embedder.embed(job.photo.image, model_id, additional, pre_aligned=True)
            return await self._embedder.embed(job.photo.image, model_id, additional)
        except InvalidArgument as exc:
            # Say which photo the embedder refused (it only saw bytes).
            raise InvalidArgument(
                f"{job.path}: {job.whose} was refused: {exc.message}",
                violations=[FieldViolation(f"{job.path}.image", exc.message)],
                reason=exc.reason,
            ) from exc
        except ResourceExhausted as exc:
            if getattr(exc, "retry_after_ms", None) is not None or exc.reason == "OVERLOADED":
                raise  # the embedder is at capacity, not the photo at fault: its retry hint goes to the caller
            raise ResourceExhausted(f"{job.path}: {job.whose} is too large: {exc.message}", reason=exc.reason) from exc

    # -- 2. candidate generation -------------------------------------------------------------

    def pool_size(self, top_n: int) -> int:
        """How many records one family-query search returns: max(10 x top_n, family_pool), within the indexer's limit."""
        return min(max(10 * top_n, self._options.family_pool), MAX_SEARCH_TOP_K)

    async def _candidates(
        self, family: list[RelativeFaces], model_id: str, filters: Sequence[SearchFilter], query: KinshipQuery
    ) -> dict[str, set[int]]:
        """Person id -> indices of the relatives whose search found that person.

        Calibrated, with the gallery's combined collection: the family query (one search
        per calibration group and filter, `pool_size` records each) finds the candidates
        for every relative at once, and each is marked retrieved for all of them; the
        per-photo searches run beside it only with `per_photo_search`. Without that
        collection (a gallery enrolled without combined vectors), or uncalibrated, the
        per-photo searches alone, as before.
        """
        retrieved_by: dict[str, set[int]] = {}
        per_photo = True
        if (
            self._scoring.calibrated
            and self._options.family_pool > 0
            and await self._family_covers(model_id, filters[0].tenant)
        ):
            found = await self._family_candidates(family, filters, query)
            if found is not None:
                everyone = set(range(len(family)))
                for person_id in found:
                    retrieved_by.setdefault(person_id, set()).update(everyone)
                per_photo = self._options.per_photo_search
        if per_photo:
            for flt in filters:
                for person_id, owners in (await self._per_photo_candidates(family, model_id, flt)).items():
                    retrieved_by.setdefault(person_id, set()).update(owners)
        return retrieved_by

    async def _family_covers(self, model_id: str, tenant: str) -> bool:
        """Whether the combined collection holds every face of the tenant's gallery (by row counts).

        A face enrolled without its combined vector would never be found by the family
        query: where the combined collection holds fewer of the tenant's records than the
        identity collection, the per-photo searches run instead and a warning says so.
        """
        now = time.monotonic()
        known = self._family_coverage.get(tenant)
        if known is not None and now - known[0] < self._options.family_check_seconds:
            return known[1]
        counts = await self._gallery.record_counts(tenant)
        family = family_model_id(self._scoring.kinship_model_id)
        faces, combined = counts.get(model_id, 0), counts.get(family)
        covers = combined is not None and combined >= faces
        if combined is not None and not covers:
            _log.warning(
                "the combined collection misses faces of this gallery: searching per photo; enrol the gallery "
                "again (kinship enroll) to give every face its combined vector",
                tenant=tenant or "default",
                identity_records=faces,
                family_records=combined,
                family_model_id=family,
            )
        self._family_coverage[tenant] = (now, covers)
        return covers

    async def _family_candidates(
        self, family: list[RelativeFaces], filters: Sequence[SearchFilter], query: KinshipQuery
    ) -> set[str] | None:
        """People in the family query's pools, or None where the gallery has no combined collection."""
        config = self._scoring
        assert config.calibration is not None
        queries = family_queries(family, config.calibration, query.missing_person.sex)
        top_k = self.pool_size(query.top_n)
        searches = []
        for flt in filters:
            for fq in queries:
                # A group's query searches that group's sex only; the unspecified group (or a single
                # query serving all) searches without a sex filter.
                group = flt if flt.sex is not Sex.UNSPECIFIED else dataclasses.replace(flt, sex=fq.sex)
                searches.append(
                    self._gallery.search(family_model_id(config.kinship_model_id), [fq.search_vector], top_k, group)
                )
        try:
            answers = await _gather_or_cancel(searches)
        except NotFound:
            return None
        excluded = set().union(*(f.exclude_person_ids for f in filters))
        return {
            hit.person_id for results in answers for hits in results for hit in hits if hit.person_id not in excluded
        }

    async def _per_photo_candidates(
        self, family: list[RelativeFaces], model_id: str, search_filter: SearchFilter
    ) -> dict[str, set[int]]:
        """The per-photo union: each photo's top candidate_k in identity and (kin relatives) kinship space."""
        k = self._options.candidate_k
        identity_owners = [r for r, rel in enumerate(family) for _ in range(rel.photo_count)]
        identity_queries = [row for rel in family for row in rel.embeddings]
        searches = [self._gallery.search(model_id, identity_queries, k, search_filter)]
        owners = [identity_owners]
        if self._scoring.calibrated:
            kin = [(r, rel) for r, rel in enumerate(family) if rel.relative.relation is not Relation.SELF]
            if kin:
                kin_queries = [row for _, rel in kin for row in rel.kinship]  # type: ignore[union-attr]
                owners.append([r for r, rel in kin for _ in range(rel.photo_count)])
                searches.append(
                    self._in_kinship_space(
                        self._gallery.search(self._scoring.kinship_model_id, kin_queries, k, search_filter)
                    )
                )
        answers = await _gather_or_cancel(searches)
        excluded = set(search_filter.exclude_person_ids)
        retrieved_by: dict[str, set[int]] = {}
        for query_owners, results in zip(owners, answers, strict=True):
            if len(results) != len(query_owners):
                raise FailedPrecondition(f"the indexer answered {len(results)} results for {len(query_owners)} queries")
            for owner, hits in zip(query_owners, results, strict=True):
                for hit in hits:
                    if hit.person_id not in excluded:
                        retrieved_by.setdefault(hit.person_id, set()).add(owner)
        return retrieved_by

    async def _in_kinship_space(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except NotFound as exc:
            config = self._scoring
            raise NotFound(
                f"the gallery holds no kinship vectors (no collection for the kinship model {config.kinship_model_id} "
                f"of artifact {config.artifact_id}): enrol the gallery again (kinship enroll) so that every face "
                f"gets its kinship vector beside its identity vector ({exc.message})",
                reason=exc.reason,
            ) from exc

    # -- 3. exact scoring -------------------------------------------------------------------

    async def _records(
        self, model_id: str, person_ids: list[str], search_filter: SearchFilter, kinship: bool
    ) -> list[GalleryRecord]:
        """The people's records that pass the filter, identity and kinship vectors paired by record id."""
        if not person_ids:
            return []
        batches = [person_ids[k : k + GET_RECORDS_BATCH] for k in range(0, len(person_ids), GET_RECORDS_BATCH)]
        calls: list[Awaitable[list[GalleryRecord]]] = [
            self._gallery.get_records(model_id, batch, search_filter) for batch in batches
        ]
        if kinship:
            kin_model = self._scoring.kinship_model_id
            calls += [
                self._in_kinship_space(self._gallery.get_records(kin_model, batch, search_filter)) for batch in batches
            ]
        fetched = await _gather_or_cancel(calls)
        identity = [r for batch in fetched[: len(batches)] for r in batch]
        kin = [r for batch in fetched[len(batches) :] for r in batch]
        # A person erased between search and fetch simply drops out.
        wanted = set(person_ids)
        return [r for r in pair_records(identity, kin) if r.person_id in wanted]

    async def _person_records(self, person_id: str, model_id: str, query: KinshipQuery) -> list[GalleryRecord]:
        search_filter = search_filter_of(query)
        records = await self._records(model_id, [person_id], search_filter, self._needs_kinship(query))
        if records:
            return records
        unrestricted = SearchFilter(exclude_person_ids=search_filter.exclude_person_ids, tenant=search_filter.tenant)
        if search_filter != unrestricted:
            unfiltered = await self._gallery.get_records(model_id, [person_id], unrestricted)
            if unfiltered:
                raise NotFound(
                    f"person {person_id} has {len(unfiltered)} gallery record(s) but none passes what is known of "
                    "the missing person (sex, birth year, regions); check missing_person or the candidate",
                    reason="NO_RECORD_PASSES_FILTER",
                )
        raise NotFound(
            f"person {person_id} has no gallery record for model {model_id}; check the id (kinship enroll adds people)",
            reason="PERSON_NOT_FOUND",
        )


def pair_records(identity: Sequence[GalleryRecord], kinship: Sequence[GalleryRecord]) -> list[GalleryRecord]:
    """One record per (person, record id): the identity record's vector and attributes, the kinship record's vector.

    Records come back from GetRecords with their vector in `embedding` whatever the
    collection; a record found in only one collection keeps None for the other vector.
    """
    merged: dict[tuple[str, str], GalleryRecord] = {}
    for r in identity:
        merged[(r.person_id, r.record_id)] = GalleryRecord(r.record_id, r.person_id, r.embedding, r.attributes)
    for r in kinship:
        key = (r.person_id, r.record_id)
        known = merged.get(key)
        if known is None:
            merged[key] = GalleryRecord(r.record_id, r.person_id, None, r.attributes, kinship_embedding=r.embedding)
        else:
            merged[key] = GalleryRecord(
                known.record_id, known.person_id, known.embedding, known.attributes, kinship_embedding=r.embedding
            )
    return list(merged.values())
