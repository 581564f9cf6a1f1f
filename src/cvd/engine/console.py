"""Console output of the commands: log format and the closing summary of a run (progress bars:
`cvd.progress`).

Convention of every `cvd` command: stdout carries data only (JSON, result tables, paths of
what was written) so it can be piped; messages, notes and progress bars go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


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


def print_run_summary(result: Any) -> None:
    """Where the run is and its final numbers (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"run folder: {result.run_dir}")
    for item in result.results:
        print(item.get("summary", item))
