"""Atomic writes: the old file survives a failed write, and nothing is left behind."""

from __future__ import annotations

import pytest

from cvd.atomic import atomic_output, atomic_write_bytes, atomic_write_text


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "run" / "config.yaml"
    atomic_write_text(target, "first\n")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half of the seco")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first\n"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def test_a_successful_write_replaces_the_file_through_a_sibling(tmp_path):
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old")
    with atomic_output(target, fsync=False) as temporary:
        assert temporary.parent == target.parent and temporary != target
        assert target.read_bytes() == b"old"  # readers see the old bytes until the rename
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
