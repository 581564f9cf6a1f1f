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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window, rare in practice)
    os.umask(mask)
    return mask


TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def atomic_output(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to (by any library: torch.save,
    faiss.write_index, PIL...); on success it replaces ``path``, on any exception it is removed.

    ``fsync=False`` skips forcing the bytes to disk first: for many small files that can be
    regenerated (tiles), where the flush would cost more than a rare redo.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates 0600 (and some writers, safetensors among them, replace the file with their
    # own 0600 one): the result must get the mode a plain open() gives, or others may not read a
    # release, an index or an ONNX file that the umask lets them read
    mode = 0o666 & ~current_umask()
    # nothing between creating the temporary and the try: a signal turned into an exception there
    # (Ctrl-C, SIGTERM in `cvd fit`) would leave the file behind
    try:
        descriptor, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX
        )
    except OSError as error:  # name the file asked for, not the temporary's random name
        raise type(error)(error.errno, error.strerror, str(target)) from error
    temporary = Path(name)
    try:
        os.close(descriptor)
        yield temporary
        os.chmod(temporary, mode)
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


def stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Temporary files :func:`atomic_output` left in ``directory`` (a kill -9 mid-write).

    Only the caller knows that no writer is still at work (e.g. it holds the run's lock).
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX) and path.is_file()
    )
