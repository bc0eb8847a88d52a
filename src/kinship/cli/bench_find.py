"""`kinship bench find --gallery N [--milvus-uri URI] [--families F] [--json]` (see kinship.bench.find)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from .bench_commands import bench_kinds

DEFAULT_DATASET = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fiw-train"


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = bench_kinds(subparsers).add_parser(
        "find",
        help="FindRelatives through the running suite against the exhaustive scorer, on FIW held-out families",
        description=(
            "Starts the suite, builds a gallery of N faces: children of FIW held-out families, real FIW faces "
            "as distractors, then synthetic ones from a Gaussian fitted to real [kinship; identity] vectors; asks "
            "FindRelatives with the father and with both parents, scores every record exhaustively with the "
            "ranker's scorer, and reports served vs exhaustive top 100, the true child's ranks, today's candidate "
            "recall (the per-photo union) and latency. See kinship.bench.find."
        ),
    )
    bench.add_argument("--gallery", type=int, required=True, help="faces in the gallery (families + distractors)")
    bench.add_argument(
        "--milvus-uri",
        default="",
        help="Milvus server URI [default: Milvus Lite in a temporary folder]; the gallery is written into the "
        "default tenant's collections of the shipped models and left there: give it a server of its own",
    )
    bench.add_argument("--families", type=int, default=50, help="held-out families asked about [default 50]")
    bench.add_argument(
        "--dataset", type=Path, default=None, help="FIW folder [default ../shared/data/fiw-train, env KINSHIP_FIW_DIR]"
    )
    bench.add_argument(
        "--real-faces",
        type=int,
        default=None,
        help="at most this many real FIW distractor photos (embedded once, then cached) [default: all that exist]",
    )
    bench.add_argument(
        "--cache",
        type=Path,
        default=Path("~/.cache/kinship-search/bench-find-embeddings.npz").expanduser(),
        help="embeddings cache of FIW photos [default ~/.cache/kinship-search/bench-find-embeddings.npz]",
    )
    bench.add_argument(
        "--family-pool",
        type=int,
        default=None,
        help="the ranker's --family-pool (0: today's per-photo union, for comparison) [default: the ranker's, 1000]",
    )
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--json", action="store_true", help="print the result as JSON")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinship.bench.find import run_bench

    if args.gallery < 1 or args.families < 1:
        print("kinship bench find: --gallery and --families must be at least 1", file=sys.stderr)
        return 2
    dataset = args.dataset or Path(os.environ.get("KINSHIP_FIW_DIR", "") or DEFAULT_DATASET).resolve()

    def progress(step: str) -> None:
        print(f"kinship bench find: {step}", file=sys.stderr, flush=True)

    started = datetime.datetime.now(datetime.UTC)
    result = run_bench(
        gallery_size=args.gallery,
        families=args.families,
        milvus_uri=args.milvus_uri,
        dataset_dir=dataset,
        cache=args.cache,
        real_faces=args.real_faces,
        seed=args.seed,
        progress=progress,
        family_pool_size=args.family_pool,
    )
    result["machine"] = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs"
    result["started_utc"] = started.strftime("%Y-%m-%d %H:%M")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"gallery {result['gallery']} faces ({result['distractors']['real_faces']} real distractors, "
        f"{result['distractors']['synthetic']} synthetic), {result['families']} held-out families, {result['milvus']}"
    )
    for key, title in (
        ("one_parent", "father alone"),
        ("two_parents", "father and mother"),
        ("two_parents_sex_unknown", "father and mother, the child's sex not given"),
    ):
        r = result[key]
        print(
            f"{title}: served vs exhaustive top 100 {r['served_vs_exhaustive_top100']:.3f}; true child in top 10 / 100: "
            f"served {r['served']['true_in_top10']:.2f} / {r['served']['true_in_top100']:.2f}, exhaustive "
            f"{r['exhaustive']['true_in_top10']:.2f} / {r['exhaustive']['true_in_top100']:.2f}; median rank served "
            f"{r['served']['true_rank_median']:g}, exhaustive {r['exhaustive']['true_rank_median']:g}; "
            f"today's candidate recall (per-photo union) {r['today_candidate_recall']:.2f}, family pool "
            f"{r['family_pool_recall']:.2f}; FindRelatives p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms"
        )
    return 0
