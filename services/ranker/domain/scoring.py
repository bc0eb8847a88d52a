"""Exact per-relative evidence, fusion across relatives, and ranking. Pure numpy.

Two modes, chosen by whether a trained kinship artifact is loaded (`ScoringConfig`):

Calibrated: fusion "summed-calibrated-llr-v1"
---------------------------------------------
For each relative r and candidate c:

1. Similarity per photo. For each photo i of r, s_i = the highest cosine between the
   photo's face and any of c's gallery records, in the kinship space (the artifact's
   network) for a kin relation and in the identity space for SELF (an earlier photo
   of the missing person is identity evidence). Only records that pass the missing
   person's filter are ever given to this module. A candidate with no record in the
   space (a face enrolled before the artifact existed has no kinship vector) gets no
   evidence from that relative: log10 LR 0, similarity 0, no record id.
2. Calibration. `calibration.calibration_name(relation, candidate sex, calibration)`
   picks the most specific calibration (father-son before father, brother-sister
   before sister before sibling, grandmother-grandson before grandmother; see
   `calibration`); the candidate's sex is the one its records agree on (unspecified
   when they disagree or say none). A grandparent the artifact has no calibration for
   is refused (FAILED_PRECONDITION), never scored with another relation's.
   llr_i = `calibration.log10_lr(cal, s_i, t_i)`, bounded by the calibration's
   max_abs_log10_lr, where t_i is the photo's best identity cosine over the
   candidate's records: a kin relation's calibration weighs it as a second, weaker
   witness (identity_slope; measured on KinFaceW-I it adds about 3 points of
   accuracy and a quarter to retrieval mAP over the kinship cosine alone). For SELF, llr_i is multiplied by
   `age_gap_factor(gap_i, calibration.self_age_gap_half_life_years)`, gap_i given per
   photo (`RelativeFaces.age_gap_years`, see `calibration.photo_age_gap`).
3. One relative, several photos: the relative's log10 LR is the quality-weighted
   MEAN of its llr_i, weights max(quality_i, 0.05). Several photos of one person are
   views of the same face, not independent evidence, so they are averaged, never
   summed: a blurry photo (low quality) pulls the mean less than a sharp one, and the
   floor keeps a photo the detector barely trusts from vanishing entirely (and a
   zero-quality relative from dividing by 0). A duplicated photo changes nothing:
   photos of one relative whose identity vectors are near-identical (cosine >= 0.98:
   the same file twice, or a re-encoded copy) form one group that counts once, the
   best-quality member standing for it (the first on a tie) and the others weighing 0.
4. Fusion across relatives: fused log10 LR = sum over relatives of w_r x log10 LR_r.
   Summing log LRs is exact for conditionally independent evidence; the weights
   w_r correct for evidence that is not independent:
   - FATHER and MOTHER count in full (w = 1): each parent passes on an independent
     half of the genome, so their resemblances to the child are separate evidence.
   - Several relatives with the same parent relation (two photos sets both called
     father, say, from different sources) are the same person: they share one
     weight, 1/count each, exactly as photos of one relative are averaged.
   - k siblings (BROTHER, SISTER and SIBLING together) each get 1/(1 + 0.5 (k - 1)):
     siblings share genes with each other as well as with the missing person, so
     k siblings are worth less than k independent witnesses (0.5 is the expected
     genetic correlation between full siblings). With any parent given, each
     sibling's weight is halved again: a sibling's resemblance to the missing person
     runs largely through the parents already counted.
   - GRANDFATHER and GRANDMOTHER each get 0.5 (GRANDPARENT_WEIGHT), for the same
     reason as siblings: a grandparent passes on about a quarter of the genome, not
     half, and passes it on through a parent, so the resemblance is weaker evidence
     and partly the same evidence as that parent's. With any parent given (father or
     mother, whichever side the grandparent is on: the request does not say), each
     grandparent's weight is halved again, to 0.25: what the grandparent passed on is
     already counted in the parent's resemblance. Several relatives with the same
     grandparent relation share its weight, 1/count each, like other repeated
     relations (a grandfather and a grandmother do not share: they are two people).
   - SELF counts in full (w = 1; several SELF relatives are one person and share
     it, 1/count each): it is direct identity evidence, discounted per photo for the
     age gap in step 2 rather than here.
5. Posterior = 1 / (1 + 10^-(fused + log10(prior / (1 - prior)))): Bayes' rule with
   the stated prior that any one candidate is the missing person.
6. Strong candidate: fused >= the strong-candidate threshold (a lead for a person to
   verify, never an identification).
7. Ranking by fused log10 LR, highest first, ties broken by person id so the same
   question always gives the same order. Candidate.score = the fused log10 LR.

Uncalibrated: fusion "mean-max-cosine-v1" (no artifact)
--------------------------------------------------------
Today's baseline, and it says so: score(c) = mean over relatives of the best identity
cosine (max over the relative's photos x c's records); every relative weighs the same
(fusion weight 1/relatives), grandparents included. log10 LRs are 0, the posterior is the prior, no
candidate is strong, and the fusion method text says UNCALIBRATED.

Evidence of a relative (both modes) reports its best photo: the highest similarity
over its photos, that photo's index and the record that gave it (the first on a tie).

Evaluation code measures what is served by calling the same functions on embeddings:

    config = ScoringConfig(calibration=cal, identity_model_id=..., kinship_model_id=...)
    family = [relative_faces(Relation.FATHER, identity_rows, kinship_rows, quality=[0.9])]
    records = [GalleryRecord(record_id, person_id, identity_vector, PersonAttributes(sex=Sex.MALE),
                             kinship_embedding=kinship_vector), ...]
    scores = score_candidates(family, records, config=config)
    scores.person_ids, scores.log10_lr (fused), scores.relative_log10_lr, scores.posterior
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kinship.artifacts import Calibration, KinshipArtifact
from kinship.domain import faces as faces_rule
from kinship.runtime.errors import FailedPrecondition

from . import calibration as cal
from .model import (
    GRANDPARENTS,
    PARENTS,
    SIBLINGS,
    CalibrationSummary,
    DetectedFace,
    FactEvidence,
    GalleryRecord,
    PersonAttributes,
    RankedCandidate,
    Relation,
    Relative,
    RelativeEvidence,
    ScoringDescription,
    ScoringInfo,
    Sex,
)

FUSION_NAME = "summed-calibrated-llr-v1"
FUSION_METHOD = (
    f"{FUSION_NAME}: sum over relatives of weight x calibrated log10 likelihood ratio (each relative's photos "
    "averaged by quality); parents count in full, relatives sharing a relation share one weight, k siblings "
    "weigh 1/(1+0.5(k-1)) each and half that beside a parent, a grandparent weighs 0.5 and half that beside a "
    "parent, self counts in full (discounted for its age gap)"
)
UNCALIBRATED_NAME = "mean-max-cosine-v1"
UNCALIBRATED_FUSION_METHOD = (
    f"{UNCALIBRATED_NAME}: UNCALIBRATED (no trained kinship artifact is loaded; run `kinship train`): mean over "
    "relatives of each relative's best identity cosine similarity (max over its photos x the candidate's gallery "
    "records), every relative weighing the same; scores are not evidence: likelihood ratios are 0 and no "
    "candidate is strong"
)
#: Weight floor of one photo in its relative's quality-weighted mean.
MIN_PHOTO_WEIGHT = 0.05
#: Identity cosine at or above which two photos of one relative are the same photo.
DUPLICATE_COSINE = 0.98
#: Expected genetic correlation of full siblings: the discount of each extra sibling.
SIBLING_CORRELATION = 0.5
#: Weight of one grandparent (about a quarter of the genome, through a parent); halved beside a parent.
GRANDPARENT_WEIGHT = 0.5
DEFAULT_PRIOR = 0.001
#: Soft facts (issue 26): log10 LR per year a candidate's birth year lies outside a soft window (an LR
#: of 0.56 a year: a registered year a few years off is common, decades off is rare), and for a region
#: outside soft regions (an LR of 0.1). A request may state its own (MissingPerson.soft).
SOFT_BIRTH_YEAR_LOG10_LR_PER_YEAR = -0.25
SOFT_REGION_LOG10_LR = -1.0
DEFAULT_STRONG_LOG10_LR = 2.0


# --- How this ranker scores ----------------------------------------------------------


def training_data(artifact: KinshipArtifact) -> str:
    """The artifact's training data in one line, from its manifest's `dataset`."""
    data = artifact.dataset
    name = str(data.get("name", "")) or "unknown data"
    parts = [name]
    if data.get("families"):
        parts.append(f"{data['families']} families")
    if data.get("images"):
        parts.append(f"{data['images']} images")
    split = data.get("split")
    if isinstance(split, Mapping) and split:
        parts.append("split by family " + "/".join(f"{k} {v}" for k, v in split.items()))
    if data.get("terms"):
        parts.append(str(data["terms"]))
    return ", ".join(parts)


@dataclass(frozen=True)
class ScoringConfig:
    """The artifact's calibration (None: uncalibrated), its model ids, the prior and the threshold."""

    calibration: Calibration | None = None
    artifact_id: str = ""
    identity_model_id: str = ""
    kinship_model_id: str = ""
    prior_probability: float = DEFAULT_PRIOR
    strong_candidate_log10_lr: float = DEFAULT_STRONG_LOG10_LR
    artifact_metrics: Mapping[str, float] = field(default_factory=dict)
    artifact_licence: str = ""
    artifact_training_data: str = ""
    artifact_shipped: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {self.prior_probability}")
        if not math.isfinite(self.strong_candidate_log10_lr):
            raise ValueError(f"strong_candidate_log10_lr must be finite, got {self.strong_candidate_log10_lr}")
        if self.calibration is not None:
            cal.check_calibration(self.calibration)

    @classmethod
    def from_artifact(
        cls,
        artifact: KinshipArtifact | None,
        *,
        prior_probability: float = DEFAULT_PRIOR,
        strong_candidate_log10_lr: float = DEFAULT_STRONG_LOG10_LR,
    ) -> ScoringConfig:
        if artifact is None:
            return cls(prior_probability=prior_probability, strong_candidate_log10_lr=strong_candidate_log10_lr)
        return cls(
            calibration=artifact.calibration,
            artifact_id=artifact.artifact_id,
            identity_model_id=artifact.identity_model_id,
            kinship_model_id=artifact.kinship_model_id,
            prior_probability=prior_probability,
            strong_candidate_log10_lr=strong_candidate_log10_lr,
            artifact_metrics=dict(artifact.metrics),
            artifact_licence=artifact.licence,
            artifact_training_data=training_data(artifact),
            artifact_shipped=artifact.shipped,
        )

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def fusion_method(self) -> str:
        return FUSION_METHOD if self.calibrated else UNCALIBRATED_FUSION_METHOD

    def with_prior(self, prior_probability: float) -> ScoringConfig:
        """This configuration under another prior (0 keeps this one's)."""
        if not prior_probability:
            return self
        return dataclasses.replace(self, prior_probability=prior_probability)

    def info(self, identity_model_id: str = "") -> ScoringInfo:
        """ScoringInfo; `identity_model_id` names the model used when no artifact fixes it."""
        return ScoringInfo(
            calibrated=self.calibrated,
            artifact_id=self.artifact_id,
            calibration_id=self.calibration.calibration_id if self.calibration else "",
            identity_model_id=self.identity_model_id or identity_model_id,
            kinship_model_id=self.kinship_model_id,
            fusion_method=self.fusion_method,
            prior_probability=self.prior_probability,
            strong_candidate_log10_lr=self.strong_candidate_log10_lr,
        )

    def describe(self) -> ScoringDescription:
        calibrations = ()
        if self.calibration is not None:
            calibrations = tuple(
                CalibrationSummary(
                    name=name,
                    fitted_on=rel.fitted_on,
                    kin_pairs=rel.kin_pairs,
                    non_kin_pairs=rel.non_kin_pairs,
                    max_abs_log10_lr=rel.max_abs_log10_lr,
                )
                for name, rel in sorted(self.calibration.relations.items())
            )
        return ScoringDescription(
            self.info(),
            calibrations,
            dict(self.artifact_metrics),
            artifact_licence=self.artifact_licence,
            artifact_training_data=self.artifact_training_data,
            artifact_shipped=self.artifact_shipped,
        )


# --- One relative's faces --------------------------------------------------------------


def most_prominent(faces: Sequence[DetectedFace]) -> DetectedFace | None:
    """The face a photo is about, by the suite's one rule (`kinship.domain.faces`)."""
    return faces_rule.most_prominent(
        faces, lambda f: faces_rule.prominence(f.box.x_min, f.box.y_min, f.box.x_max, f.box.y_max, f.detection_score)
    )


@dataclass(frozen=True)
class RelativeFaces:
    """One relative's chosen face per photo, as rows (row i = photo i).

    `embeddings` are identity vectors; `kinship` the same faces' kinship vectors
    (needed for a kin relation when calibrated); `quality` in [0, 1] per photo (None:
    every photo 1); `age_gap_years` per photo, NaN where unknown (used for SELF only).
    """

    relative: Relative
    embeddings: np.ndarray  # (photos, identity dimension)
    kinship: np.ndarray | None = None  # (photos, kinship dimension)
    quality: np.ndarray | None = None  # (photos,)
    age_gap_years: np.ndarray | None = None  # (photos,), NaN = unknown

    def __post_init__(self) -> None:
        photos = len(self.embeddings)
        for name in ("kinship", "quality", "age_gap_years"):
            value = getattr(self, name)
            if value is not None and len(value) != photos:
                raise ValueError(f"RelativeFaces.{name} has {len(value)} rows for {photos} photos")

    @property
    def photo_count(self) -> int:
        return len(self.embeddings)


def relative_faces(
    relation: Relation,
    identity: np.ndarray,
    kinship: np.ndarray | None = None,
    *,
    quality: Sequence[float] | np.ndarray | None = None,
    age_gap_years: Sequence[float | None] | np.ndarray | None = None,
    label: str = "",
) -> RelativeFaces:
    """A relative straight from vectors (for evaluation code and tests): one row per photo."""
    identity = np.atleast_2d(np.asarray(identity, dtype=np.float64))
    gaps = None
    if age_gap_years is not None:
        gaps = np.array([np.nan if g is None else float(g) for g in age_gap_years])
    return RelativeFaces(
        Relative(label=label or relation.value, relation=relation, photos=()),
        identity,
        None if kinship is None else np.atleast_2d(np.asarray(kinship, dtype=np.float64)),
        None if quality is None else np.asarray(quality, dtype=np.float64),
        gaps,
    )


# --- The arithmetic of evidence -----------------------------------------------------------


def fusion_weights(relations: Sequence[Relation]) -> np.ndarray:
    """Weight of each relative's log10 LR in the fused sum (see the module docstring, step 4)."""
    count = {relation: sum(1 for r in relations if r is relation) for relation in set(relations)}
    siblings = sum(1 for r in relations if r in SIBLINGS)
    sibling_weight = 1.0 / (1.0 + SIBLING_CORRELATION * (siblings - 1)) if siblings else 0.0
    grandparent_weight = GRANDPARENT_WEIGHT
    if any(r in PARENTS for r in relations):
        sibling_weight *= 0.5
        grandparent_weight *= 0.5
    weights = []
    for relation in relations:
        if relation in SIBLINGS:
            weights.append(sibling_weight)
        elif relation in GRANDPARENTS:
            weights.append(grandparent_weight / count[relation])
        elif relation in PARENTS or relation is Relation.SELF:
            weights.append(1.0 / count[relation])
        else:
            raise ValueError(f"no fusion weight for relation {relation}")
    return np.asarray(weights, dtype=np.float64)


def distinct_photos(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(photos,) bool: the photos that count, one per group of near-identical photos.

    A photo joins the group of the first earlier group leader it is near-identical to
    (identity cosine >= DUPLICATE_COSINE); the member of highest weight stands for
    the group, the first on a tie, so adding a copy of any photo changes nothing.
    """
    unit_rows = _unit_rows(np.atleast_2d(vectors))
    n = len(unit_rows)
    group = np.arange(n)
    if n > 1:
        same = unit_rows @ unit_rows.T >= DUPLICATE_COSINE
        for i in range(1, n):
            leaders = np.flatnonzero(same[i, :i] & (group[:i] == np.arange(i)))
            if len(leaders):
                group[i] = leaders[0]
    keep = np.zeros(n, dtype=bool)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        keep[members[np.argmax(weights[members])]] = True  # argmax: the first on a tie
    return keep


def photo_weights(
    quality: np.ndarray | Sequence[float] | None, photos: int, vectors: np.ndarray | None = None
) -> np.ndarray:
    """Weight of each photo in its relative's mean: max(quality, MIN_PHOTO_WEIGHT) (1 without quality);
    with `vectors` (identity, one row per photo), 0 for a near-duplicate of a photo that stands for it."""
    weights = (
        np.ones(photos) if quality is None else np.maximum(np.asarray(quality, dtype=np.float64), MIN_PHOTO_WEIGHT)
    )
    if vectors is not None and photos > 1:
        weights = np.where(distinct_photos(vectors, weights), weights, 0.0)
    return weights


def _photo_log10_lrs(
    relation: Relation,
    similarity: np.ndarray,  # (photos, candidates)
    names: Sequence[str],  # calibration name per candidate
    calibration: Calibration,
    age_gap_years: np.ndarray | None,  # (photos,) NaN = unknown
    identity_similarity: np.ndarray | None = None,  # (photos, candidates), for calibrations that weigh it
) -> np.ndarray:
    llr = np.empty_like(similarity, dtype=np.float64)
    names_array = np.asarray(names, dtype=object)
    for name in set(names):
        columns = names_array == name
        identity = None if identity_similarity is None else identity_similarity[:, columns]
        llr[:, columns] = cal.log10_lr(calibration.get(name), similarity[:, columns], identity)
    if relation is Relation.SELF and age_gap_years is not None:
        half_life = calibration.self_age_gap_half_life_years
        factors = np.array([cal.age_gap_factor(None if math.isnan(g) else g, half_life) for g in age_gap_years])
        llr *= factors[:, None]
    return llr


def _relative_log10_lrs(
    relation: Relation,
    similarity: np.ndarray,  # (photos, candidates), NaN where the candidate has no record in the space
    sexes: Sequence[Sex],  # per candidate
    calibration: Calibration,
    weights: np.ndarray,  # (photos,): see photo_weights
    age_gap_years: np.ndarray | None,
    identity_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """(candidates,): the weighted mean of the photos' calibrated llr; 0 where there is no similarity."""
    by_sex = {sex: cal.calibration_name(relation, sex, calibration) for sex in set(sexes)}
    names = [by_sex[s] for s in sexes]
    llr = _photo_log10_lrs(relation, similarity, names, calibration, age_gap_years, identity_similarity)
    mean = (weights @ llr) / weights.sum()
    return np.where(np.isnan(mean), 0.0, mean)


def relative_log10_lr(
    relation: Relation,
    similarities: Sequence[float] | np.ndarray,
    calibration: Calibration,
    *,
    candidate_sex: Sex = Sex.UNSPECIFIED,
    quality: Sequence[float] | np.ndarray | None = None,
    age_gap_years: Sequence[float | None] | np.ndarray | None = None,
    identity_similarities: Sequence[float] | np.ndarray | None = None,
) -> float:
    """One relative's log10 LR for one candidate from its photos' best similarities s_i (steps 2-3).

    The same arithmetic `score_candidates` applies to every candidate, for callers that
    hold similarities already (evaluation code). Duplicated photos are not detected
    here (no vectors): pass each distinct photo once.
    """
    sims = np.asarray(similarities, dtype=np.float64).reshape(-1, 1)
    gaps = None
    if age_gap_years is not None:
        gaps = np.array([np.nan if g is None else float(g) for g in age_gap_years])
    weights = photo_weights(quality, len(sims))
    identity = None
    if identity_similarities is not None:
        identity = np.asarray(identity_similarities, dtype=np.float64).reshape(-1, 1)
    return float(_relative_log10_lrs(relation, sims, [candidate_sex], calibration, weights, gaps, identity)[0])


def fuse(relative_log10_lrs: np.ndarray | Sequence[float], weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """Fused log10 LR: sum over relatives (axis 0) of weight x log10 LR."""
    return np.asarray(weights, dtype=np.float64) @ np.asarray(relative_log10_lrs, dtype=np.float64)


def posterior_probability(fused_log10_lr: np.ndarray | float, prior: float) -> np.ndarray:
    """P(candidate is the missing person | evidence) under `prior`, computed without overflow."""
    z = math.log(10.0) * (np.asarray(fused_log10_lr, dtype=np.float64) + math.log10(prior / (1.0 - prior)))
    positive = z >= 0
    e = np.exp(-np.abs(z))
    return np.where(positive, 1.0 / (1.0 + e), e / (1.0 + e))


# --- Every candidate against every relative ----------------------------------------------


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    # Vectors arrive L2-normalised; normalising again costs little and keeps the
    # result a true cosine if a producer rounds or forgets.
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0.0, 1.0, norms)


@dataclass(frozen=True)
class _Space:
    """The candidates' records that have a vector in one space, sorted by candidate."""

    name: str
    vectors: np.ndarray  # (records, dimension), unit rows
    owner: np.ndarray  # (records,) candidate index, non-decreasing
    record_ids: list[str]

    @classmethod
    def of(cls, name: str, records: Sequence[GalleryRecord], owners: Sequence[int], attribute: str) -> _Space:
        rows = [(o, r) for o, r in zip(owners, records, strict=True) if getattr(r, attribute) is not None]
        if not rows:
            return cls(name, np.zeros((0, 0)), np.zeros(0, dtype=int), [])
        vectors = _unit_rows(np.stack([np.asarray(getattr(r, attribute), dtype=np.float64) for _, r in rows]))
        return cls(name, vectors, np.array([o for o, _ in rows]), [r.record_id for _, r in rows])

    def best_per_candidate(self, queries: np.ndarray, candidates: int, who: str) -> tuple[np.ndarray, np.ndarray]:
        """(photos, candidates) best cosine (NaN: no record) and the record index giving it (-1: none)."""
        photos = len(queries)
        best = np.full((photos, candidates), np.nan)
        arg = np.full((photos, candidates), -1, dtype=int)
        if not len(self.record_ids):
            return best, arg
        if queries.shape[1] != self.vectors.shape[1]:
            raise FailedPrecondition(
                f"gallery records have {self.vectors.shape[1]} values in the {self.name} space but the photos' "
                f"embeddings of {who} {queries.shape[1]}; the gallery and the embedder disagree on the model"
            )
        sims = np.clip(_unit_rows(queries) @ self.vectors.T, -1.0, 1.0)  # (photos, records)
        n = len(self.record_ids)
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        sizes = np.diff(np.append(starts, n))
        segment_best = np.maximum.reduceat(sims, starts, axis=1)
        reaches = sims == np.repeat(segment_best, sizes, axis=1)
        columns = np.broadcast_to(np.arange(n), sims.shape)
        first = np.minimum.reduceat(np.where(reaches, columns, n), starts, axis=1)
        present = self.owner[starts]
        best[:, present] = segment_best
        arg[:, present] = first
        return best, arg


def _agreed_sex(records: Sequence[GalleryRecord]) -> Sex:
    sexes = {r.attributes.sex for r in records} - {Sex.UNSPECIFIED}
    return sexes.pop() if len(sexes) == 1 else Sex.UNSPECIFIED


@dataclass(frozen=True)
class CandidateScores:
    """Every candidate's per-relative evidence and fused score, as arrays.

    Column c is candidate `person_ids[c]`; row r is relative r. Evidence objects are
    only built for the candidates that are returned (see `rank`, `candidate`).
    """

    relatives: tuple[RelativeFaces, ...]
    person_ids: list[str]
    config: ScoringConfig
    similarity: np.ndarray  # (relatives, candidates): best cosine in the relative's space, 0 without a record
    photo_index: np.ndarray  # (relatives, candidates): the relative's photo that gave it
    record_ids: np.ndarray  # (relatives, candidates) of str: the candidate's record that gave it ("" none)
    calibrations: np.ndarray  # (relatives, candidates) of str: calibration used ("" when uncalibrated)
    similarity_model_ids: tuple[str, ...]  # (relatives,): whose similarity it is
    retrieved: np.ndarray  # (relatives, candidates): bool, the relative's search found the candidate
    relative_log10_lr: np.ndarray  # (relatives, candidates)
    weights: np.ndarray  # (relatives,): fusion weights
    log10_lr: np.ndarray  # (candidates,): fused
    posterior: np.ndarray  # (candidates,)
    strong: np.ndarray  # (candidates,) bool
    score: np.ndarray  # (candidates,): what ranks (fused log10 LR, or mean cosine when uncalibrated)
    attributes: Mapping[str, PersonAttributes] = field(default_factory=dict)  # by record id
    first_record: tuple[str, ...] = ()  # (candidates,)
    facts: tuple[tuple[FactEvidence, ...], ...] = ()  # (candidates,): soft-fact penalties, see apply_soft_facts

    def __len__(self) -> int:
        return len(self.person_ids)


def score_candidates(
    relatives: Sequence[RelativeFaces],
    records: Sequence[GalleryRecord],
    retrieved_by: Mapping[str, set[int]] | None = None,
    config: ScoringConfig = ScoringConfig(),
    *,
    model_id: str = "",
) -> CandidateScores:
    """Scores every person that has records against every relative, then fuses (see the module docstring).

    `records` are the candidates' gallery records that passed the filter, with their
    identity (`embedding`) and kinship (`kinship_embedding`) vectors where the gallery
    holds them. `retrieved_by[person_id]` holds the indices (into `relatives`) of the
    relatives whose own search returned that person; it only sets `retrieved`.
    `model_id` is the identity model used (for the evidence's similarity_model_id when
    no artifact names it).
    """
    retrieved_by = retrieved_by or {}
    relatives = tuple(relatives)
    ordered = sorted(records, key=lambda r: (r.person_id, r.record_id))
    person_ids = sorted({r.person_id for r in ordered})
    index = {p: c for c, p in enumerate(person_ids)}
    owners = [index[r.person_id] for r in ordered]
    n_rel, n_cand = len(relatives), len(person_ids)
    identity_model = config.identity_model_id or model_id

    by_person: dict[str, list[GalleryRecord]] = {}
    for record in ordered:
        by_person.setdefault(record.person_id, []).append(record)
    sexes = [_agreed_sex(by_person[p]) for p in person_ids]
    spaces = {
        "identity": _Space.of("identity", ordered, owners, "embedding"),
        "kinship": _Space.of("kinship", ordered, owners, "kinship_embedding"),
    }

    similarity = np.zeros((n_rel, n_cand))
    photo_index = np.zeros((n_rel, n_cand), dtype=int)
    record_ids = np.full((n_rel, n_cand), "", dtype=object)
    calibrations = np.full((n_rel, n_cand), "", dtype=object)
    relative_llr = np.zeros((n_rel, n_cand))
    model_ids: list[str] = []
    columns = np.arange(n_cand)
    for r, rel in enumerate(relatives):
        relation = rel.relative.relation
        kin_space = config.calibrated and relation is not Relation.SELF
        who = f"relative '{rel.relative.label}'"
        if kin_space and rel.kinship is None:
            raise FailedPrecondition(
                f"{who} has no kinship vectors; the embedder must embed with the kinship model "
                f"{config.kinship_model_id} as well"
            )
        queries = rel.kinship if kin_space else rel.embeddings
        space = spaces["kinship" if kin_space else "identity"]
        model_ids.append(config.kinship_model_id if kin_space else identity_model)
        if n_cand == 0 or rel.photo_count == 0:
            continue
        best, arg = space.best_per_candidate(np.asarray(queries, dtype=np.float64), n_cand, who)
        best_photo = np.where(np.isnan(best), -np.inf, best).argmax(axis=0)  # first max
        has = ~np.isnan(best[0])
        similarity[r] = np.where(has, best[best_photo, columns], 0.0)
        photo_index[r] = np.where(has, best_photo, 0)
        record_ids[r] = [space.record_ids[k] if k >= 0 else "" for k in arg[best_photo, columns]]
        if config.calibrated:
            assert config.calibration is not None
            by_sex = {sex: cal.calibration_name(relation, sex, config.calibration) for sex in set(sexes)}
            calibrations[r] = [by_sex[s] for s in sexes]
            per_photo = photo_weights(rel.quality, rel.photo_count, rel.embeddings)
            # A kin relation's calibration may weigh the identity cosine of the same faces as a
            # second witness: the best identity cosine of each photo over the candidate's records.
            identity_best = None
            if kin_space:
                identity_best, _ = spaces["identity"].best_per_candidate(
                    np.asarray(rel.embeddings, dtype=np.float64), n_cand, who
                )
            relative_llr[r] = _relative_log10_lrs(
                relation, best, sexes, config.calibration, per_photo, rel.age_gap_years, identity_best
            )

    if config.calibrated:
        weights = fusion_weights([rel.relative.relation for rel in relatives])
        fused = fuse(relative_llr, weights) if n_rel else np.zeros(n_cand)
        posterior = posterior_probability(fused, config.prior_probability)
        strong = fused >= config.strong_candidate_log10_lr
        score = fused
    else:
        weights = np.full(n_rel, 1.0 / n_rel if n_rel else 0.0)
        fused = np.zeros(n_cand)
        posterior = np.full(n_cand, config.prior_probability)
        strong = np.zeros(n_cand, dtype=bool)
        score = similarity.mean(axis=0) if n_rel else np.zeros(n_cand)  # every relative weighs the same

    retrieved = np.zeros((n_rel, n_cand), dtype=bool)
    for person_id, owners_of in retrieved_by.items():
        c = index.get(person_id)
        if c is not None:
            for r in owners_of:
                retrieved[r, c] = True
    return CandidateScores(
        relatives=relatives,
        person_ids=person_ids,
        config=config,
        similarity=similarity,
        photo_index=photo_index,
        record_ids=record_ids,
        calibrations=calibrations,
        similarity_model_ids=tuple(model_ids),
        retrieved=retrieved,
        relative_log10_lr=relative_llr,
        weights=weights,
        log10_lr=fused,
        posterior=posterior,
        strong=strong,
        score=score,
        attributes={r.record_id: r.attributes for r in ordered},
        first_record=tuple(by_person[p][0].record_id for p in person_ids),
    )


def candidate(scores: CandidateScores, c: int, rank: int) -> RankedCandidate:
    """Candidate `c` (a column) as the answer shows it, with one evidence entry per relative in order."""
    evidence = tuple(
        RelativeEvidence(
            label=rel.relative.label,
            relation=rel.relative.relation,
            similarity=float(scores.similarity[r, c]),
            photo_index=int(scores.photo_index[r, c]),
            record_id=str(scores.record_ids[r, c]),
            retrieved=bool(scores.retrieved[r, c]),
            log10_likelihood_ratio=float(scores.relative_log10_lr[r, c]),
            fusion_weight=float(scores.weights[r]),
            similarity_model_id=scores.similarity_model_ids[r],
            calibration=str(scores.calibrations[r, c]),
        )
        for r, rel in enumerate(scores.relatives)
    )
    # Attributes come from the record that gave the strongest evidence (the most
    # weighted log10 LR when calibrated, the highest similarity otherwise).
    strength = scores.weights * scores.relative_log10_lr[:, c] if scores.config.calibrated else scores.similarity[:, c]
    record_id = scores.first_record[c]
    for r in np.argsort(-strength, kind="stable"):
        if scores.record_ids[r, c]:
            record_id = str(scores.record_ids[r, c])
            break
    return RankedCandidate(
        person_id=scores.person_ids[c],
        rank=rank,
        score=float(scores.score[c]),
        attributes=scores.attributes.get(record_id, PersonAttributes()),
        evidence=evidence,
        log10_likelihood_ratio=float(scores.log10_lr[c]),
        posterior_probability=float(scores.posterior[c]),
        strong_candidate=bool(scores.strong[c]),
        facts=scores.facts[c] if scores.facts else (),
    )


def rank(scores: CandidateScores, top_n: int) -> tuple[RankedCandidate, ...]:
    """Best first (ties by person id), ranks from 1, at most `top_n`, with evidence per relative."""
    order = sorted(range(len(scores)), key=lambda c: (-scores.score[c], scores.person_ids[c]))[:top_n]
    return tuple(candidate(scores, c, position) for position, c in enumerate(order, start=1))


# --- Soft facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftFacts:
    """The soft part of what is known: a window and regions a candidate may lie outside, at a price."""

    birth_year_min: int | None = None
    birth_year_max: int | None = None
    regions: tuple[str, ...] = ()
    birth_year_log10_lr_per_year: float = SOFT_BIRTH_YEAR_LOG10_LR_PER_YEAR
    region_log10_lr: float = SOFT_REGION_LOG10_LR

    @property
    def any(self) -> bool:
        return self.birth_year_min is not None or self.birth_year_max is not None or bool(self.regions)

    def _window(self) -> str:
        low = "" if self.birth_year_min is None else str(self.birth_year_min)
        high = "" if self.birth_year_max is None else str(self.birth_year_max)
        return low if low == high else f"{low}-{high}"

    def of(self, attributes: PersonAttributes) -> tuple[FactEvidence, ...]:
        """The penalties one record's attributes earn (none inside, or where the fact is unknown)."""
        facts = []
        year = attributes.birth_year
        if year is not None and (self.birth_year_min is not None or self.birth_year_max is not None):
            below = self.birth_year_min - year if self.birth_year_min is not None else 0
            above = year - self.birth_year_max if self.birth_year_max is not None else 0
            outside = max(below, above, 0)
            if outside:
                facts.append(
                    FactEvidence(
                        fact="birth_year",
                        detail=f"born {year}, {outside} year(s) outside {self._window()}",
                        log10_likelihood_ratio=outside * self.birth_year_log10_lr_per_year,
                        years_outside=outside,
                    )
                )
        if self.regions and attributes.region and attributes.region not in self.regions:
            facts.append(
                FactEvidence(
                    fact="region",
                    detail=f"region {attributes.region} outside {', '.join(self.regions)}",
                    log10_likelihood_ratio=self.region_log10_lr,
                )
            )
        return tuple(facts)


def apply_soft_facts(scores: CandidateScores, soft: SoftFacts, records: Sequence[GalleryRecord]) -> CandidateScores:
    """Adds each candidate's soft-fact penalties to its fused log10 LR (and its score when calibrated).

    A person with several records takes the one that fits best (smallest penalty): one
    record registered correctly is enough. Uncalibrated, the score is a cosine, not a
    log10 LR, so the penalty is shown and added to the (zero) log10 LR but ranks nothing.
    """
    if not soft.any or not len(scores):
        return scores
    by_person: dict[str, tuple[FactEvidence, ...]] = {}
    for record in records:
        facts = soft.of(record.attributes)
        known = by_person.get(record.person_id)
        if known is None or sum(f.log10_likelihood_ratio for f in facts) > sum(f.log10_likelihood_ratio for f in known):
            by_person[record.person_id] = facts
    facts = tuple(by_person.get(p, ()) for p in scores.person_ids)
    penalty = np.array([sum(f.log10_likelihood_ratio for f in fs) for fs in facts], dtype=np.float64)
    fused = scores.log10_lr + penalty
    config = scores.config
    return dataclasses.replace(
        scores,
        log10_lr=fused,
        score=fused if config.calibrated else scores.score,
        posterior=posterior_probability(fused, config.prior_probability) if config.calibrated else scores.posterior,
        strong=fused >= config.strong_candidate_log10_lr if config.calibrated else scores.strong,
        facts=facts,
    )
