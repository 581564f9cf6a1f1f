"""The `cvd` command: one sub-command per module under `cvd.commands`.

Each sub-command module exposes `add_parser(subparsers)` and keeps its heavy imports inside
its `run(args)` function, so `cvd --help` stays fast. Conventions shared by all commands: stdout
carries data only (see `cvd.engine.console`), `--json` where a script reads the result,
`--no-progress` where bars are drawn, exit status 2 for usage and input errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cvd import __version__
from cvd.errors import CVDError

# name -> module under cvd.commands; the order is the order of `cvd --help`.
SUBCOMMANDS: dict[str, str] = {
    "synth": "synth",
    "fit": "fit",
    "test": "test",
    "analyze": "analyze",
    "demo": "demo",
    "index": "index",
    "localize": "localize",
    "export": "export",
    "reproduce": "reproduce",
}


def build_parser() -> argparse.ArgumentParser:
    """Assemble the top-level parser from the sub-command modules that exist."""
    parser = argparse.ArgumentParser(
        prog="cvd",
        description="Cross-view geo-localization with Content-Viewpoint Disentanglement.",
    )
    parser.add_argument("--version", action="version", version=f"cvd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(f"cvd.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"cvd.commands.{module_name}":
                raise
            continue  # not built yet
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cvd` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        # a missing command is a usage error, as a missing action (`cvd index`) is for argparse
        parser.print_help(sys.stderr)
        return 2
    from cvd.progress import allow_progress

    previous = allow_progress(not getattr(args, "no_progress", False))
    try:
        result = args.run(args)
    except CVDError as error:
        print(f"cvd {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        allow_progress(previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
