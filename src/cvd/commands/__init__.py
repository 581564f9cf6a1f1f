"""Sub-commands of the `cvd` command line; each module adds one sub-parser."""

from __future__ import annotations

import argparse


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
