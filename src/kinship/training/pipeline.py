"""`kinship eval` and `kinship train`: cross-validated training, calibration and measurement.

The protocol keeps every held-out fold out of everything that is fitted for it:

    for each test fold f (train on the other folds T):
      for each inner fold g in T:                       cross-fitting, for calibration
        learn a projection on T \\ {g}; score fold g's pairs   -> out-of-fold scores of T
      fit each relation's calibration on those out-of-fold scores of T
      choose each relation's accuracy threshold on the same calibrated scores of T
      learn the projection on all of T; build the served ONNX network from it
      run that network on fold f's aligned faces        (what is measured is what is served)
      score fold f's pairs through the ranker's calibration code -> verification, calibration
      rank every parent of f against all of f's children and other parents -> retrieval

The feature standardisation (mean and scale) is computed from T's images only. The
zero-shot baseline of the same run is the served identity model's cosine on the same
crops, calibrated on T's scores (it learns nothing else from T).

`kinship train` measures the same way (on the folds asked for), then learns the
served projection on every fold and calibrates it on out-of-fold scores of every
pair (a projection per fold, each scoring the fold it did not see), and writes the
artifact.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime

from kinship.artifacts import Calibration, RelationCalibration, write_artifact
from kinship.domain.people import Relation, sex_from_name
from kinship.ranker import public as ranker_calibration

from . import metrics
from .dataset import RELATION_CODES, KinshipDataset
from .features import AlignedFaces, Features
from .network import kinship_network
from .trainer import Projection, TrainParams, train_projection

Report = Callable[[str], None]

#: How many identity-space impostor pairs the SELF calibration samples.
SELF_IMPOSTORS = 4000
#: Gallery sizes at which candidate recall is measured, and the hits kept per search.
RECALL_GALLERY_SIZES = (1_000, 100_000)
RECALL_TOP_K = 100


@dataclass
class Prepared:
    """A data set's faces, aligned by the served pipeline, with their features."""

    dataset: KinshipDataset
    identity_model_id: str
    identity_onnx: object  # onnx.ModelProto of the identity model, constants folded
    aligned: AlignedFaces
    features: Features
    seconds: float


# -- calibration -----------------------------------------------------------------------


def _bound(log10_lrs: np.ndarray) -> float:
    """The largest |log10 LR| the calibration data itself reached (0.5% and 99.5% quantiles), at least 0.5."""
    low, high = np.quantile(log10_lrs, [0.005, 0.995])
    return float(max(0.5, abs(low), abs(high)))


def fit_relation(name: str, model: str, scores: np.ndarray, labels: np.ndarray, fitted_on: str) -> RelationCalibration:
    """`scores` (n,) of the model's similarity, or (n, 2) with the identity similarity as a second column."""
    slopes, intercept = metrics.fit_linear_logistic(scores, labels)
    design = scores[:, None] if scores.ndim == 1 else scores
    return RelationCalibration(
        name=name,
        model=model,
        slope=float(slopes[0]),
        identity_slope=float(slopes[1]) if len(slopes) > 1 else 0.0,
        intercept=intercept,
        max_abs_log10_lr=_bound((design @ slopes + intercept) / metrics.LN10),
        fitted_on=fitted_on,
        kin_pairs=int(np.sum(labels)),
        non_kin_pairs=int(len(labels) - np.sum(labels)),
    )


def fit_kin_calibrations(
    dataset: KinshipDataset, pair_indices: Sequence[int], scores: np.ndarray, described: str
) -> dict[str, RelationCalibration]:
    """Per relation code, pooled per parent, and the sibling calibration (own data or borrowed)."""
    pairs = [dataset.pairs[i] for i in pair_indices]
    labels = np.array([p.kin for p in pairs], dtype=float)
    codes = np.array([p.relation for p in pairs])
    groups: dict[str, np.ndarray] = {}
    for code in sorted(set(codes)):
        groups[RELATION_CODES[code].calibration] = codes == code
    for parent in ("father", "mother"):
        members = np.isin(codes, [c for c, r in RELATION_CODES.items() if r.relative == parent])
        if members.any():
            groups[parent] = members
    sibling_codes = [c for c, r in RELATION_CODES.items() if r.relative in ("brother", "sister")]
    own_siblings = np.isin(codes, sibling_codes)
    calibrations = {
        name: fit_relation(name, "kinship", scores[m], labels[m], f"{described}: {name} pairs")
        for name, m in groups.items()
    }
    if own_siblings.any():
        calibrations["sibling"] = fit_relation(
            "sibling", "kinship", scores[own_siblings], labels[own_siblings], f"{described}: sibling pairs"
        )
    else:
        everything = np.ones(len(pairs), dtype=bool)
        calibrations["sibling"] = fit_relation(
            "sibling",
            "kinship",
            scores[everything],
            labels[everything],
            f"borrowed from all parent-child pairs ({described}); the data set has no sibling pairs",
        )
    return calibrations


def fit_self_calibration(features: Features, images: Sequence[int], seed: int) -> RelationCalibration:
    """RELATION_SELF on identity cosine: two views of one face against faces of two different images.

    The data holds no photos of one person years apart, so "same person" is two
    different (augmented) views of one photo: optimistic, which is why the ranker
    halves SELF evidence with every `self_age_gap_half_life_years` of age gap.
    """
    rng = np.random.default_rng(seed)
    images = np.asarray(sorted(images))
    identity = features.identity
    other_view = 2 if identity.shape[1] > 2 else 1
    genuine = np.einsum("nd,nd->n", identity[images, 0], identity[images, other_view])
    a = rng.choice(images, SELF_IMPOSTORS)
    b = rng.choice(images, SELF_IMPOSTORS)
    keep = a != b
    impostor = np.einsum("nd,nd->n", identity[a[keep], 0], identity[b[keep], 0])
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    return fit_relation(
        "self",
        "identity",
        scores,
        labels,
        "identity cosine of two views of one photo vs two different photos (no cross-age pairs in the data)",
    )


def _calibration_id(relations: dict[str, RelationCalibration]) -> str:
    import hashlib
    import json

    text = json.dumps({k: vars(v) for k, v in sorted(relations.items())}, sort_keys=True, default=float)
    return "cal-" + hashlib.sha256(text.encode()).hexdigest()[:12]


CALIBRATION_METHOD = (
    "linear logistic per relation (log LR = slope x kinship cosine + identity_slope x identity cosine + intercept, "
    "classes weighed equally), "
    "fitted on out-of-fold scores; bounded to the range the fitting data reached"
)


def make_calibration(relations: dict[str, RelationCalibration]) -> Calibration:
    return Calibration(calibration_id=_calibration_id(relations), method=CALIBRATION_METHOD, relations=relations)


# -- scoring through the ranker's code ------------------------------------------------------


_RELATIVE = {
    "father": Relation.FATHER,
    "mother": Relation.MOTHER,
    "brother": Relation.BROTHER,
    "sister": Relation.SISTER,
}


def pair_log10_lr(calibration: Calibration, code: str, similarity: np.ndarray) -> np.ndarray:
    """What the ranker says of a relative-candidate pair for this relation code (its own calibration code).

    `similarity` is (kinship cosine, identity cosine), or the one cosine of a one-input calibration.
    """
    meaning = RELATION_CODES[code]
    name = ranker_calibration.calibration_name(
        _RELATIVE[meaning.relative], sex_from_name(meaning.person_sex), calibration
    )
    values = np.atleast_1d(similarity)
    return ranker_calibration.log10_lr(calibration.get(name), values[0], values[1] if len(values) > 1 else None)


def _pair_cosines(vectors: np.ndarray, dataset: KinshipDataset, indices: Sequence[int]) -> np.ndarray:
    return np.array([float(vectors[dataset.pairs[i].relative] @ vectors[dataset.pairs[i].person]) for i in indices])


# -- the served network -------------------------------------------------------------------------


def served_embeddings(
    prepared: Prepared, projection: Projection, images: Sequence[int], threads: int = 2
) -> np.ndarray:
    """Kinship vectors of `images` from the ONNX network built for `projection`, run as the embedder runs it.

    Also checks that the network agrees with the projection applied to the training
    features (a broken export fails here, not in production).
    """
    network = kinship_network(prepared.identity_onnx, projection.mean, projection.inv_scale, projection.matrix)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(network, sess_options=options, providers=["CPUExecutionProvider"])
    images = list(images)
    out = np.zeros((len(prepared.dataset.images), projection.matrix.shape[1]), np.float32)
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        blob = prepared.aligned.crops[chunk].astype(np.float32)[..., ::-1].transpose(0, 3, 1, 2)
        out[chunk] = session.run(["embedding"], {"data": np.ascontiguousarray(blob)})[0]
    expected = projection.embed(prepared.features.pooled[images][:, :2])
    agreement = float(np.min(np.einsum("nd,nd->n", out[images], expected)))
    if agreement < 0.999:
        raise RuntimeError(f"the exported network disagrees with the trained projection (cosine {agreement:.5f})")
    return out


# -- cross-validation ------------------------------------------------------------------------------


@dataclass
class FoldResult:
    fold: int
    pair_indices: list[int]
    log10_lr: np.ndarray  # per test pair, the model
    baseline_log10_lr: np.ndarray
    scores: np.ndarray  # kinship cosine per test pair
    baseline_scores: np.ndarray
    thresholds: dict[str, float]  # per relation code, on log10 LR
    baseline_thresholds: dict[str, float]
    retrieval_rows: list[np.ndarray] = field(default_factory=list)
    retrieval_truth: list[np.ndarray] = field(default_factory=list)
    baseline_rows: list[np.ndarray] = field(default_factory=list)
    recall: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def _pairs_in(dataset: KinshipDataset, folds: Sequence[int]) -> list[int]:
    return [i for i, p in enumerate(dataset.pairs) if p.fold in folds]


def _images_in(dataset: KinshipDataset, folds: Sequence[int]) -> list[int]:
    return sorted({x for p in dataset.pairs if p.fold in folds for x in (p.relative, p.person)})


def _train(prepared: Prepared, folds: Sequence[int], params: TrainParams, seed: int) -> Projection:
    dataset = prepared.dataset
    kin = [(p.relative, p.person) for p in dataset.pairs if p.fold in folds and p.kin]
    return train_projection(prepared.features.pooled, _images_in(dataset, folds), kin, params, seed)


def _with_identity(prepared: Prepared, params: TrainParams, kin: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """(n, 2) kinship and identity cosines, or (n,) kinship alone when identity evidence is off."""
    if not params.identity_evidence:
        return kin
    return np.stack([kin, _pair_cosines(_identity(prepared), prepared.dataset, indices)], axis=1)


def out_of_fold_scores(
    prepared: Prepared, folds: Sequence[int], params: TrainParams, seed: int
) -> tuple[list[int], np.ndarray]:
    """Every pair of `folds` scored by a projection learned on the other folds of `folds` (cross-fitting).

    Rows are (kinship cosine, identity cosine) per pair (see `_with_identity`).
    """
    dataset = prepared.dataset
    indices: list[int] = []
    scores: list[np.ndarray] = []
    for held in folds:
        projection = _train(prepared, [f for f in folds if f != held], params, seed + held)
        vectors = projection.embed(prepared.features.pooled[:, :2])
        held_pairs = _pairs_in(dataset, [held])
        indices += held_pairs
        scores.append(_with_identity(prepared, params, _pair_cosines(vectors, dataset, held_pairs), held_pairs))
    return indices, np.concatenate(scores)


def _thresholds(dataset: KinshipDataset, indices: list[int], log10_lr: np.ndarray) -> dict[str, float]:
    codes = np.array([dataset.pairs[i].relation for i in indices])
    labels = np.array([dataset.pairs[i].kin for i in indices])
    return {
        code: metrics.best_accuracy_threshold(log10_lr[codes == code], labels[codes == code]) for code in set(codes)
    }


def _calibrated(
    dataset: KinshipDataset, calibration: Calibration, indices: list[int], scores: np.ndarray
) -> np.ndarray:
    return np.array(
        [pair_log10_lr(calibration, dataset.pairs[i].relation, s)[()] for i, s in zip(indices, scores, strict=True)]
    )


def _identity(prepared: Prepared) -> np.ndarray:
    return prepared.features.identity[:, 0]  # view 0: the aligned crop, exactly what the embedder serves


def evaluate_fold(
    prepared: Prepared, fold: int, params: TrainParams, seed: int, rng: np.random.Generator
) -> FoldResult:
    started = time.perf_counter()
    dataset = prepared.dataset
    training = [f for f in dataset.folds if f != fold]
    # Calibration and thresholds from out-of-fold scores of the training folds only.
    oof_indices, oof_scores = out_of_fold_scores(prepared, training, params, seed)
    calibration = make_calibration(fit_kin_calibrations(dataset, oof_indices, oof_scores, f"folds {training}"))
    thresholds = _thresholds(dataset, oof_indices, _calibrated(dataset, calibration, oof_indices, oof_scores))

    identity = _identity(prepared)
    train_pairs = _pairs_in(dataset, training)
    baseline_cal = make_calibration(
        fit_kin_calibrations(dataset, train_pairs, _pair_cosines(identity, dataset, train_pairs), "baseline")
    )
    baseline_thresholds = _thresholds(
        dataset,
        train_pairs,
        _calibrated(dataset, baseline_cal, train_pairs, _pair_cosines(identity, dataset, train_pairs)),
    )

    projection = _train(prepared, training, params, seed + 100 * fold)
    test_images = _images_in(dataset, [fold])
    vectors = served_embeddings(prepared, projection, test_images, threads=params.threads)
    test_pairs = _pairs_in(dataset, [fold])
    scores = _with_identity(prepared, params, _pair_cosines(vectors, dataset, test_pairs), test_pairs)
    baseline_scores = _pair_cosines(identity, dataset, test_pairs)
    result = FoldResult(
        fold=fold,
        pair_indices=test_pairs,
        log10_lr=_calibrated(dataset, calibration, test_pairs, scores),
        baseline_log10_lr=_calibrated(dataset, baseline_cal, test_pairs, baseline_scores),
        scores=scores,
        baseline_scores=baseline_scores,
        thresholds=thresholds,
        baseline_thresholds=baseline_thresholds,
    )
    _retrieval(prepared, fold, calibration, vectors, identity, result, rng, params.identity_evidence)
    result.seconds = time.perf_counter() - started
    return result


def _retrieval(
    prepared: Prepared,
    fold: int,
    calibration: Calibration,
    vectors: np.ndarray,
    identity: np.ndarray,
    result: FoldResult,
    rng: np.random.Generator,
    identity_evidence: bool,
) -> None:
    """Every parent of the fold as a probe against all its children and all its other parents."""
    dataset = prepared.dataset
    kin_pairs = [p for p in dataset.pairs if p.fold == fold and p.kin]
    children = sorted({p.person for p in kin_pairs})
    parents = sorted({p.relative for p in kin_pairs})
    sex_of = {p.person: RELATION_CODES[p.relation].person_sex for p in kin_pairs}
    sex_of.update(
        {p.relative: "male" if RELATION_CODES[p.relation].relative == "father" else "female" for p in kin_pairs}
    )
    for pair in kin_pairs:
        gallery = children + [x for x in parents if x != pair.relative]
        similarity = vectors[gallery] @ vectors[pair.relative]
        identity_similarity = identity[gallery] @ identity[pair.relative] if identity_evidence else similarity
        relative = _RELATIVE[RELATION_CODES[pair.relation].relative]
        llr = np.array(
            [
                ranker_calibration.log10_lr(
                    calibration.get(
                        ranker_calibration.calibration_name(relative, sex_from_name(sex_of[g]), calibration)
                    ),
                    s,
                    i,
                )[()]
                for g, s, i in zip(gallery, similarity, identity_similarity, strict=True)
            ]
        )
        result.retrieval_rows.append(llr)
        result.retrieval_truth.append(np.array([g == pair.person for g in gallery]))
        result.baseline_rows.append(identity[gallery] @ identity[pair.relative])
    result.recall = candidate_recall(vectors, identity, kin_pairs, children + parents, rng)


def _synthetic(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors from a Gaussian with the real vectors' mean and covariance (distractor faces)."""
    mean = real.mean(axis=0)
    covariance = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    draws = rng.multivariate_normal(mean, covariance, size=count, method="cholesky").astype(np.float32)
    return draws / np.linalg.norm(draws, axis=1, keepdims=True)


def candidate_recall(
    vectors: np.ndarray, identity: np.ndarray, kin_pairs: list, real_gallery: list[int], rng: np.random.Generator
) -> dict[str, dict[str, float]]:
    """Share of probes whose true child is among the candidates, with synthetic distractors up to each gallery size.

    Candidates are what the ranker gathers: the top RECALL_TOP_K of the identity
    search, of the kinship search, and their union.
    """
    out: dict[str, dict[str, float]] = {}
    probes = [p.relative for p in kin_pairs]
    truth = [real_gallery.index(p.person) for p in kin_pairs]
    for size in RECALL_GALLERY_SIZES:
        extra = max(0, size - len(real_gallery))
        kin_gallery = np.concatenate([vectors[real_gallery], _synthetic(vectors[real_gallery], extra, rng)])
        id_gallery = np.concatenate([identity[real_gallery], _synthetic(identity[real_gallery], extra, rng)])
        found = {"identity": [], "kinship": [], "union": []}
        for probe, true_index in zip(probes, truth, strict=True):
            kin_sim = kin_gallery @ vectors[probe]
            id_sim = id_gallery @ identity[probe]
            kin_sim[real_gallery.index(probe)] = -np.inf  # the probe is not its own candidate
            id_sim[real_gallery.index(probe)] = -np.inf
            in_kin = true_index in np.argpartition(-kin_sim, RECALL_TOP_K)[:RECALL_TOP_K]
            in_id = true_index in np.argpartition(-id_sim, RECALL_TOP_K)[:RECALL_TOP_K]
            found["kinship"].append(in_kin)
            found["identity"].append(in_id)
            found["union"].append(in_kin or in_id)
        out[str(size)] = {name: float(np.mean(hits)) for name, hits in found.items()}
    return out


# -- summaries ---------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(dataset: KinshipDataset, folds: list[FoldResult], baseline: bool = False) -> dict:
    """The JSON `kinship eval` prints: verification, calibration, retrieval, per relation and mean."""
    verification: dict[str, dict] = {}
    calibration: dict[str, dict] = {}
    for code in dataset.relations:
        aucs, accs, all_llr, all_labels = [], [], [], []
        for result in folds:
            mask = np.array([dataset.pairs[i].relation == code for i in result.pair_indices])
            if not mask.any():
                continue
            labels = np.array([dataset.pairs[i].kin for i in result.pair_indices])[mask]
            llr = (result.baseline_log10_lr if baseline else result.log10_lr)[mask]
            threshold = (result.baseline_thresholds if baseline else result.thresholds)[code]
            aucs.append(metrics.auc(llr, labels))
            accs.append(metrics.accuracy(llr, labels, threshold))
            all_llr.append(llr)
            all_labels.append(labels)
        llr, labels = np.concatenate(all_llr), np.concatenate(all_labels)
        verification[code] = {
            "auc": _mean(aucs),
            "accuracy": _mean(accs),
            # Pooled over the held-out folds (each fold alone has too few non-kin pairs for 1%).
            "tar_at_far_1pct": metrics.tar_at_far(llr, labels, 0.01),
            "pairs": int(len(labels)),
        }
        calibration[code] = {
            "cllr": metrics.cllr(llr, labels),
            "cllr_min": metrics.cllr_min(llr, labels),
            "ece": metrics.expected_calibration_error(llr, labels),
        }
    for table in (verification, calibration):
        keys = list(next(iter(table.values())))
        table["mean"] = {k: _mean([table[c][k] for c in dataset.relations]) for k in keys if k != "pairs"}
    rows = [r for f in folds for r in (f.baseline_rows if baseline else f.retrieval_rows)]
    truth = [t for f in folds for t in f.retrieval_truth]
    retrieval = metrics.retrieval(rows, truth)
    recall_names = "identity" if baseline else "union"
    sizes = folds[0].recall.keys() if folds and folds[0].recall else []
    retrieval["candidate_recall_top100"] = {
        size: _mean([f.recall[size][recall_names] for f in folds]) for size in sizes
    }
    if not baseline:
        retrieval["candidate_recall_top100_by_space"] = {
            size: {name: _mean([f.recall[size][name] for f in folds]) for name in ("identity", "kinship", "union")}
            for size in sizes
        }
    return {"verification": verification, "calibration": calibration, "retrieval": retrieval}


def evaluate(
    prepared: Prepared,
    params: TrainParams,
    folds: Sequence[int],
    seed: int,
    report: Report | None = None,
) -> dict:
    """The whole `kinship eval` result as a dict (JSON keys as documented in docs/kinship.md)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    results = []
    for number, fold in enumerate(folds, start=1):
        result = evaluate_fold(prepared, fold, params, seed, rng)
        results.append(result)
        if report:
            report(f"fold {fold} done ({number}/{len(folds)}) in {result.seconds:.0f}s")
    dataset = prepared.dataset
    model = summarise(dataset, results)
    out: dict = {
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.root),
            "images": len(dataset.images),
            "pairs": len(dataset.pairs),
            "undetected_faces": prepared.aligned.undetected,
        },
        "protocol": {
            "test_folds": list(folds),
            "all_folds": list(dataset.folds),
            "training": params.as_dict(),
            "augmented_views": int(prepared.features.pooled.shape[1] - 2),
            "seed": seed,
            "calibration": CALIBRATION_METHOD,
            "threshold": "best accuracy on the training folds' out-of-fold calibrated scores, per relation",
            "retrieval": "each parent of the test fold vs all its children and all its other parents",
        },
        **model,
        "baseline": {
            "method": f"zero-shot cosine of {prepared.identity_model_id}",
            **summarise(dataset, results, True),
        },
        "held_out": held_out(dataset, results),
        "seconds": {
            "features": round(prepared.seconds, 1),
            "evaluation": round(time.perf_counter() - started, 1),
        },
    }
    return out


def _true_rank(scores: np.ndarray, truth: np.ndarray) -> int:
    """1-based rank of the first true match (ties counted against it, the conservative reading)."""
    best_true = float(np.max(scores[truth]))
    return int(np.sum(scores > best_true) + np.sum((scores == best_true) & ~truth) + 1)


def held_out(dataset: KinshipDataset, folds: list[FoldResult]) -> dict:
    """Every held-out score, for curves (ROC, DET, Tippett, reliability, CMC) drawn from the same run."""
    pairs = []
    for result in folds:
        for k, i in enumerate(result.pair_indices):
            pair = dataset.pairs[i]
            pairs.append(
                {
                    "relation": pair.relation,
                    "fold": pair.fold,
                    "kin": bool(pair.kin),
                    "log10_lr": round(float(result.log10_lr[k]), 6),
                    "baseline_log10_lr": round(float(result.baseline_log10_lr[k]), 6),
                }
            )
    ranks = {
        "model": [_true_rank(r, t) for f in folds for r, t in zip(f.retrieval_rows, f.retrieval_truth, strict=True)],
        "baseline": [_true_rank(r, t) for f in folds for r, t in zip(f.baseline_rows, f.retrieval_truth, strict=True)],
    }
    return {"pairs": pairs, "retrieval_ranks": ranks}


# -- the served artifact ------------------------------------------------------------------------------


def new_artifact_id(now: dt.datetime) -> str:
    return f"kin-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def train_artifact(
    prepared: Prepared,
    params: TrainParams,
    seed: int,
    artifacts_dir,
    *,
    metrics_summary: dict[str, float],
    dataset_digest: str,
    software_version: str,
    activate: bool = True,
    report: Report | None = None,
):
    """Learns the served projection on every fold, calibrates it out-of-fold, writes and activates the artifact."""
    dataset = prepared.dataset
    folds = list(dataset.folds)
    indices, scores = out_of_fold_scores(prepared, folds, params, seed)
    relations = fit_kin_calibrations(dataset, indices, scores, f"{dataset.name} folds {folds}, out-of-fold")
    relations["self"] = fit_self_calibration(prepared.features, range(len(dataset.images)), seed)
    calibration = make_calibration(relations)
    projection = _train(prepared, folds, params, seed)
    network = kinship_network(prepared.identity_onnx, projection.mean, projection.inv_scale, projection.matrix)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    artifact = write_artifact(
        artifacts_dir,
        artifact_id=new_artifact_id(now),
        identity_model_id=prepared.identity_model_id,
        network=network,
        dimension=params.dimension,
        calibration=calibration,
        created_at=now.isoformat().replace("+00:00", "Z"),
        dataset={
            "name": dataset.name,
            "path": str(dataset.root),
            "digest_sha256": dataset_digest,
            "images": len(dataset.images),
            "pairs": len(dataset.pairs),
            "folds_used": folds,
        },
        training={
            **params.as_dict(),
            "seed": seed,
            "augmented_views": int(prepared.features.pooled.shape[1] - 2),
            "method": "linear projection of the identity model's pooled last feature map, symmetric InfoNCE",
        },
        metrics={k: v for k, v in metrics_summary.items() if isinstance(v, float) and math.isfinite(v)},
        software_version=software_version,
        activate=activate,
    )
    if report:
        report(f"artifact {artifact.artifact_id} written to {artifact.path} and activated")
    return artifact


def prepare(
    dataset: KinshipDataset,
    *,
    augmented_views: int,
    seed: int,
    threads: int = 2,
    progress_factory: Callable[[str, int], Callable[[int, int], None]] | None = None,
) -> Prepared:
    """Aligns every face with the served pack's detector and runs the trunk over every view."""
    from kinship.embedder.public import DEFAULT_PACK, load_pack, recognizer_bytes

    from .features import align_dataset, extract_features
    from .network import fold_constants, trunk_model

    started = time.perf_counter()
    pack = load_pack(DEFAULT_PACK, intra_op_threads=threads)
    identity_onnx = fold_constants(recognizer_bytes())
    count = len(dataset.images)
    aligned = align_dataset(dataset, pack, progress_factory("aligning faces", count) if progress_factory else None)
    features = extract_features(
        aligned.crops,
        trunk_model(identity_onnx),
        augmented_views=augmented_views,
        seed=seed,
        threads=threads,
        progress=progress_factory(f"features ({2 + augmented_views} views)", count) if progress_factory else None,
    )
    return Prepared(
        dataset=dataset,
        identity_model_id=pack.spec.model_id,
        identity_onnx=identity_onnx,
        aligned=aligned,
        features=features,
        seconds=time.perf_counter() - started,
    )
