"""The protocol registry: names, rules, gallery variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvd.errors import ConfigError
from cvd.evaluation import PROTOCOLS, Protocol, get_protocol, mark_unqueried_as_junk, metrics_from_ranks
from cvd.evaluation.ranks import TrueMatchIndex, ranks_from_chunks


def test_registry_holds_the_four_benchmarks_with_their_rules():
    assert set(PROTOCOLS) == {"university1652", "sues200", "cvusa", "cvact"}
    for name in ("university1652", "sues200"):
        rules = PROTOCOLS[name]
        assert (rules.ties, rules.one_percent) == ("against_query", "cmc_round")
        assert rules.gallery_variants == ("official", "sample4geo")
    for name in ("cvusa", "cvact"):
        rules = PROTOCOLS[name]
        assert (rules.ties, rules.one_percent) == ("favour_query", "floor_div_100")
        assert rules.gallery_variants == ()
    assert PROTOCOLS["sues200"].per_altitude and not PROTOCOLS["university1652"].per_altitude
    assert all(rules.name == name and rules.description and rules.source for name, rules in PROTOCOLS.items())


def test_get_protocol_resolves_names_and_passes_objects_through():
    assert get_protocol("cvact") is PROTOCOLS["cvact"]
    custom = Protocol("mine", "test rules", ties="favour_query", one_percent="cmc_round")
    assert get_protocol(custom) is custom


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"unknown evaluation protocol 'u1652' \(known: cvact, cvusa, sues200"
    ):
        get_protocol("u1652")


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        PROTOCOLS["other"] = PROTOCOLS["cvusa"]  # type: ignore[index]


def test_mark_unqueried_as_junk_builds_the_sample4geo_gallery():
    # Buildings 0..3 in the gallery, queries only for 1 and 3: 0 and 2 become junk; junk stays.
    gallery = mark_unqueried_as_junk(np.array([3, 1, 1, 3, 3]), torch.tensor([0, 1, 2, 3, -1]))
    assert gallery.tolist() == [-1, 1, -1, 3, -1]


def test_ranks_of_one_tie_policy_are_not_scored_under_another():
    index = TrueMatchIndex(np.array([0]), np.array([0, 1]))
    ranks = ranks_from_chunks([(0, torch.zeros(1, 2))], index, get_protocol("cvusa"))
    assert metrics_from_ranks(ranks, "cvact")["R@1"] == 100.0  # same rules: fine
    with pytest.raises(ValueError, match="ties 'favour_query' but protocol 'university1652'"):
        metrics_from_ranks(ranks, "university1652")
