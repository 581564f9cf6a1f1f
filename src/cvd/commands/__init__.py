"""Sub-commands of the `cvd` command line; each module adds one sub-parser."""

from __future__ import annotations

import argparse
import sys


def add_no_progress(parser: argparse.ArgumentParser, deprecated: tuple[str, ...] = ()) -> None:
    """The one spelling of "no progress bars" (`--no-progress`); old spellings stay as hidden aliases.

    `cvd.cli.main` applies it to every bar of the command through `cvd.engine.console`.
    """
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (also off when stderr is not a terminal)",
    )
    if deprecated:
        parser.add_argument(*deprecated, dest="no_progress", action="store_true", help=argparse.SUPPRESS)


def help_without_action(parser: argparse.ArgumentParser) -> None:
    """A command of actions run bare prints its whole help and exits 2, as a bare `cvd` does.

    argparse's `required=True` prints only a usage line; the help lists the actions to choose from.
    """

    def print_help(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(run=print_help)
