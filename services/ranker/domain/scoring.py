"""Exact per-relative similarity, fusion across relatives, and ranking. Pure numpy.

Fusion "mean-max-cosine-v1": for each relative r and candidate c,
    similarity(r, c) = max cosine over r's photo faces x c's gallery records
and score(c) = mean over relatives of similarity(r, c), every relative weighing
the same whatever its relation. Candidates are ranked by score, highest first, ties
broken by person id so that the same question always gives the same order. This is
the uncalibrated baseline; a calibrated per-relation fusion replaces it later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kinship.runtime.errors import FailedPrecondition

from .model import DetectedFace, GalleryRecord, RankedCandidate, Relative, RelativeEvidence

FUSION_METHOD = (
    "mean-max-cosine-v1: mean over relatives of each relative's best cosine similarity "
    "(max over its photos x the candidate's gallery records); every relative weighs the same"
)


def most_prominent(faces: Sequence[DetectedFace]) -> DetectedFace | None:
    """The face a photo is about: largest box area x detection score (first on a tie)."""
    best: DetectedFace | None = None
    best_weight = -1.0
    for face in faces:
        weight = face.box.area * face.detection_score
        if weight > best_weight:
            best, best_weight = face, weight
    return best


@dataclass(frozen=True)
class RelativeFaces:
    """One relative's chosen face per photo, as rows of a matrix (row i = photo i)."""

    relative: Relative
    embeddings: np.ndarray  # (photos, dimension)


@dataclass(frozen=True)
class CandidateScores:
    """Every candidate's per-relative evidence and fused score, as arrays.

    Column c is candidate `person_ids[c]`; row r is relative r. Evidence objects
    are only built for the candidates that are returned (see `rank`).
    """

    relatives: tuple[RelativeFaces, ...]
    person_ids: list[str]
    records: list[GalleryRecord]  # indexed by `record_index`
    similarity: np.ndarray  # (relatives, candidates): best cosine
    photo_index: np.ndarray  # (relatives, candidates): photo of the relative that gave it
    record_index: np.ndarray  # (relatives, candidates): record of the candidate that gave it
    retrieved: np.ndarray  # (relatives, candidates): bool, the relative's search found the candidate
    score: np.ndarray  # (candidates,): fused

    def __len__(self) -> int:
        return len(self.person_ids)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    # Vectors arrive L2-normalised; normalising again costs little and keeps the
    # result a true cosine if a producer rounds or forgets.
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0.0, 1.0, norms)


def score_candidates(
    relatives: Sequence[RelativeFaces],
    records: Sequence[GalleryRecord],
    retrieved_by: Mapping[str, set[int]],
) -> CandidateScores:
    """Scores every person that has records against every relative, then fuses.

    `retrieved_by[person_id]` holds the indices (into `relatives`) of the relatives
    whose own search returned that person; it only sets the evidence's `retrieved` flag.
    """
    ordered = sorted(records, key=lambda r: (r.person_id, r.record_id))
    n_rel, n_rec = len(relatives), len(ordered)
    if not n_rec or not n_rel:
        none = np.zeros((n_rel, 0))
        return CandidateScores(
            tuple(relatives), [], [], none, none.astype(int), none.astype(int), none.astype(bool), np.zeros(0)
        )
    first_of_person = [i == 0 or ordered[i].person_id != ordered[i - 1].person_id for i in range(n_rec)]
    starts = np.flatnonzero(first_of_person)
    sizes = np.diff(np.append(starts, n_rec))
    person_ids = [ordered[i].person_id for i in starts]
    gallery = _unit_rows(np.stack([r.embedding for r in ordered]))  # (records, d)
    if any(rel.embeddings.shape[1] != gallery.shape[1] for rel in relatives):
        raise FailedPrecondition(
            f"gallery records have {gallery.shape[1]} values but the photos' embeddings "
            f"{relatives[0].embeddings.shape[1]}; the gallery and the embedder disagree on the model"
        )
    columns = np.arange(n_rec)

    similarity = np.empty((n_rel, len(starts)))
    photo_index = np.empty((n_rel, len(starts)), dtype=int)
    record_index = np.empty((n_rel, len(starts)), dtype=int)
    for r, rel in enumerate(relatives):
        sims = _unit_rows(rel.embeddings) @ gallery.T  # (photos, records)
        photo_per_record = sims.argmax(axis=0)
        sim_per_record = sims[photo_per_record, columns]
        # Max per candidate (a run of columns), and the first record that reaches it.
        best = np.maximum.reduceat(sim_per_record, starts)
        reaches = sim_per_record == np.repeat(best, sizes)
        record_index[r] = np.minimum.reduceat(np.where(reaches, columns, n_rec), starts)
        photo_index[r] = photo_per_record[record_index[r]]
        similarity[r] = np.clip(best, -1.0, 1.0)

    retrieved = np.zeros((n_rel, len(starts)), dtype=bool)
    for c, person_id in enumerate(person_ids):
        for r in retrieved_by.get(person_id, ()):
            retrieved[r, c] = True
    return CandidateScores(
        relatives=tuple(relatives),
        person_ids=person_ids,
        records=ordered,
        similarity=similarity,
        photo_index=photo_index,
        record_index=record_index,
        retrieved=retrieved,
        score=similarity.mean(axis=0),  # the fusion: every relative weighs the same
    )


def rank(scores: CandidateScores, top_n: int) -> tuple[RankedCandidate, ...]:
    """Best first (ties by person id), ranks from 1, at most `top_n`, with evidence per relative."""
    order = sorted(range(len(scores)), key=lambda c: (-scores.score[c], scores.person_ids[c]))[:top_n]
    ranked = []
    for position, c in enumerate(order, start=1):
        evidence = tuple(
            RelativeEvidence(
                label=rel.relative.label,
                relation=rel.relative.relation,
                similarity=float(scores.similarity[r, c]),
                photo_index=int(scores.photo_index[r, c]),
                record_id=scores.records[scores.record_index[r, c]].record_id,
                retrieved=bool(scores.retrieved[r, c]),
            )
            for r, rel in enumerate(scores.relatives)
        )
        # Attributes come from the record that matched some relative best.
        strongest = int(scores.similarity[:, c].argmax())
        attributes = scores.records[scores.record_index[strongest, c]].attributes
        ranked.append(
            RankedCandidate(
                person_id=scores.person_ids[c],
                rank=position,
                score=float(scores.score[c]),
                attributes=attributes,
                evidence=evidence,
            )
        )
    return tuple(ranked)
