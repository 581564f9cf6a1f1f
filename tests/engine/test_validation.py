"""The validation split of the training locations (data.val_fraction)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvd.data import PairRecord
from cvd.engine.validation import hold_out, validation_splits
from cvd.errors import ConfigError


def _pairs(locations=10, views=3):
    return [
        PairRecord(Path(f"d/{loc:04d}/{v}.jpg"), Path(f"s/{loc:04d}.jpg"), loc, f"{loc:04d}")
        for loc in range(locations)
        for v in range(views)
    ]


def test_held_out_locations_leave_training_entirely_and_labels_stay_contiguous():
    train, held = hold_out(_pairs(), 0.3, seed=0)
    held_locations = {p.location for p in held}
    assert len(held_locations) == 3 and len(held) == 9
    assert not held_locations & {p.location for p in train}
    assert sorted({p.label for p in train}) == list(range(7))


def test_the_held_out_set_depends_on_val_seed_only():
    first = {p.location for p in hold_out(_pairs(), 0.3, seed=0)[1]}
    assert first == {p.location for p in hold_out(_pairs(), 0.3, seed=0)[1]}
    assert any({p.location for p in hold_out(_pairs(), 0.3, seed=s)[1]} != first for s in range(1, 5))


def test_zero_fraction_holds_out_nothing_and_bad_fractions_are_refused():
    train, held = hold_out(_pairs(), 0.0, seed=0)
    assert held == [] and len(train) == 30
    for fraction in (1.0, -0.1, 0.01):  # 0.01 of 10 locations rounds to none
        with pytest.raises(ConfigError, match="val_fraction"):
            hold_out(_pairs(), fraction, seed=0)


def test_validation_splits_rank_every_query_against_the_held_out_satellites():
    _, held = hold_out(_pairs(), 0.3, seed=0)
    forward, backward = validation_splits(held, "drone", "university1652")
    assert forward.name == "val: drone->satellite" and len(forward.queries) == 9 and len(forward.gallery) == 3
    assert backward.name == "val: satellite->drone" and len(backward.queries) == 3
    assert {r.label for r in forward.gallery} == {r.label for r in forward.queries}
    (street,) = validation_splits(held, "street", "cvusa")  # one direction, as the benchmark ranks
    assert street.name == "val: street->satellite"
