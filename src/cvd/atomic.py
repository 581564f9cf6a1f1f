"""Atomic file writes: a crash, a killed job or Ctrl-C never leaves half a file where a complete
one stood, and a reader (a resuming run, another rank, `cvd localize`) never sees one.

One place for the pattern (temporary file in the same folder, flush to disk, ``os.replace``)
that checkpoints, configs, results, releases, indexes and tiles all need.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to (by any library: torch.save,
    faiss.write_index, PIL...); on success it replaces ``path``, on any exception it is removed.

    ``fsync=False`` skips forcing the bytes to disk first: for many small files that can be
    regenerated (tiles), where the flush would cost more than a rare redo.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
