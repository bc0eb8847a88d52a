"""`kinship eval` and `kinship train`: measure and make the kinship model.

    kinship eval  --dataset DIR [--folds 1,2,3,4,5] [--json] [--output FILE] [--report eval.html]
    kinship train --dataset DIR [--data-dir D | --artifacts-dir A] [--eval-folds all|none|1,2] [--json]
                  [--report eval.html]

Both read a data set laid out like KinFaceW (pairs.csv with folds, images/), in
place; both need PyTorch (`pip install 'kinship-search[train]'`). See docs/kinship.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from kinship import software_version
from kinship.runtime import config
from kinship.runtime.errors import ConfigError

DEFAULTS = {"epochs": 150, "augmented_views": 8, "dimension": 128, "seed": 0}


def _folds(text: str) -> list[int] | None:
    if text == "all":
        return None
    if text == "none":
        return []
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"folds must be 'all', 'none' or numbers like 1,2,3; got {text!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="folder with pairs.csv (relation,fold,kin,image1,image2) and images/",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS["epochs"],
        help="training epochs per projection (one step each: the whole training set is one batch)",
    )
    parser.add_argument(
        "--augmented-views",
        type=int,
        default=DEFAULTS["augmented_views"],
        help="random variations of each face besides the crop and its mirror",
    )
    parser.add_argument("--dimension", type=int, default=DEFAULTS["dimension"], help="length of kinship vectors")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of every random choice")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="CPU threads to use")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--output", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--report", type=Path, metavar="HTML", help="also write the evaluation report (self-contained HTML) here"
    )


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "eval",
        help="measure the kinship model on a data set's folds (train on the others, test on each)",
        description=(
            "Cross-validated measurement: for each test fold, the projection and its calibration are learned "
            "on the other folds only, the served ONNX network is built and run on the test fold, and pairs are "
            "scored through the ranker's own calibration code. Prints verification, calibration and retrieval "
            "figures beside the zero-shot identity-cosine baseline of the same run."
        ),
    )
    _common(evaluate)
    evaluate.add_argument("--folds", type=_folds, default=None, help="test folds, e.g. 1,3 (default: all)")
    evaluate.set_defaults(func=run_eval)

    train = subparsers.add_parser(
        "train",
        help="train and calibrate the kinship model; write and activate a versioned artifact",
        description=(
            "Measures the model as `kinship eval` does (on --eval-folds), then learns the served projection on "
            "every fold, calibrates it on out-of-fold scores, and writes an artifact (manifest, network, "
            "calibration) into the artifacts folder, marked active. Restart the embedder and ranker to load it."
        ),
    )
    _common(train)
    train.add_argument("--data-dir", type=Path, help="data directory; the artifact goes to <data-dir>/artifacts")
    train.add_argument("--artifacts-dir", type=Path, help="artifacts folder (overrides --data-dir)")
    train.add_argument(
        "--eval-folds", type=_folds, default=None, help="folds to measure before training: all (default), none, or 1,2"
    )
    train.add_argument("--no-activate", action="store_true", help="write the artifact without making it active")
    train.set_defaults(func=run_train)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(
            "training needs PyTorch: pip install 'kinship-search[train]' (torch==2.13.0, the CPU build)"
        ) from None


def _progress_factory(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    def factory(label: str, total: int):
        bar = tqdm(total=total, desc=label, unit="face", file=sys.stderr, mininterval=1.0, leave=True)

        def update(done: int, total: int) -> None:
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return update

    return factory


def _say(quiet: bool):
    return None if quiet else (lambda text: print(f"kinship: {text}", file=sys.stderr, flush=True))


def _prepare(args):
    from kinship.runtime.logs import configure_logging
    from kinship.training import pipeline
    from kinship.training.dataset import load_dataset
    from kinship.training.trainer import TrainParams

    _require_torch()
    # The model pack logs what it loads; keep stdout for the result (--json) alone.
    configure_logging(level="warning", fmt="console")
    for name in ("epochs", "dimension", "threads"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be 1 or more")
    if args.augmented_views < 0:
        raise ConfigError("--augmented-views must be 0 or more")
    dataset = load_dataset(args.dataset)
    params = TrainParams(dimension=args.dimension, epochs=args.epochs, threads=args.threads)
    prepared = pipeline.prepare(
        dataset,
        augmented_views=args.augmented_views,
        seed=args.seed,
        threads=args.threads,
        progress_factory=_progress_factory(args.quiet),
    )
    return dataset, params, prepared


def _check_folds(wanted: list[int] | None, available: tuple[int, ...]) -> list[int]:
    folds = list(available) if wanted is None else wanted
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ConfigError(f"folds {unknown} are not in the data set (it has {list(available)})")
    if len(available) < 3:
        raise ConfigError("the data set needs at least 3 folds (train, calibrate out-of-fold, test)")
    return folds


def _print_summary(result: dict, out=sys.stdout) -> None:
    def row(name: str, part: dict) -> str:
        v, c, r = part["verification"]["mean"], part["calibration"]["mean"], part["retrieval"]
        return (
            f"  {name:<10} accuracy {v['accuracy']:.3f}  AUC {v['auc']:.3f}  TAR@FAR1% {v['tar_at_far_1pct']:.3f}  "
            f"Cllr {c['cllr']:.3f} (min {c['cllr_min']:.3f})  ECE {c['ece']:.3f}  "
            f"mAP {r['map']:.3f}  rank-1 {r['rank1']:.3f}  rank-10 {r['rank10']:.3f}"
        )

    print(f"{result['dataset']['name']}: test folds {result['protocol']['test_folds']}", file=out)
    print(row("kinship", result), file=out)
    print(row("baseline", result["baseline"]), file=out)
    relations = [k for k in result["verification"] if k != "mean"]
    for code in relations:
        v, b = result["verification"][code], result["baseline"]["verification"][code]
        print(
            f"  {code}: accuracy {v['accuracy']:.3f} (baseline {b['accuracy']:.3f}), AUC {v['auc']:.3f} "
            f"(baseline {b['auc']:.3f}), Cllr {result['calibration'][code]['cllr']:.3f}",
            file=out,
        )
    recall = result["retrieval"].get("candidate_recall_top100_by_space", {})
    for size, spaces in recall.items():
        print(
            f"  candidate recall, top 100 of a {int(size):,}-face gallery: identity {spaces['identity']:.3f}, "
            f"kinship {spaces['kinship']:.3f}, both {spaces['union']:.3f}",
            file=out,
        )


def _write_report(args, result: dict | None) -> None:
    if args.report and result:
        from .report_commands import write_evaluation_report

        write_evaluation_report(result, args.report)


def _emit(args, result: dict) -> None:
    _write_report(args, result)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_summary(result)


def run_eval(args) -> int:
    from kinship.training import pipeline

    try:
        dataset, params, prepared = _prepare(args)
        folds = _check_folds(args.folds, dataset.folds)
        if not folds:
            raise ConfigError("--folds names no fold to test")
        result = pipeline.evaluate(prepared, params, folds, args.seed, report=_say(args.quiet))
    except ConfigError as exc:
        print(f"kinship eval: {exc}", file=sys.stderr)
        return 2
    _emit(args, result)
    return 0


def _metrics_summary(result: dict | None) -> dict[str, float]:
    if not result:
        return {}
    v, c, r = result["verification"]["mean"], result["calibration"]["mean"], result["retrieval"]
    return {
        "auc": v["auc"],
        "accuracy": v["accuracy"],
        "tar_at_far_1pct": v["tar_at_far_1pct"],
        "cllr": c["cllr"],
        "cllr_min": c["cllr_min"],
        "ece": c["ece"],
        "map": r["map"],
        "rank1": r["rank1"],
        "rank10": r["rank10"],
        "baseline_auc": result["baseline"]["verification"]["mean"]["auc"],
        "baseline_map": result["baseline"]["retrieval"]["map"],
    }


def run_train(args) -> int:
    from kinship import artifacts
    from kinship.training import pipeline

    try:
        target = args.artifacts_dir or artifacts.default_artifacts_dir(
            args.data_dir or Path(os.environ.get("KINSHIP_DATA_DIR") or config.default_data_dir())
        )
        dataset, params, prepared = _prepare(args)
        folds = _check_folds(args.eval_folds, dataset.folds)
        if args.report and not folds:
            raise ConfigError("--report needs an evaluation: --eval-folds none measures nothing")
        say = _say(args.quiet)
        result = pipeline.evaluate(prepared, params, folds, args.seed, report=say) if folds else None
        if say:
            say("training the served model on every fold")
        artifact = pipeline.train_artifact(
            prepared,
            params,
            args.seed,
            target,
            metrics_summary=_metrics_summary(result),
            dataset_digest=dataset.digest(),
            software_version=software_version(),
            activate=not args.no_activate,
            report=say,
        )
    except ConfigError as exc:
        print(f"kinship train: {exc}", file=sys.stderr)
        return 2
    summary = {
        "artifact_id": artifact.artifact_id,
        "path": str(artifact.path),
        "kinship_model_id": artifact.kinship_model_id,
        "identity_model_id": artifact.identity_model_id,
        "calibration_id": artifact.calibration.calibration_id,
        "active": not args.no_activate,
        "evaluation": result,
    }
    _write_report(args, result)
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if result:
            _print_summary(result)
        state = "active" if not args.no_activate else "written, not active"
        print(f"artifact {artifact.artifact_id} ({state}) in {artifact.path}")
        print(f"  kinship model id {artifact.kinship_model_id}; calibration {artifact.calibration.calibration_id}")
        print("  restart the embedder and the ranker (kinship serve ...) to load it")
    return 0
