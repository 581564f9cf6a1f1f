"""Dataset layout verification: find every problem of a dataset root, then raise once.

Loaders of other toolkits walk the tree and silently return an empty dataset when the root is
wrong, or fail on the first missing folder. Here a loader declares what it needs, the check
collects *all* missing paths and empty class folders, looks for the usual mistakes (root one
level too high or too low, wrong letter case), and raises one `DatasetLayoutError` that names
the root, every missing path, the hints, and the expected tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cvd.errors import DatasetLayoutError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key that puts `2.jpg` before `10.jpg` (SUES-200 names drone frames 0..49).

    Splitting on a capturing group alternates text and digit runs, so ints only ever meet ints.
    """
    return [int(part) if part.isdigit() else part for part in _DIGIT_RUNS.split(name)]


def is_image_name(name: str) -> bool:
    """Image files by suffix; hidden files (`.DS_Store`, `._x.jpg`) are never images."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class LayoutCheck:
    """Collects the layout problems of one dataset root and raises them together."""

    def __init__(self, dataset: str, root: str | os.PathLike, expected_tree: str) -> None:
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.expected_tree = expected_tree.strip("\n")
        self.missing: list[Path] = []
        self.empty: list[Path] = []
        self.problems: list[str] = []
        self.hints: list[str] = []
        self._required: list[str] = []

    # -- declarations -----------------------------------------------------------------------
    def require_dir(self, relative: str | os.PathLike) -> Path:
        """Declare a directory the layout needs; records it as missing when absent."""
        path = self.root / relative
        self._required.append(str(relative))
        if not path.is_dir():
            self.missing.append(path)
        return path

    def require_file(self, relative: str | os.PathLike) -> Path:
        """Declare a file the layout needs; records it as missing when absent."""
        path = self.root / relative
        self._required.append(str(relative))
        if not path.is_file():
            self.missing.append(path)
        return path

    def add_missing(self, paths: Iterable[Path]) -> None:
        """Record paths found missing by a loader's own listing (e.g. images named in a split file)."""
        self.missing.extend(paths)

    def add_problem(self, text: str) -> None:
        """Record a problem that is not a missing path (e.g. a malformed split file)."""
        self.problems.append(text)

    def add_hint(self, text: str) -> None:
        """Record a hint on how to fix the layout."""
        if text not in self.hints:
            self.hints.append(text)

    @property
    def ok(self) -> bool:
        """True while no problem has been recorded."""
        return not (self.missing or self.empty or self.problems)

    # -- listing ----------------------------------------------------------------------------
    def class_folders(self, directory: Path) -> dict[str, Path]:
        """Sub-folders of `directory` by name, naturally sorted; a folder without any is a problem.

        Returns {} (and records nothing more) when `directory` itself is missing, since the
        caller already declared it with `require_dir`.
        """
        if not directory.is_dir():
            return {}
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
        if not names:
            self.empty.append(directory)
            return {}
        return {name: directory / name for name in sorted(names, key=natural_key)}

    def images(self, directory: Path) -> list[Path]:
        """Image files of a class folder, naturally sorted; an empty class folder is a problem."""
        if not directory.is_dir():
            self.missing.append(directory)
            return []
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if is_image_name(e.name) and e.is_file()]
        if not names:
            self.empty.append(directory)
            return []
        return [directory / name for name in sorted(names, key=natural_key)]

    def numeric_names(self, directory: Path, names: Iterable[str]) -> None:
        """Benchmarks whose labels are folder numbers: a non-numeric class folder is a problem."""
        for name in names:
            if not name.isdigit():
                self.add_problem(f"{directory / name}: folder name is not a numeric location id")

    # -- reporting --------------------------------------------------------------------------
    def raise_if_problems(self) -> None:
        """Raise one DatasetLayoutError describing every recorded problem, or return quietly."""
        if self.ok:
            return
        self._find_hints()
        lines = [f"{self.dataset}: the dataset root {self.root} does not have the expected layout."]
        if not self.root.exists():
            lines.append(f"The root {self.root} does not exist.")
        if self.missing:
            lines.append(f"Missing ({len(self.missing)}):")
            lines += [f"  {path}" for path in _unique(self.missing)]
        if self.empty:
            lines.append(f"Empty folders, an empty class folder is an error ({len(self.empty)}):")
            lines += [f"  {path}" for path in _unique(self.empty)]
        if self.problems:
            lines.append("Problems:")
            lines += [f"  {text}" for text in self.problems]
        lines += [f"Hint: {hint}" for hint in self.hints]
        lines.append(f"Expected tree under the root ({self.root}):")
        lines += [f"  {line}" for line in self.expected_tree.splitlines()]
        raise DatasetLayoutError("\n".join(lines))

    def _find_hints(self) -> None:
        """Detect the usual mistakes: root one level too high or too low, wrong letter case."""
        required = [r for r in self._required if not (self.root / r).exists()]
        if not required:
            return
        found_here = self._count_present(self.root)
        if self.root.is_dir():
            with os.scandir(self.root) as entries:
                children = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
            for child in sorted(children):
                if self._count_present(child) > found_here:
                    self.add_hint(
                        f"{child} holds the expected folders: point the root at it (one level lower)."
                    )
        parent = self.root.parent
        if parent != self.root and self._count_present(parent) > found_here:
            self.add_hint(f"{parent} holds the expected folders: point the root at it (one level higher).")
        for relative in required:
            self._case_hint(relative)

    def _count_present(self, base: Path) -> int:
        return sum((base / r).exists() for r in self._required)

    def _case_hint(self, relative: str) -> None:
        """Walk the missing path from the root and report the first component present in another case."""
        current = self.root
        for part in Path(relative).parts:
            candidate = current / part
            if candidate.exists():
                current = candidate
                continue
            if current.is_dir():
                for sibling in os.listdir(current):
                    if sibling.lower() == part.lower() and sibling != part:
                        self.add_hint(
                            f"{current / sibling} exists but the layout names it '{part}' (letter case)."
                        )
            return


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    result = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            result.append(path)
    return result


def list_names(directory: Path) -> set[str]:
    """File names in one directory, read once: checking 90k split-file entries by set lookup
    instead of one stat() each keeps CVUSA/CVACT construction under a second."""
    if not directory.is_dir():
        return set()
    with os.scandir(directory) as entries:
        return {e.name for e in entries}


def missing_files(paths: Iterable[Path]) -> list[Path]:
    """The paths that do not exist, listing each parent directory once (not one stat per file)."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for path in paths:
        names = listings.get(path.parent)
        if names is None:
            names = listings[path.parent] = list_names(path.parent)
        if path.name not in names:
            missing.append(path)
    return missing


def report_missing_images(check: LayoutCheck, missing: list[Path], strict: bool) -> None:
    """Images named by a split file but absent: a layout error under strict, else a warning and a skip."""
    if not missing:
        return
    if strict:
        check.add_missing(missing)
        return
    logging.getLogger("cvd.data").warning(
        "%s: %d images named by the split files are missing and are skipped (first: %s)",
        check.dataset,
        len(missing),
        missing[0],
    )
