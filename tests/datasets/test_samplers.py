from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cvd.data import (
    GPSNeighbourSampler,
    MutuallyExclusiveSampler,
    PairRecord,
    SimilaritySampler,
    UniqueLocationSampler,
    gps_neighbours,
    neighbours_from_embeddings,
)


def _labels(n_locations=40, max_per_location=5, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_per_location + 1, size=n_locations)
    return [loc for loc in range(n_locations) for _ in range(counts[loc])]


def _pairs(labels, gps=None):
    return [
        PairRecord(
            query=Path(f"q/{i}.jpg"),
            satellite=Path(f"s/{label}.jpg"),
            label=label,
            location=f"{label:04d}",
            gps=None if gps is None else tuple(gps[label]),
        )
        for i, label in enumerate(labels)
    ]


def _ranks(make, num_replicas):
    """The index streams of `num_replicas` simulated ranks (each builds its own sampler)."""
    return [list(make(rank)) for rank in range(num_replicas)]


def _gathered_batches(streams, batch_size):
    """What the engine's gather sees: rank slices of each step concatenated in rank order."""
    steps = len(streams[0]) // batch_size + (len(streams[0]) % batch_size > 0)
    return [[i for s in streams for i in s[b * batch_size : (b + 1) * batch_size]] for b in range(steps)]


def test_unique_location_two_ranks_disjoint_cover_and_no_repeat():
    labels = _labels()
    make = lambda rank: UniqueLocationSampler(labels, batch_size=4, seed=3, num_replicas=2, rank=rank)  # noqa: E731
    streams = _ranks(make, 2)
    assert len(streams[0]) == len(streams[1]) == len(make(0))
    assert not set(streams[0]) & set(streams[1])
    sampler = make(0)
    epoch_items = [i for batch in sampler.global_batches() for i in batch]
    assert sorted(streams[0] + streams[1]) == sorted(epoch_items)
    assert len(set(epoch_items)) == len(epoch_items)  # every pair at most once per epoch
    assert len(epoch_items) + sampler.dropped == len(labels)  # the rest is counted as dropped
    for batch in _gathered_batches(streams, 4):
        assert len(batch) == 8
        assert len({labels[i] for i in batch}) == 8  # no location repeats inside a global batch


def test_deterministic_per_seed_and_epoch():
    labels = _labels()
    a = UniqueLocationSampler(labels, batch_size=8, seed=1)
    b = UniqueLocationSampler(_pairs(labels), batch_size=8, seed=1)  # pairs or labels alike
    assert list(a) == list(b)
    a.set_epoch(1)
    first = list(a)
    assert first != list(b)
    b.set_epoch(1)
    assert first == list(b)
    assert list(UniqueLocationSampler(labels, batch_size=8, seed=2)) != list(
        UniqueLocationSampler(labels, 8, seed=1)
    )


def test_skip_batches_resumes_mid_epoch():
    labels = _labels()
    sampler = UniqueLocationSampler(labels, batch_size=4, seed=0, num_replicas=2, rank=1)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, skip_batches=3)
    assert list(sampler) == full[3 * 4 :]
    assert len(sampler) == len(full) - 12
    assert sampler.num_batches == len(full) // 4 - 3
    sampler.set_epoch(6)
    assert sampler.skip_batches == 0


def test_drop_last_false_shares_the_partial_batch_evenly():
    labels = list(range(21))  # one pair per location: global batches of 8 leave 5
    streams = _ranks(
        lambda rank: UniqueLocationSampler(labels, 4, seed=0, num_replicas=2, rank=rank, drop_last=False), 2
    )
    assert len(streams[0]) == len(streams[1]) == 4 + 4 + 2  # 5 cut to 4 = 2 per rank
    assert len(set(streams[0] + streams[1])) == 20
    kept = UniqueLocationSampler(labels, 4, seed=0, num_replicas=2, rank=0, drop_last=True)
    assert len(kept) == 8 and kept.dropped == 5


def test_dataloader_batches_are_the_rank_slices():
    labels = _labels()
    sampler = UniqueLocationSampler(labels, batch_size=4, seed=0, num_replicas=2, rank=1)
    batches = [b.tolist() for b in DataLoader(list(range(len(labels))), batch_size=4, sampler=sampler)]
    expected = [g[4:8] for g in sampler.global_batches()]
    assert batches == expected


def test_too_few_locations_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct locations"):
        UniqueLocationSampler([0, 0, 1, 1, 2], batch_size=2, num_replicas=2, rank=0)


def test_single_process_defaults():
    sampler = UniqueLocationSampler(list(range(10)), batch_size=5)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    with pytest.raises(ValueError, match="rank"):
        UniqueLocationSampler(list(range(10)), batch_size=5, num_replicas=2, rank=2)


def _random_gps(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(40.0, 41.0, n), rng.uniform(-75.0, -73.0, n)], axis=1)


def _brute_nearest(gps, i, k, refs):
    distances = [refs.haversine_m(gps[i], gps[j]) if j != i else np.inf for j in range(len(gps))]
    return list(np.argsort(distances, kind="stable")[:k])


def test_gps_neighbour_table_matches_brute_force_haversine(refs):
    gps = _random_gps(60)
    table = gps_neighbours(gps, list(range(60)), k=10)
    for i in range(60):
        assert table[i].tolist() == _brute_nearest(gps, i, 10, refs)


def test_gps_batches_hold_the_anchor_geographic_neighbours(refs):
    n = 64
    gps = _random_gps(n, seed=4)
    pairs = _pairs(list(range(n)), gps)
    sampler = GPSNeighbourSampler(pairs, batch_size=8, seed=0, neighbour_select=14, neighbour_range=14)
    batches = sampler.global_batches()
    anchor, *others = batches[0]
    assert others == _brute_nearest(gps, anchor, 7, refs)  # nothing used yet: the 7 nearest

    # every batch is geographically tight compared with random batches of the same size
    def spread(batch):
        return np.mean([refs.haversine_m(gps[a], gps[b]) for a in batch for b in batch if a < b])

    random_batches = UniqueLocationSampler(pairs, batch_size=8, seed=0).global_batches()
    assert np.mean([spread(b) for b in batches]) < 0.6 * np.mean([spread(b) for b in random_batches])
    for batch in batches:
        assert len(set(batch)) == 8


def test_gps_sampler_needs_gps_everywhere():
    pairs = _pairs(list(range(10)), _random_gps(10))
    pairs[3] = PairRecord(Path("q"), Path("s"), label=3, location="0003")
    with pytest.raises(ValueError, match="GPS for every location"):
        GPSNeighbourSampler(pairs, batch_size=4)


def test_neighbours_from_embeddings_match_brute_force():
    torch.manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(30, 8), dim=1)
    satellite = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
    query_labels = [i % 12 for i in range(30)]  # several queries per location
    satellite_labels = list(range(12))
    table = neighbours_from_embeddings(query, satellite, query_labels, satellite_labels, k=5, chunk_size=7)
    similarity = (query @ satellite.T).numpy()
    for label in range(12):
        rows = [i for i in range(30) if query_labels[i] == label]
        best = similarity[rows].max(axis=0)
        best[label] = -np.inf
        assert table[label] == list(np.argsort(-best)[:5])


def test_neighbours_from_embeddings_one_query_per_location_matches_brute_force():
    torch.manual_seed(3)
    n = 40
    query = torch.nn.functional.normalize(torch.randn(n, 8), dim=1)
    satellite = torch.nn.functional.normalize(query + 0.8 * torch.randn(n, 8), dim=1)
    labels = torch.randperm(n).tolist()  # satellite i and query i share location labels[i]
    table = neighbours_from_embeddings(query, satellite, labels, labels, k=6, chunk_size=16)
    assert neighbours_from_embeddings(query.numpy(), satellite.numpy(), np.asarray(labels), k=6) == table
    similarity = (query @ satellite.T).numpy()
    for i, label in enumerate(labels):
        order = [labels[j] for j in np.argsort(-similarity[i]) if j != i]
        assert table[label] == order[:6]


def test_similarity_sampler_batches_hold_hardest_negatives_after_update():
    torch.manual_seed(1)
    n = 48
    emb = torch.nn.functional.normalize(torch.randn(n, 16), dim=1)
    sampler = SimilaritySampler(list(range(n)), batch_size=6, seed=0, neighbour_select=10, neighbour_range=10)
    before = sampler.global_batches()
    table = neighbours_from_embeddings(emb, emb, list(range(n)), list(range(n)), k=10)
    sampler.update_neighbours(table)
    assert sampler.neighbours[0].tolist() == table[0]
    after = sampler.global_batches()
    assert after != before
    anchor, *others = after[0]
    assert others == table[anchor][:5]
    for batch in after:
        assert len(set(batch)) == 6


def test_mutually_exclusive_behaves_as_one_location_per_batch_on_one_to_one_data():
    labels = _labels(seed=2)
    pairs = _pairs(labels)
    streams = _ranks(lambda r: MutuallyExclusiveSampler(pairs, 4, seed=0, num_replicas=2, rank=r), 2)
    assert not set(streams[0]) & set(streams[1])
    for batch in _gathered_batches(streams, 4):
        assert len({labels[i] for i in batch}) == len(batch) == 8


def test_mutually_exclusive_keeps_cross_matched_locations_apart():
    n = 40
    pairs = _pairs(list(range(n)))
    # query of location 2k also matches the satellite of 2k+1 (a semi-positive, as GTA-UAV has)
    extra = [(f"q/{2 * k}.jpg", f"s/{2 * k + 1}.jpg") for k in range(n // 2)]
    sampler = MutuallyExclusiveSampler(pairs, batch_size=8, seed=0, extra_edges=extra)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler.global_batches():
            members = set(batch)
            assert not any(2 * k in members and 2 * k + 1 in members for k in range(n // 2))
    plain = MutuallyExclusiveSampler(pairs, batch_size=8, seed=0)
    together = sum(
        2 * k in set(b) and 2 * k + 1 in set(b) for b in plain.global_batches() for k in range(n // 2)
    )
    assert together > 0  # without the edges those pairs do meet: the constraint is what separates them


def test_mutually_exclusive_radius_keeps_nearby_locations_apart(refs):
    n = 50
    gps = _random_gps(n, seed=7)
    pairs = _pairs(list(range(n)), gps)
    radius = 15_000.0
    sampler = MutuallyExclusiveSampler(pairs, batch_size=5, seed=0, exclusion_radius_m=radius)
    batches = sampler.global_batches()
    assert batches
    for batch in batches:
        for a in batch:
            for b in batch:
                if a < b:
                    assert refs.haversine_m(gps[a], gps[b]) > radius
