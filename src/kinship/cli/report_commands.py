"""`kinship report ...`: render a saved result as one self-contained HTML page.

    kinship report eval --from eval.json --output eval.html

`report_kinds(subparsers)` gives the `report` group's own sub-parsers, creating the
`report` parser the first time and reusing it after (whichever module registers
first), so other modules (the case report) add their kinds beside `eval`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .groups import command_kinds


def report_kinds(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-parsers of `kinship report`, shared by every module that adds a kind."""
    return command_kinds(subparsers, "report", "write a report as one self-contained HTML page")


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluation = report_kinds(subparsers).add_parser(
        "eval",
        help="the evaluation report from a saved `kinship eval --json` (or `kinship train --json`) result",
        description=(
            "Render ROC, DET, score histograms, reliability, Tippett and CMC figures, model beside baseline, "
            "per relation and overall, from a result saved by `kinship eval --output` or --json."
        ),
    )
    evaluation.add_argument("--from", dest="source", type=Path, required=True, help="the saved JSON result")
    evaluation.add_argument("--output", type=Path, required=True, help="the HTML file to write")
    evaluation.set_defaults(func=run_report_eval)


def write_evaluation_report(result: dict, path: Path) -> None:
    from kinship import software_version
    from kinship.reports.evaluation import render_evaluation_report

    path.write_text(render_evaluation_report(result, software_version=software_version()), encoding="utf-8")


def run_report_eval(args) -> int:
    try:
        result = json.loads(args.source.read_text())
    except (OSError, ValueError) as exc:
        print(f"kinship report eval: cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    # `kinship train --json` nests the evaluation under "evaluation".
    if "verification" not in result and isinstance(result.get("evaluation"), dict):
        result = result["evaluation"]
    if "verification" not in result:
        print(f"kinship report eval: {args.source} is not a `kinship eval --json` result", file=sys.stderr)
        return 2
    write_evaluation_report(result, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
