"""The reference: every record of a gallery scored exactly by the ranker's own scorer (tests and benches only).

The served FindRelatives scores only the pool its searches return; this scores every
person of the gallery that passes the filter with `scoring.score_candidates`, in
batches of whole people (a person's records are never split, since the scorer takes
the best record per photo), and ranks them as `scoring.rank` does (fused score, ties
by person id). It also gives the candidate sets the ranker's searches would return if
exact: the family-query pool and the per-photo union, for recall figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.domain.people import Relation, Sex
from kinship.family_vectors import combined_vectors
from kinship.ranker.public import (
    GalleryRecord,
    PersonAttributes,
    RelativeFaces,
    ScoringConfig,
    family_queries,
    score_candidates,
)

#: People scored per batch (bounds the (photos x records) similarity matrices).
BATCH_PEOPLE = 20_000


@dataclass
class GalleryArrays:
    """A gallery held in memory as the indexer holds it: one row per record, sorted by person."""

    record_ids: list[str]
    person_ids: list[str]
    identity: np.ndarray  # (n, di) float32 unit rows
    kinship: np.ndarray  # (n, dk) float32 unit rows
    sex: np.ndarray  # (n,) of Sex

    def __post_init__(self) -> None:
        order = sorted(range(len(self.person_ids)), key=lambda k: (self.person_ids[k], self.record_ids[k]))
        self.record_ids = [self.record_ids[k] for k in order]
        self.person_ids = [self.person_ids[k] for k in order]
        self.identity, self.kinship, self.sex = self.identity[order], self.kinship[order], self.sex[order]
        self._combined: np.ndarray | None = None
        self._records: list[GalleryRecord] | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def combined(self) -> np.ndarray:
        if self._combined is None:
            self._combined = combined_vectors(self.kinship, self.identity)
        return self._combined

    def admitted(self, sex: Sex, excluded: Sequence[str] = ()) -> np.ndarray:
        """Row mask of the records a filter on `sex` (UNSPECIFIED: any) and excluded people admits."""
        mask = np.ones(len(self), dtype=bool) if sex is Sex.UNSPECIFIED else self.sex == sex
        if excluded:
            mask &= ~np.isin(np.asarray(self.person_ids, dtype=object), list(excluded))
        return mask

    def records(self, rows: np.ndarray) -> list[GalleryRecord]:
        if self._records is None:  # built once: a million records take seconds to make
            self._records = [
                GalleryRecord(
                    self.record_ids[k],
                    self.person_ids[k],
                    self.identity[k],
                    PersonAttributes(sex=self.sex[k]),
                    kinship_embedding=self.kinship[k],
                )
                for k in range(len(self))
            ]
        return [self._records[k] for k in rows]


def exhaustive_ranking(
    family: Sequence[RelativeFaces], gallery: GalleryArrays, config: ScoringConfig, sex: Sex, top: int
) -> tuple[list[str], np.ndarray]:
    """The `top` people of the whole gallery by the ranker's exact score (person ids, scores), best first."""
    rows = np.flatnonzero(gallery.admitted(sex))
    people = np.asarray(gallery.person_ids, dtype=object)[rows]
    starts = np.flatnonzero(np.r_[True, people[1:] != people[:-1]]) if len(rows) else np.zeros(0, dtype=int)
    best_ids: list[str] = []
    best_scores = np.zeros(0)
    for b in range(0, len(starts), BATCH_PEOPLE):
        lo = starts[b]
        hi = starts[b + BATCH_PEOPLE] if b + BATCH_PEOPLE < len(starts) else len(rows)
        scored = score_candidates(family, gallery.records(rows[lo:hi]), config=config)
        ids = best_ids + scored.person_ids
        scores = np.concatenate([best_scores, scored.score])
        order = sorted(range(len(ids)), key=lambda c: (-scores[c], ids[c]))[:top]
        best_ids, best_scores = [ids[c] for c in order], scores[order]
    return best_ids, best_scores


def family_pool(
    family: Sequence[RelativeFaces], gallery: GalleryArrays, config: ScoringConfig, sex: Sex, pool: int
) -> set[str]:
    """The people an exact family-query search (pool records per calibration group) would return."""
    assert config.calibration is not None
    found: set[str] = set()
    combined = gallery.combined
    for query in family_queries(family, config.calibration, sex):
        mask = gallery.admitted(query.sex if sex is Sex.UNSPECIFIED else sex)
        # Scored over every row, then masked: a fancy-indexed copy of a million rows costs gigabytes.
        scores = np.where(mask, combined @ query.search_vector, -np.inf)
        top = np.argsort(-scores, kind="stable")[: min(pool, int(mask.sum()))]
        found.update(gallery.person_ids[k] for k in top)
    return found


def per_photo_union(family: Sequence[RelativeFaces], gallery: GalleryArrays, sex: Sex, k: int) -> set[str]:
    """The people the per-photo searches would return: each photo's top k records in identity space and
    (kin relatives) kinship space, exact."""
    mask = gallery.admitted(sex)
    admitted = int(mask.sum())
    found: set[str] = set()
    for rel in family:
        spaces = [(rel.embeddings, gallery.identity)]
        if rel.relative.relation is not Relation.SELF and rel.kinship is not None:
            spaces.append((rel.kinship, gallery.kinship))
        for queries, vectors in spaces:
            sims = np.where(mask, np.asarray(queries, dtype=np.float32) @ vectors.T, -np.inf)
            for row in sims:
                top = np.argpartition(-row, k)[:k] if admitted > k else np.flatnonzero(mask)
                found.update(gallery.person_ids[j] for j in top)
    return found


def rank_among(
    family: Sequence[RelativeFaces], gallery: GalleryArrays, config: ScoringConfig, people: set[str], person: str
) -> int | None:
    """`person`'s rank (from 1) by the exact score among `people` only (what a ranker that scores just
    those candidates gives), or None when `person` is not among them."""
    if person not in people:
        return None
    rows = np.flatnonzero(np.isin(np.asarray(gallery.person_ids, dtype=object), list(people)))
    scored = score_candidates(family, gallery.records(rows), config=config)
    order = sorted(range(len(scored)), key=lambda c: (-scored.score[c], scored.person_ids[c]))
    return [scored.person_ids[c] for c in order].index(person) + 1
