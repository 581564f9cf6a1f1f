"""Every registered dataset, driven by the registry: a new benchmark is tested by adding its
fake-tree writer (tests/data/<name>/write_tree.py with `write_tree(root) -> options`), not a test.

Each builds on a tiny tree written in its real layout, gives contiguous training labels and
non-empty evaluation splits, and names what is missing when a part of its tree is removed.
"""

from __future__ import annotations

import shutil

import pytest

from cvd.data import DATASETS, Benchmark, build_dataset
from cvd.errors import DatasetLayoutError

from .conftest import DATA_DIR, load_writer


@pytest.fixture(params=sorted(DATASETS))
def written(request, tmp_path):
    name = request.param
    writer_path = DATA_DIR / name / "write_tree.py"
    assert writer_path.is_file(), f"dataset {name!r} is registered but has no fake-tree writer {writer_path}"
    root = tmp_path / name
    options = load_writer(name).write_tree(root)
    return name, root, options


def test_builds_on_its_fake_tree(written):
    name, root, options = written
    dataset = build_dataset(name, root=root, **options)
    assert isinstance(dataset, Benchmark)
    pairs = dataset.train_pairs()
    assert pairs, f"{name}: no training pairs"
    labels = {pair.label for pair in pairs}
    assert labels == set(range(len(labels))), f"{name}: labels are not contiguous from 0"
    splits = dataset.eval_splits()
    assert splits and all(split.queries and split.gallery for split in splits), name


def test_a_removed_part_of_the_tree_is_named(written, tmp_path):
    name, root, options = written
    named = 0
    for entry in sorted(root.iterdir()):
        copy = tmp_path / f"without_{entry.name}"
        shutil.copytree(root, copy)
        removed = copy / entry.name
        shutil.rmtree(removed) if removed.is_dir() else removed.unlink()
        try:
            build_dataset(name, root=copy, **options)
        except DatasetLayoutError as error:
            assert entry.name in str(error), f"{name}: error does not name {entry.name}: {error}"
            named += 1
    assert named > 0, f"{name}: removing any top-level part of the tree went unnoticed"


def test_register_dataset_refuses_what_the_engine_could_not_use():
    from cvd.data import register_dataset

    class NoName:
        def train_pairs(self):
            return []

        def eval_splits(self):
            return []

    class NoSplits:
        name = "no_splits"

        def train_pairs(self):
            return []

    with pytest.raises(TypeError, match="class attribute `name`"):
        register_dataset(NoName)
    with pytest.raises(TypeError, match="lacks eval_splits"):
        register_dataset(NoSplits)
    impostor = type("Impostor", (NoName,), {"name": "cvusa"})
    with pytest.raises(ValueError, match="taken by CVUSA"):
        register_dataset(impostor)
    assert "no_splits" not in DATASETS and DATASETS["cvusa"].__name__ == "CVUSA"
