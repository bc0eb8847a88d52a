"""`kinship bench embed [--json]` (see kinship.bench.embed). Other services add their own `bench` kinds."""

from __future__ import annotations

import argparse
import json
import sys

from .groups import command_kinds


def bench_kinds(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-parsers of `kinship bench`, shared by every module that adds a kind."""
    return command_kinds(subparsers, "bench", "measure a service's speed on this machine")


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = bench_kinds(subparsers).add_parser(
        "embed",
        help="the recognizer alone vs the embedder service over gRPC vs the plain shipped model",
        description=(
            "Measures in one run: (a) the raw recognizer (one onnxruntime session on every core, best batch), "
            "(b) `kinship serve embedder` under concurrency fed pre-aligned crops, and whole photos beside it, "
            "(c) the shipped SFace file in a plain session against the prepared one, (d) Embed and (e) FindRelatives "
            "with two relatives, each with the shipped kinship artifact and without, in alternating rounds. "
            "Run it on an idle machine."
        ),
    )
    embed.add_argument("--seconds", type=float, default=10.0, help="length of each measurement [default 10]")
    embed.add_argument("--concurrency", type=int, default=8, help="callers at once [default 8]")
    embed.add_argument(
        "--kinship-only",
        action="store_true",
        help="only (d) and (e): what the kinship artifact adds to Embed and to FindRelatives",
    )
    embed.add_argument("--json", action="store_true", help="print the result as JSON")
    embed.set_defaults(func=run_bench_embed)


def run_bench_embed(args: argparse.Namespace) -> int:
    from kinship.bench.embed import describe, describe_kinship_cost, run_bench, run_kinship_cost
    from kinship.runtime.logs import configure_logging

    # Model-loading logs go to stderr, warnings only: stdout is the result (JSON with --json).
    configure_logging(level="warning", fmt="console")

    if args.seconds <= 0 or args.concurrency < 1:
        print("kinship bench embed: --seconds must be > 0 and --concurrency >= 1", file=sys.stderr)
        return 2

    def progress(step: str) -> None:
        print(f"kinship bench embed: {step}", file=sys.stderr, flush=True)

    if args.kinship_only:
        result = run_kinship_cost(seconds=args.seconds, progress=progress)
        print(json.dumps(result, indent=2) if args.json else describe_kinship_cost(result))
        return 0
    result = run_bench(seconds=args.seconds, concurrency=args.concurrency, progress=progress)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0
