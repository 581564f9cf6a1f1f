"""Console output of the commands: log format, progress bars, and the closing summary of a run.

Convention of every `cvd` command: stdout carries data only (JSON, result tables, paths of
what was written) so it can be piped; messages, notes and progress bars go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

_progress_allowed = True  # False under a command's --no-progress


def setup_console_logging(level: int = logging.INFO) -> None:
    """One short line per message on stderr; ranks other than 0 only report warnings."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("cvd")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[cvd] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False


def allow_progress(allowed: bool) -> bool:
    """Turn every progress bar of this process on or off (`--no-progress`); returns the old setting."""
    global _progress_allowed
    previous, _progress_allowed = _progress_allowed, allowed
    return previous


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, drawn only on a terminal: logs and pipes get no carriage-return noise.

    `enabled` is the caller's own condition (e.g. rank 0 only); `--no-progress` overrides it.
    """
    from tqdm import tqdm

    shown = enabled and _progress_allowed and sys.stderr.isatty()
    return tqdm(iterable, disable=not shown, file=sys.stderr, **kwargs)


def print_run_summary(result: Any) -> None:
    """Where the run is and its final numbers (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"run folder: {result.run_dir}")
    for item in result.results:
        print(item.get("summary", item))
