"""The `kinship` command: run the services and talk to them.

    kinship serve embedder|indexer|ranker|all [...]
    kinship embed IMAGE [--json]
    kinship enroll PATH... [--person-id ID] [--birth-year Y] [--sex f|m] [--region R] [--json]
    kinship find --relative father=dad.jpg --relative mother=mum.jpg [--json]
    kinship people [--person ID...] [--json] / kinship delete --person ID... [--yes]
    kinship status [--json]

Room is left for `bench`, `loadtest`, `train`, `eval`, `audit` and `certs`: each is a
sub-command module registered in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys

from kinship import software_version
from kinship.loadtest import cli as loadtest_commands

from . import (
    bench_commands,
    bench_find,
    bench_index,
    client_commands,
    gallery_commands,
    report_commands,
    security_commands,
    serve,
    training_commands,
)

#: Sub-command modules; each has `register(subparsers)` that sets `func` on its parser.
#: report_commands last: it reuses a `report` parser another module made (see report_kinds).
COMMANDS = (
    serve,
    client_commands,
    gallery_commands,
    training_commands,
    loadtest_commands,
    bench_commands,
    bench_index,
    bench_find,
    security_commands,
    report_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinship",
        description="Cross-age kinship face search: run the services and query them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {software_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "serve" and argv[1] in serve.SERVICES:
        # A service's flags come from its own settings; argparse sub-parsers with
        # REMAINDER would not pass `--flag` arguments through, so route it directly.
        try:
            return serve.run_one(argv[1], argv[2:])
        except KeyboardInterrupt:
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
