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
import json
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
from . import errors as cli_errors

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


class UsageProblem(SystemExit):
    """An argparse error, raised instead of printed (while `main` parses) so that `--json` can have it as JSON."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(cli_errors.USAGE)
        self.parser = parser
        self.message = message


class KinshipArgumentParser(argparse.ArgumentParser):
    """argparse, whose errors `main` prints: the sub-command's usage, or JSON with --json (exit 2 either way)."""

    #: Set while `main` parses; elsewhere (build_parser() in other code) errors print as argparse's do.
    raising = False

    def error(self, message: str):  # type: ignore[override]
        if not KinshipArgumentParser.raising:
            super().error(message)
        raise UsageProblem(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = KinshipArgumentParser(
        prog="kinship",
        description="Cross-age kinship face search: run the services and query them.",
        epilog=cli_errors.exit_code_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {software_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each sub-command's parser as the default `_parser` of what it parses: an unknown flag is then
    reported with that sub-command's usage, not the top-level one."""
    for action in parser._actions:  # noqa: SLF001 - argparse lists sub-parsers nowhere public
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in dict.fromkeys(action.choices.values()):
                sub.set_defaults(_parser=sub)
                _remember_parsers(sub)


def _usage_error(problem: UsageProblem, argv: list[str]) -> int:
    if "--json" in argv:
        payload = {"code": "USAGE", "message": problem.message, "exit_code": cli_errors.USAGE, "violations": []}
        print(json.dumps({"error": payload}, indent=2))
    else:
        problem.parser.print_usage(sys.stderr)
        print(f"{problem.parser.prog}: error: {problem.message}", file=sys.stderr)
    return cli_errors.USAGE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "serve" and argv[1] in serve.SERVICES:
        # A service's flags come from its own settings; argparse sub-parsers with
        # REMAINDER would not pass `--flag` arguments through, so route it directly.
        try:
            return serve.run_one(argv[1], argv[2:])
        except KeyboardInterrupt:
            return cli_errors.INTERRUPTED
    parser = build_parser()
    KinshipArgumentParser.raising = True
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except UsageProblem as problem:
        return _usage_error(problem, argv)
    finally:
        KinshipArgumentParser.raising = False
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return cli_errors.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
