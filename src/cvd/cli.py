"""The `cvd` command: one sub-command per module under `cvd.commands`.

Each sub-command module exposes `add_parser(subparsers)` and keeps its heavy imports inside
its `run(args)` function, so `cvd --help` stays fast. Conventions shared by all commands: stdout
carries data only (see `cvd.engine.console`), `--json` where a script reads the result,
`--no-progress` where bars are drawn, exit status 2 for usage and input errors.
"""

from __future__ import annotations

import argparse
import errno
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


# What the file system answers about a path the user chose (an unwritable --out or output_dir, a
# full disk): the user's to fix, so one line naming the path, never a traceback.
FILE_ERRNOS: dict[int, str] = {
    errno.EACCES: "check the folder's permissions or write somewhere else",
    errno.EPERM: "check the folder's permissions or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exceeded: free space or write somewhere else",
    errno.EFBIG: "the file is too large for this file system",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def describe_file_error(error: OSError) -> str | None:
    """One line for a file-system refusal that names its path (None for any other OSError)."""
    hint = FILE_ERRNOS.get(error.errno or 0)
    if hint is None or not error.filename:
        return None
    return f"{error.filename}: {error.strerror or error} ({hint})"


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
    except OSError as error:
        message = describe_file_error(error)
        if message is None:
            raise  # not the file system refusing a path: a bug, keep its traceback
        print(f"cvd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        allow_progress(previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
