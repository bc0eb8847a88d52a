"""`kinship eval` and `kinship train`: measure and make the kinship model.

    kinship eval  --dataset DIR [--folds 1,2,3,4,5] [--json] [--output FILE] [--report eval.html]
    kinship train --dataset DIR [--data-dir D | --artifacts-dir A] [--eval-folds all|none|1,2] [--json]
                  [--report eval.html]

`kinship train` on a FIW folder (images/<family>/<member>/, members.csv, pairs.csv)
trains the v2 model: a kinship head over the identity model's feature map, learned
on FIW training families, calibrated on validation families and measured on test
families (kinship.training.head_training). On a KinFaceW-like folder (pairs.csv with
folds, images/) both commands run the cross-validated v1 protocol. Data sets are read
in place; training needs PyTorch (`pip install 'kinship-search[train]'`). See docs/kinship.md.

    kinship eval --artifact ID|PATH|default --dataset DIR [--aligned] [--json]

measures a fixed artifact on any folder of images/ and pairs.csv (relation,kin,image1,
image2): nothing is fitted there (kinship.training.artifact_eval).
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
#: Epochs of the v2 head on FIW (contrastive batches over all training families each epoch).
FIW_EPOCHS = {"layer": 35, "block": 30}  # measured on validation families (docs/kinship.md)


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
        default=None,
        help=f"training epochs (default {DEFAULTS['epochs']} per projection on KinFaceW-like folders, "
        f"{FIW_EPOCHS['block']} for the block head, {FIW_EPOCHS['layer']} for the layer head on FIW)",
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
    evaluate.add_argument(
        "--artifact",
        metavar="ID|PATH|default",
        help="measure this fixed artifact instead (nothing fitted on --dataset): 'default' is the shipped one",
    )
    evaluate.add_argument(
        "--aligned", action="store_true", help="with --artifact: the images are crops aligned to 112x112 already"
    )
    evaluate.add_argument(
        "--split",
        choices=("test", "validation", "train", "all"),
        default="test",
        help="with --artifact on a FIW folder: the families to draw pairs from (default test: never trained on)",
    )
    evaluate.add_argument("--data-dir", type=Path, help="with --artifact ID: the data directory holding artifacts/")
    evaluate.add_argument("--artifacts-dir", type=Path, help="with --artifact ID: the artifacts folder")
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
    train.add_argument("--rank", type=int, default=16, help="FIW: rank of the head's change of the identity layer")
    train.add_argument(
        "--head",
        choices=("layer", "block"),
        default="block",
        help="FIW: fine-tune SFace's last block and identity layer (block, the shipped head) or the layer only",
    )
    train.add_argument(
        "--max-families", type=int, default=0, help="FIW: train on this many families only (a quick run; 0: all)"
    )
    train.add_argument(
        "--cache-dir",
        type=Path,
        help="FIW: where the feature maps are cached (default <data-dir>/cache; an interrupted run resumes there)",
    )
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
        unit = "epoch" if "epoch" in label else "face"
        bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, mininterval=1.0, leave=True)

        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
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
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be 1 or more")
    if args.augmented_views < 0:
        raise ConfigError("--augmented-views must be 0 or more")
    dataset = load_dataset(args.dataset)
    params = TrainParams(dimension=args.dimension, epochs=args.epochs or DEFAULTS["epochs"], threads=args.threads)
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


def run_eval_artifact(args) -> int:
    from kinship import artifacts
    from kinship.runtime.logs import configure_logging
    from kinship.training.artifact_eval import evaluate_artifact

    configure_logging(level="warning", fmt="console")
    target = args.artifacts_dir or artifacts.default_artifacts_dir(_data_dir(args))
    artifact = artifacts.resolve_artifact(args.artifact, target)
    result = evaluate_artifact(
        artifact,
        args.dataset,
        aligned=args.aligned,
        part=args.split,
        threads=args.threads,
        progress=(_progress_factory(args.quiet) or (lambda _l, _t: None))("faces", 0),
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        d = result["dataset"]
        part = f", {d['part']} families" if d["part"] else ""
        print(
            f"artifact {artifact.artifact_id}{' (shipped)' if artifact.shipped else ''} on {d['path']}{part}: "
            f"{d['pairs']:,} pairs of {d['images']:,} images"
            + (f" ({d['undetected']} without a detected face, resized whole)" if d["undetected"] else "")
        )
        _print_head_result(result)
    return 0


def run_eval(args) -> int:
    from kinship.training import pipeline

    if args.artifact:
        try:
            return run_eval_artifact(args)
        except ConfigError as exc:
            print(f"kinship eval: {exc}", file=sys.stderr)
            return 2
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


def is_fiw(folder: Path) -> bool:
    """A FIW layout (members.csv beside pairs.csv and images/) rather than a KinFaceW-like one."""
    return (folder / "members.csv").is_file() and (folder / "images").is_dir()


def _data_dir(args) -> Path:
    return args.data_dir or Path(os.environ.get("KINSHIP_DATA_DIR") or config.default_data_dir())


def _print_head_result(result: dict, out=sys.stdout) -> None:
    overall, base = result["verification"]["overall"], result["baseline"]["overall"]
    print(
        f"  all relations: AUC {overall['auc']:.3f} (identity cosine {base['auc']:.3f}), mean accuracy of "
        f"fd/fs/md/ms/bb/ss/sibs {overall['mean_accuracy_core']:.3f} (identity {base['mean_accuracy_core']:.3f}), "
        f"TAR@FAR1% {overall['tar_at_far_1pct']:.3f}, Cllr {overall['cllr']:.3f} (min {overall['cllr_min']:.3f})",
        file=out,
    )
    for code, r in result["per_relation"].items():
        if "auc" not in r:
            print(f"  {code}: {r['pairs']} pairs, no calibration", file=out)
            continue
        print(
            f"  {code:<5} AUC {r['auc']:.3f} (identity {r['baseline']['auc']:.3f})  accuracy {r['accuracy']:.3f} "
            f"(identity {r['baseline']['accuracy']:.3f})  TAR@FAR1% {r['tar_at_far_1pct']:.3f}  "
            f"Cllr {r['cllr']:.3f}  [{r['calibration']}, {r['pairs']} pairs]",
            file=out,
        )


def _artifact_summary(artifact, *, active: bool) -> dict:
    """What `kinship train --json` says of the artifact it wrote (both protocols)."""
    return {
        "artifact_id": artifact.artifact_id,
        "path": str(artifact.path),
        "kinship_model_id": artifact.kinship_model_id,
        "identity_model_id": artifact.identity_model_id,
        "calibration_id": artifact.calibration.calibration_id,
        "active": active,
    }


def run_train_fiw(args, target: Path) -> int:
    import datetime as dt

    from kinship import artifacts
    from kinship.embedder.public import DEFAULT_PACK, recognizer_bytes
    from kinship.runtime.logs import configure_logging
    from kinship.training import head_training
    from kinship.training.fiw import load_fiw
    from kinship.training.pipeline import new_artifact_id

    _require_torch()
    configure_logging(level="warning", fmt="console")
    if args.max_families < 0 or args.rank < 1:
        raise ConfigError("--max-families must be 0 or more and --rank 1 or more")
    say = _say(args.quiet)
    dataset = load_fiw(args.dataset)
    if args.max_families:
        dataset = head_training.restrict(dataset, args.max_families)
    params = head_training.HeadParams(
        rank=args.rank,
        epochs=args.epochs or FIW_EPOCHS[args.head],
        seed=args.seed,
        threads=args.threads,
        views=2 + min(args.augmented_views, 1),
        head=args.head,
    )
    if say:
        say(
            f"FIW: {len(dataset.families)} families, {len(dataset.images):,} crops, {len(dataset.pairs):,} kin pairs; "
            f"caching feature maps ({params.views} views) then training the head"
        )
    cache_root = args.cache_dir or (_data_dir(args) / "cache")
    run = head_training.run(
        dataset,
        recognizer_bytes(dynamic_batch=True),
        cache_root,
        params,
        report=say,
        progress_factory=_progress_factory(args.quiet),
    )
    now = dt.datetime.now(dt.UTC)
    artifact = artifacts.write_artifact(
        target,
        artifact_id=new_artifact_id(now),
        identity_model_id=DEFAULT_PACK.model_id,
        network=run.head.onnx(),
        dimension=int(run.head.left.shape[0]),
        calibration=run.calibration,
        created_at=now.isoformat(timespec="seconds"),
        dataset={
            "name": dataset.root.name,
            "kind": "fiw",
            "families": len(dataset.families),
            "images": len(dataset.images),
            "kin_pairs": len(dataset.pairs),
            "digest": head_training.dataset_digest(dataset),
            "split": {part: len(fams) for part, fams in run.split.items()},
            "split_rule": "salted sha256 of the family id (kinship-fiw-split-v1): test 20%, validation 15%",
            "terms": "FIW: non-commercial research and educational use only",
        },
        training={
            **params.as_dict(),
            "method": ("SFace's last block and " if params.head == "block" else "")
            + "identity layer fine-tuned (NT-Xent over family-distinct kin pairs), change cut to rank "
            f"{params.rank}; calibrated on validation families, measured on test families",
            "losses": [round(v, 4) for v in run.head.losses],
            "seconds": round(run.head.seconds, 1),
            "cache_seconds": round(run.cache_seconds, 1),
            "thresholds": run.thresholds,
            "test": run.test,
        },
        metrics=head_training.summary_metrics(run.test) if run.test else {},
        software_version=software_version(),
        activate=not args.no_activate,
        network_kind=artifacts.NETWORK_KIND_HEAD,
        head_inputs=run.head.head_inputs,
        licence=head_training.LICENCE,
    )
    summary = {
        **_artifact_summary(artifact, active=not args.no_activate),
        "calibrations": sorted(artifact.calibration.relations),
        "test": run.test,
    }
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if run.test:
            print(f"held-out test families ({len(run.split['test'])}), never used to fit anything:")
            _print_head_result(run.test)
        state = "active" if not args.no_activate else "written, not active"
        print(f"artifact {artifact.artifact_id} ({state}) in {artifact.path}")
        print(f"  calibrations: {', '.join(sorted(artifact.calibration.relations))}")
        print("  restart the embedder and the ranker (kinship serve ...) to load it")
    return 0


def run_train(args) -> int:
    from kinship import artifacts
    from kinship.training import pipeline

    try:
        target = args.artifacts_dir or artifacts.default_artifacts_dir(_data_dir(args))
        if is_fiw(args.dataset):
            return run_train_fiw(args, target)
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
        **_artifact_summary(artifact, active=not args.no_activate),
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
