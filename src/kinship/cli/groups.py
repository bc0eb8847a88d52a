"""Command groups (`kinship report KIND`, `kinship bench KIND`) that several modules add kinds to."""

from __future__ import annotations

import argparse


def command_kinds(subparsers: argparse._SubParsersAction, command: str, help_text: str) -> argparse._SubParsersAction:
    """The sub-parsers of `kinship COMMAND`, made once and shared by every module that adds a kind."""
    parser = subparsers.choices.get(command)
    if parser is None:
        parser = subparsers.add_parser(command, help=help_text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{command}_kind", metavar="KIND", required=True)
