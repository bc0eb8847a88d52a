"""Hand-written fakes of the ranker's ports (FaceEmbedder, GalleryIndex), and helpers.

They honour the contracts they stand in for: the embedder refuses undecodable images
and model ids it does not serve, and returns additional models' vectors only when
asked; the gallery keeps one collection per model id, refuses a model it holds no
collection for (NOT_FOUND), and applies the typed filter to searches AND GetRecords.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kinship.ranker.domain.model import (
    Box,
    DetectedFace,
    EmbeddedImage,
    ExcludedUnknown,
    GalleryRecord,
    ModelKind,
    PersonAttributes,
    SearchFilter,
    SearchHit,
    ServedModel,
    Sex,
)
from kinship.ranker.domain.scoring import ScoringConfig
from kinship.runtime.errors import InvalidArgument, NotFound
from tests.kinship_artifact import hand_calibration

MODEL = "fake-model"
KIN = "kinship-kin-test@fake-model"


def unit(*components: float) -> np.ndarray:
    v = np.asarray(components, dtype=np.float32)
    return v / np.linalg.norm(v)


def face(
    embedding: np.ndarray,
    *,
    kinship: np.ndarray | None = None,
    size: float = 100.0,
    score: float = 0.9,
    quality: float = 0.9,
) -> DetectedFace:
    """A detected face; `kinship` is its vector from the kinship model KIN."""
    additional = {} if kinship is None else {KIN: np.asarray(kinship, dtype=np.float32)}
    return DetectedFace(
        embedding=np.asarray(embedding, dtype=np.float32),
        box=Box(0, 0, size, size),
        detection_score=score,
        quality=quality,
        additional=additional,
    )


def calibrated(**overrides) -> ScoringConfig:
    """The hand calibration bound to MODEL, serving KIN (as a loaded artifact would give)."""
    values = dict(
        calibration=hand_calibration(),
        artifact_id="kin-test",
        identity_model_id=MODEL,
        kinship_model_id=KIN,
        artifact_metrics={"auc": 0.8},
    )
    return ScoringConfig(**{**values, **overrides})


class FakeEmbedder:
    """Answers from a table image bytes -> faces; unknown bytes are refused like an undecodable image."""

    def __init__(
        self,
        faces_by_image: dict[bytes, list[DetectedFace]],
        model_id: str = MODEL,
        kinship_model_id: str | None = KIN,
    ):
        self.faces_by_image = faces_by_image
        self.model_id = model_id
        self.kinship_model_id = kinship_model_id
        self.calls: list[tuple[bytes, str]] = []
        self.additional_asked: list[tuple[str, ...]] = []
        self.other_models: set[str] = set()  # further identity models served (same faces)
        self.pre_aligned: list[bool] = []  # per call, whether the photo was sent as an aligned crop

    async def embed(
        self, image: bytes, model_id: str, additional_model_ids: Sequence[str] = (), *, pre_aligned: bool = False
    ) -> EmbeddedImage:
        self.calls.append((image, model_id))
        self.pre_aligned.append(pre_aligned)
        self.additional_asked.append(tuple(additional_model_ids))
        served = {self.model_id, self.kinship_model_id, *self.other_models}
        for m in (model_id or self.model_id, *additional_model_ids):
            if m not in served:
                raise NotFound(f"model {m!r} is not served here")
        if image not in self.faces_by_image:
            raise InvalidArgument("image cannot be decoded; send JPEG or PNG bytes", field="image")
        faces = []
        for f in self.faces_by_image[image]:
            if any(m not in f.additional for m in additional_model_ids):
                raise AssertionError("the test table lacks a kinship vector for a face the ranker embeds")
            kept = {m: f.additional[m] for m in additional_model_ids}
            faces.append(DetectedFace(f.embedding, f.box, f.detection_score, f.quality, kept))
        return EmbeddedImage(faces=faces, model_id=model_id or self.model_id)

    async def list_models(self) -> list[ServedModel]:
        models = [ServedModel(self.model_id, ModelKind.IDENTITY, is_default=True)]
        if self.kinship_model_id:
            models.append(
                ServedModel(self.kinship_model_id, ModelKind.KINSHIP, artifact_id="kin-test", bound_model_id=MODEL)
            )
        return models


def admits(record: GalleryRecord, f: SearchFilter) -> bool:
    """The indexer's filter rules."""
    a = record.attributes
    if record.person_id in f.exclude_person_ids:
        return False
    if f.sex is not Sex.UNSPECIFIED and a.sex != f.sex and not (f.include_unknown and a.sex == Sex.UNSPECIFIED):
        return False
    if f.regions and a.region not in f.regions:
        return False
    if f.birth_year_min is not None or f.birth_year_max is not None:
        if a.birth_year is None:
            return f.include_unknown
        if f.birth_year_min is not None and a.birth_year < f.birth_year_min:
            return False
        if f.birth_year_max is not None and a.birth_year > f.birth_year_max:
            return False
    return True


class FakeGallery:
    """An in-memory gallery: one collection per model id, brute-force cosine, the indexer's filter rules.

    As in the indexer, every read sees only the records of the filter's tenant ("" = the default one).
    """

    def __init__(self, identity_model: str = MODEL, kinship_model: str = KIN):
        self.identity_model, self.kinship_model = identity_model, kinship_model
        self.collections: dict[str, list[GalleryRecord]] = {}
        self.searches: list[tuple[str, int, int, SearchFilter]] = []  # model id, queries, top_k, filter
        self.fetches: list[tuple[str, list[str], SearchFilter]] = []  # model id, person ids, filter
        self.tenant_of: dict[str, str] = {}  # record id -> tenant, where not the default

    @property
    def records(self) -> list[GalleryRecord]:
        return self.collections.get(self.identity_model, [])

    def add(
        self,
        person_id: str,
        record_id: str,
        embedding: np.ndarray | None,
        *,
        kinship: np.ndarray | None = None,
        tenant: str = "",
        **attrs,
    ) -> None:
        """One face: its identity vector into the identity collection, its kinship vector (if any) into the kinship one."""
        attributes = PersonAttributes(**attrs)
        if tenant:
            self.tenant_of[record_id] = tenant
        for model, vector in ((self.identity_model, embedding), (self.kinship_model, kinship)):
            if vector is not None:
                record = GalleryRecord(record_id, person_id, np.asarray(vector, dtype=np.float32), attributes)
                self.collections.setdefault(model, []).append(record)

    def _collection(self, model_id: str) -> list[GalleryRecord]:
        if model_id not in self.collections:
            raise NotFound(f"the gallery holds no collection for model {model_id!r}")
        return self.collections[model_id]

    async def search(self, model_id, queries, top_k, search_filter) -> list[list[SearchHit]]:
        assert 1 <= top_k <= 1000, "the indexer refuses top_k outside 1-1000"
        records = self._collection(model_id)
        self.searches.append((model_id, len(queries), top_k, search_filter))
        admitted = [r for r in records if admits(r, search_filter) and self._in_tenant(r, search_filter)]
        results = []
        for q in queries:
            hits = sorted(
                (SearchHit(r.record_id, r.person_id, float(np.dot(q, r.embedding))) for r in admitted),
                key=lambda h: -h.similarity,
            )
            results.append(hits[:top_k])
        return results

    async def get_records(self, model_id, person_ids, search_filter) -> list[GalleryRecord]:
        assert 1 <= len(person_ids) <= 1000, "the indexer refuses 0 or more than 1000 person ids"
        records = self._collection(model_id)
        self.fetches.append((model_id, list(person_ids), search_filter))
        wanted = set(person_ids)
        return [
            r
            for r in records
            if r.person_id in wanted and admits(r, search_filter) and self._in_tenant(r, search_filter)
        ]

    async def excluded_unknown(self, model_id, query, search_filter) -> ExcludedUnknown:
        """As the indexer counts: records of the tenant, within the regions and exclusions, whose fact is unknown."""
        records = [
            r
            for r in self._collection(model_id)
            if self._in_tenant(r, search_filter)
            and (not search_filter.regions or r.attributes.region in search_filter.regions)
            and r.person_id not in search_filter.exclude_person_ids
        ]
        years = search_filter.birth_year_min is not None or search_filter.birth_year_max is not None
        return ExcludedUnknown(
            birth_year=sum(1 for r in records if r.attributes.birth_year is None) if years else 0,
            sex=sum(1 for r in records if r.attributes.sex == Sex.UNSPECIFIED) if search_filter.sex else 0,
        )

    async def record_counts(self, tenant: str) -> dict[str, int]:
        self.counted = getattr(self, "counted", 0) + 1
        return {
            model: sum(1 for r in records if self.tenant_of.get(r.record_id, "") == tenant)
            for model, records in self.collections.items()
        }

    def _in_tenant(self, record: GalleryRecord, search_filter: SearchFilter) -> bool:
        return self.tenant_of.get(record.record_id, "") == search_filter.tenant
