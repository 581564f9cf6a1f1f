"""Progress bars of every `cvd` command: one switch (`--no-progress`), drawn only on a terminal.

The lowest layer of the package (it imports nothing of cvd), so data generation, training and
the localization tool all draw their bars through it without importing each other.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_progress_allowed = True  # False under a command's --no-progress


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
