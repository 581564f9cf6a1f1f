"""Batch-composition samplers of the baselines, all aware of distributed training.

InfoNCE treats every other item of a batch as a negative, so a batch must not hold two items of
the same location (a false negative), and the recipes shape which negatives a batch holds:

* `UniqueLocationSampler`: random batches, one pair per location (Sample4Geo's shuffle).
* `GPSNeighbourSampler`: batches of geographic neighbours (Sample4Geo on CVUSA/CVACT, first
  epochs): each anchor brings nearby locations, i.e. hard negatives, in with it.
* `SimilaritySampler`: the same with neighbours from the embeddings of the last evaluation
  (Sample4Geo's hard-negative sampling), refreshed with `update_neighbours(...)`.
* `MutuallyExclusiveSampler`: Game4Loc's mutually exclusive sampling (see its docstring).

Distributed contract (docs/architecture.md): every rank builds the same *global* batches of
`batch_size * num_replicas` items from (seed, epoch) alone and yields the slice
`[rank * batch_size, (rank + 1) * batch_size)` of each, so the gather of all ranks' embeddings
is a batch of distinct locations. Use with `DataLoader(dataset, batch_size=batch_size,
sampler=sampler, drop_last=...)` and no shuffle. `set_epoch(epoch, skip_batches=k)` restarts an
epoch at global batch k (mid-epoch resume). A final incomplete global batch is dropped when
`drop_last` (the default, as Sample4Geo, to keep batches full of negatives), else cut to a
multiple of `num_replicas` and shared evenly.

The greedy builder differs from Sample4Geo's in one way: an item that cannot join the current
batch (its location is already there) goes back to the *front* of the queue for the next batch
instead of the end, so it is not starved. On balanced data (University-1652) both leave out
only the final incomplete batch; on data with very unequal pairs per location fewer pairs are
left out of an epoch (benchmarks/data.py, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Sampler

from cvd.data.records import PairRecord
from cvd.earth import EARTH_RADIUS_M, unit_vectors
from cvd.schema import Option


def _resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """World size and rank from torch.distributed when initialised, else a single process."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
    return int(num_replicas), int(rank)


def _labels_of(labels_or_pairs: Sequence[int] | Sequence[PairRecord]) -> np.ndarray:
    items = list(labels_or_pairs)
    if items and isinstance(items[0], PairRecord):
        return np.asarray([p.label for p in items], dtype=np.int64)
    return np.asarray([int(x) for x in items], dtype=np.int64)


class _GlobalBatchSampler(Sampler[int]):
    """Plan per epoch (cached), rank slicing, resume offset, and the greedy batch builder."""

    def __init__(
        self,
        labels_or_pairs: Sequence[int] | Sequence[PairRecord],
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ) -> None:
        self.labels = _labels_of(labels_or_pairs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        self.drop_last = drop_last
        self.global_batch_size = self.batch_size * self.num_replicas
        self.locations = np.unique(self.labels)
        if len(self.locations) < self.global_batch_size:
            raise ValueError(
                f"a global batch of {self.global_batch_size} items (batch_size {self.batch_size} x "
                f"{self.num_replicas} ranks) needs at least that many distinct locations; "
                f"the data has {len(self.locations)}"
            )
        self.epoch = 0
        self._skip = 0
        self._version = 0
        self._plan_key: tuple[int, int] | None = None
        self._plan: list[list[int]] = []
        self._dropped = 0

    # -- public control ---------------------------------------------------------------------
    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch (the order depends only on seed and epoch) and where it starts."""
        self.epoch = int(epoch)
        self.skip_batches = skip_batches

    @property
    def skip_batches(self) -> int:
        """Global batches of the current epoch not yielded (already trained before a resume)."""
        return self._skip

    @skip_batches.setter
    def skip_batches(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"skip_batches must be >= 0, got {value}")
        self._skip = int(value)

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches of dataset indices (all ranks), before skipping."""
        key = (self.epoch, self._version)
        if self._plan_key != key:
            rng = np.random.default_rng([self.seed, self.epoch])
            batches, leftover = self._build(rng)
            if batches and len(batches[-1]) < self.global_batch_size:
                last = batches.pop()
                usable = 0 if self.drop_last else len(last) - len(last) % self.num_replicas
                leftover += len(last) - usable
                if usable:
                    batches.append(last[:usable])
            self._plan, self._dropped, self._plan_key = batches, leftover, key
        return self._plan

    @property
    def num_batches(self) -> int:
        """Global batches left in the current epoch after skipping (= DataLoader batches per rank)."""
        return max(0, len(self.global_batches()) - self._skip)

    @property
    def dropped(self) -> int:
        """Items left out of the current epoch (no room without repeating a location)."""
        self.global_batches()
        return self._dropped

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches()[self._skip :]:
            share = len(batch) // self.num_replicas
            yield from batch[self.rank * share : (self.rank + 1) * share]

    def __len__(self) -> int:
        return sum(len(b) // self.num_replicas for b in self.global_batches()[self._skip :])

    # -- batch building ---------------------------------------------------------------------
    def _build(self, rng: np.random.Generator) -> tuple[list[list[int]], int]:
        """Greedy fill over a random order; returns the batches (last may be partial) and leftovers."""
        order = rng.permutation(len(self.labels))
        state = self._epoch_state(order, rng)
        used = np.zeros(len(self.labels), dtype=bool)
        queue = deque(order.tolist())
        batches: list[list[int]] = []
        size = self.global_batch_size
        while queue:
            batch: list[int] = []
            members = self._new_batch()
            deferred: list[int] = []
            while queue and len(batch) < size:
                index = queue.popleft()
                if used[index]:
                    continue
                if not self._admits(index, members):
                    deferred.append(index)
                    continue
                self._take(index, batch, members, used)
                self._extend(index, batch, members, used, state, rng)
            queue.extendleft(reversed(deferred))
            batches.append(batch)
            if len(batch) < size:
                break
        leftover = int(len(used) - used.sum())
        return batches, leftover

    def _epoch_state(self, order: np.ndarray, rng: np.random.Generator) -> Any:
        return None

    def _new_batch(self) -> Any:
        return set()

    def _admits(self, index: int, members: Any) -> bool:
        return int(self.labels[index]) not in members

    def _take(self, index: int, batch: list[int], members: Any, used: np.ndarray) -> None:
        used[index] = True
        batch.append(index)
        members.add(int(self.labels[index]))

    def _extend(
        self,
        index: int,
        batch: list[int],
        members: Any,
        used: np.ndarray,
        state: Any,
        rng: np.random.Generator,
    ) -> None:
        """Hook: bring more items in after an anchor (neighbour samplers)."""


class UniqueLocationSampler(_GlobalBatchSampler):
    """Random global batches with one pair per location (Sample4Geo's custom shuffle).

    `labels_or_pairs`: the training pairs (their contiguous `label`) or the labels themselves.
    With several pairs per location (University-1652: one per drone image), each epoch visits
    every pair once, except the few that cannot be placed without repeating a location.
    """


NEIGHBOUR_OPTIONS: dict[str, Option] = {
    "neighbour_select": Option("int", "neighbour locations drawn per anchor (half nearest)", low=0),
    "neighbour_range": Option("int", "length of each anchor's neighbour list", low=1),
}


class NeighbourSampler(_GlobalBatchSampler):
    """Global batches grown from anchors and their neighbour locations (Sample4Geo's scheme).

    For each anchor taken from a random order, its neighbour list (nearest first, length
    `neighbour_range`) contributes its first `neighbour_select // 2` entries and a random
    `neighbour_select // 2` of the rest; each neighbour location not yet in the batch brings
    one of its unused pairs. Without a neighbour table it is a `UniqueLocationSampler`.
    `neighbours`: mapping label -> neighbour labels, or an (n_locations, K) integer array
    (row = label, -1 = padding).
    """

    option_declarations: ClassVar[dict[str, Option]] = NEIGHBOUR_OPTIONS

    def __init__(
        self,
        labels_or_pairs: Sequence[int] | Sequence[PairRecord],
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
        neighbours: Mapping[int, Sequence[int]] | np.ndarray | None = None,
        neighbour_select: int = 64,
        neighbour_range: int = 128,
    ) -> None:
        super().__init__(labels_or_pairs, batch_size, seed, num_replicas, rank, drop_last)
        self.neighbour_select = int(neighbour_select)
        self.neighbour_range = int(neighbour_range)
        self._neighbours: dict[int, np.ndarray] | None = None
        if neighbours is not None:
            self.update_neighbours(neighbours)

    def update_neighbours(self, neighbours: Mapping[int, Sequence[int]] | np.ndarray) -> None:
        """Replace the neighbour table; takes effect from the next plan (next `set_epoch`).

        Every rank must pass the same table (gather the embeddings before computing it), or
        ranks would build different global batches.
        """
        if np.ndim(neighbours) == 0 and not isinstance(neighbours, Mapping):
            raise ValueError(
                f"neighbours must be a table (mapping label -> labels, or an (n_locations, K) array), "
                f"got {neighbours!r}; the number of neighbours per location is neighbour_range"
            )
        if isinstance(neighbours, Mapping):
            table = {int(k): np.asarray(list(v), dtype=np.int64) for k, v in neighbours.items()}
        else:
            array = np.asarray(neighbours, dtype=np.int64)
            if array.ndim != 2:
                raise ValueError(f"a neighbour array must be (n_locations, K), got shape {array.shape}")
            table = {row: array[row][array[row] >= 0] for row in range(array.shape[0])}
        self._neighbours = {k: v[: self.neighbour_range] for k, v in table.items()}
        self._version += 1

    @property
    def neighbours(self) -> dict[int, np.ndarray] | None:
        """The current neighbour table (label -> neighbour labels, nearest first), e.g. to checkpoint."""
        return self._neighbours

    def _epoch_state(self, order: np.ndarray, rng: np.random.Generator) -> Any:
        if self._neighbours is None:
            return None
        buckets: dict[int, deque[int]] = {}
        for index in order.tolist():  # each location's pairs in this epoch's random order
            buckets.setdefault(int(self.labels[index]), deque()).append(index)
        return buckets

    def _extend(
        self,
        index: int,
        batch: list[int],
        members: Any,
        used: np.ndarray,
        state: Any,
        rng: np.random.Generator,
    ) -> None:
        if state is None:
            return
        candidates = self._neighbours.get(int(self.labels[index]))
        if candidates is None or len(candidates) == 0:
            return
        half = self.neighbour_select // 2
        far = candidates[half:]
        chosen = np.concatenate([candidates[:half], rng.permutation(far)[:half]])
        for location in chosen.tolist():
            if len(batch) >= self.global_batch_size:
                return
            if location in members:
                continue
            bucket = state.get(location)
            while bucket and used[bucket[0]]:
                bucket.popleft()
            if bucket:
                self._take(bucket.popleft(), batch, members, used)


class GPSNeighbourSampler(NeighbourSampler):
    """Batches of geographic neighbours (Sample4Geo on CVUSA/CVACT before hard-negative mining).

    GPS per location comes from `gps` ((n_pairs, 2) lat/lon degrees) or the pairs' `.gps`. The
    `neighbour_range` nearest locations by great-circle distance are found with scipy's cKDTree
    on 3-D unit vectors (chord length is monotonic in great-circle distance, so the order is the
    haversine order). Call `update_neighbours` later to switch to similarity neighbours.
    """

    def __init__(
        self,
        labels_or_pairs: Sequence[int] | Sequence[PairRecord],
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
        gps: np.ndarray | Sequence[tuple[float, float]] | None = None,
        neighbour_select: int = 64,
        neighbour_range: int = 128,
    ) -> None:
        super().__init__(
            labels_or_pairs, batch_size, seed, num_replicas, rank, drop_last,
            neighbour_select=neighbour_select, neighbour_range=neighbour_range,
        )  # fmt: skip
        if gps is None:
            pairs = list(labels_or_pairs)
            if not pairs or not isinstance(pairs[0], PairRecord):
                raise ValueError("GPSNeighbourSampler needs `gps` or PairRecords carrying .gps")
            gps = [p.gps if p.gps is not None else (math.nan, math.nan) for p in pairs]
        coordinates = np.asarray(gps, dtype=np.float64)
        if coordinates.shape != (len(self.labels), 2):
            raise ValueError(f"gps must be ({len(self.labels)}, 2) lat/lon, got shape {coordinates.shape}")
        location_gps = np.full((int(self.labels.max()) + 1, 2), np.nan)
        location_gps[self.labels] = coordinates
        missing = [int(loc) for loc in self.locations if not np.isfinite(location_gps[loc]).all()]
        if missing:
            raise ValueError(
                f"GPS neighbour sampling needs GPS for every location; {len(missing)} have none "
                f"(labels {missing[:10]}{' ...' if len(missing) > 10 else ''})"
            )
        self.update_neighbours(gps_neighbours(location_gps, self.locations, self.neighbour_range))


class SimilaritySampler(NeighbourSampler):
    """Hard-negative batches from the embeddings of the last evaluation (Sample4Geo).

    Start it with a GPS table (`neighbours=GPSNeighbourSampler(...)`'s or `gps_neighbours`) or
    none (plain unique-location batches); after each evaluation on the training set call
    `update_neighbours(neighbours_from_embeddings(...))`, which ranks, for every location, the
    other locations' satellite embeddings by similarity to its query embedding.
    """


class MutuallyExclusiveSampler(_GlobalBatchSampler):
    """Game4Loc's mutually exclusive sampling, generalised to any pair graph.

    My reading of Game4Loc (GTA-UAV repository, `GTADatasetTrain.shuffle`): drone and satellite
    images form a bipartite match graph (a drone image may match several satellite tiles,
    positive or semi-positive, and a tile several drone images). When a pair (q, s) joins a
    batch, every satellite matched to q and every query matched to s is locked for that batch;
    a later pair may join only if neither of its images is locked. So within a batch the match
    graph restricted to the batch is exactly the diagonal: no in-batch negative is a (semi-)
    positive of another anchor. On University-1652 / SUES-200 (one satellite per location) this
    reduces to one location per batch; it differs when `extra_edges` adds cross-location
    matches, or `exclusion_radius_m` locks every location within that distance (from pairs' GPS)
    of a location in the batch, for data where neighbouring satellite tiles overlap.
    Locations are kept distinct in any case (the distributed contract).
    """

    option_declarations: ClassVar[dict[str, Option]] = {
        "exclusion_radius_m": Option(
            "float", "also lock every location within this distance of one in the batch", low=0
        ),
    }

    def __init__(
        self,
        pairs: Sequence[PairRecord],
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
        extra_edges: Iterable[tuple[Any, Any]] | None = None,
        exclusion_radius_m: float | None = None,
    ) -> None:
        pairs = list(pairs)
        super().__init__(pairs, batch_size, seed, num_replicas, rank, drop_last)
        query_ids: dict[str, int] = {}
        satellite_ids: dict[str, int] = {}
        self._query = np.asarray([query_ids.setdefault(str(p.query), len(query_ids)) for p in pairs])
        self._satellite = np.asarray(
            [satellite_ids.setdefault(str(p.satellite), len(satellite_ids)) for p in pairs]
        )
        self._sats_of_query: list[set[int]] = [set() for _ in query_ids]
        self._queries_of_sat: list[set[int]] = [set() for _ in satellite_ids]
        edges = [(str(p.query), str(p.satellite)) for p in pairs] + [
            (str(q), str(s)) for q, s in (extra_edges or [])
        ]
        for query, satellite in edges:
            if query in query_ids and satellite in satellite_ids:
                self._sats_of_query[query_ids[query]].add(satellite_ids[satellite])
                self._queries_of_sat[satellite_ids[satellite]].add(query_ids[query])
        self._near: dict[int, set[int]] = {}
        if exclusion_radius_m is not None:
            self._near = _locations_within(pairs, self.labels, float(exclusion_radius_m))

    def _new_batch(self) -> Any:
        return {"labels": set(), "queries": set(), "satellites": set()}

    def _admits(self, index: int, members: Any) -> bool:
        return (
            int(self.labels[index]) not in members["labels"]
            and int(self._query[index]) not in members["queries"]
            and int(self._satellite[index]) not in members["satellites"]
        )

    def _take(self, index: int, batch: list[int], members: Any, used: np.ndarray) -> None:
        used[index] = True
        batch.append(index)
        label = int(self.labels[index])
        members["labels"].add(label)
        members["labels"].update(self._near.get(label, ()))
        members["satellites"].update(self._sats_of_query[self._query[index]])
        members["queries"].update(self._queries_of_sat[self._satellite[index]])


SAMPLERS: dict[str, type[_GlobalBatchSampler]] = {
    "location_shuffle": UniqueLocationSampler,
    "gps": GPSNeighbourSampler,
    "similarity": SimilaritySampler,
    "mutually_exclusive": MutuallyExclusiveSampler,
}
"""Samplers by the config's `data.sampler` name (all of them plan global batches, split across ranks)."""


def build_sampler(
    name: str,
    pairs: Sequence[PairRecord],
    batch_size: int,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = True,
    **options: Any,
) -> _GlobalBatchSampler:
    """A sampler by registry name; `options` are its own keyword arguments (`data.sampler_options`)."""
    from cvd.errors import ConfigError

    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ConfigError(f"data.sampler = {name!r} is not one of {sorted(SAMPLERS)}") from None
    try:
        return cls(pairs, batch_size, seed, num_replicas, rank, drop_last, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data.sampler {name!r} (batch_size, data.sampler_options): {error}") from error


# -- neighbour tables -----------------------------------------------------------------------


def _unit_vectors(latlon: np.ndarray) -> np.ndarray:
    """(N, 2) lat/lon degrees -> (N, 3) points on the unit sphere."""
    latlon = np.asarray(latlon, dtype=np.float64)
    return unit_vectors(latlon[:, 0], latlon[:, 1])


def gps_neighbours(location_gps: np.ndarray, locations: Sequence[int], k: int) -> dict[int, np.ndarray]:
    """For each location label, the k nearest other locations (great-circle order), nearest first.

    `location_gps[label]` holds the (lat, lon) of each label in `locations`.
    """
    from scipy.spatial import cKDTree

    locations = np.asarray(locations, dtype=np.int64)
    points = _unit_vectors(np.asarray(location_gps)[locations])
    k = min(k, len(locations) - 1)
    if k < 1:
        return {int(loc): np.empty(0, dtype=np.int64) for loc in locations}
    _, nearest = cKDTree(points).query(points, k=k + 1)
    keep = nearest != np.arange(len(locations))[:, None]
    # A location whose own index is not in its k+1 nearest (duplicated coordinates): drop the last.
    keep[keep.all(axis=1), -1] = False
    others = locations[nearest[keep].reshape(len(locations), k)]
    return {int(location): others[row] for row, location in enumerate(locations.tolist())}


def _locations_within(
    pairs: Sequence[PairRecord], labels: np.ndarray, radius_m: float
) -> dict[int, set[int]]:
    from scipy.spatial import cKDTree

    location_gps: dict[int, tuple[float, float]] = {}
    for pair, label in zip(pairs, labels.tolist()):
        if pair.gps is None:
            raise ValueError(f"exclusion_radius_m needs GPS on every pair; {pair.query} has none")
        location_gps.setdefault(label, pair.gps)
    keys = list(location_gps)
    points = _unit_vectors(np.asarray([location_gps[k] for k in keys]))
    chord = 2.0 * math.sin(min(radius_m / EARTH_RADIUS_M, math.pi) / 2.0)
    near: dict[int, set[int]] = {}
    for row, members in enumerate(cKDTree(points).query_ball_point(points, r=chord)):
        near[keys[row]] = {keys[j] for j in members if j != row}
    return near


def neighbours_from_embeddings(
    query_embeddings: torch.Tensor | np.ndarray,
    satellite_embeddings: torch.Tensor | np.ndarray,
    query_labels: Sequence[int] | torch.Tensor | np.ndarray,
    satellite_labels: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    k: int = 128,
    chunk_size: int = 4096,
) -> dict[int, list[int]]:
    """Hard-negative table for `SimilaritySampler.update_neighbours` (Sample4Geo's `calc_sim`).

    For each query label: the satellite labels most similar to its query embedding, the true
    match removed, best first, at most k. `satellite_labels` defaults to `query_labels` (row i
    of both is location i, the usual mining setup). Similarity is computed in chunks of `chunk_size`
    queries and only the top k+1 of each row is kept, so memory stays O(chunk x gallery) even on
    CVUSA's 35k x 35k (peers' full matrix is what blows up GPU memory). Several queries of one
    location (University-1652 drone images) are merged by their best similarity to each
    satellite label.
    """
    query_embeddings = torch.as_tensor(query_embeddings)
    satellite_embeddings = torch.as_tensor(satellite_embeddings)
    if satellite_labels is None:
        satellite_labels = query_labels
    query_labels = torch.as_tensor(np.asarray(query_labels), dtype=torch.long).cpu().numpy()
    satellite_labels = torch.as_tensor(np.asarray(satellite_labels), dtype=torch.long).cpu().numpy()
    k_plus = min(k + 1, satellite_embeddings.shape[0])
    # Fast path (CVUSA/CVACT: one query and one satellite per location): whole chunks at once.
    unique_satellites = len(np.unique(satellite_labels)) == len(satellite_labels)
    values, counts = np.unique(query_labels, return_counts=True)
    repeated = set(values[counts > 1].tolist())
    table: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for start in range(0, query_embeddings.shape[0], chunk_size):
        block = query_embeddings[start : start + chunk_size] @ satellite_embeddings.T
        scores, indices = torch.topk(block.float(), k=k_plus, dim=1)
        scores, labels = scores.cpu().numpy(), satellite_labels[indices.cpu().numpy()]
        own = query_labels[start : start + len(scores)]
        keep = labels != own[:, None]
        slow_rows = range(len(scores))
        if unique_satellites and k_plus > 1:
            keep[keep.all(axis=1), -1] = False  # own match not in the top k+1: drop the (k+1)-th
            kept_labels = labels[keep].reshape(len(scores), k_plus - 1)
            kept_scores = scores[keep].reshape(len(scores), k_plus - 1)
            slow_rows = []
            for row, label in enumerate(own.tolist()):
                if label in repeated:
                    slow_rows.append(row)
                else:
                    table[label] = (kept_labels[row, :k], kept_scores[row, :k])
        for row in slow_rows:  # several queries of one location, or repeated satellite labels
            label = int(own[row])
            candidates = (labels[row][keep[row]], scores[row][keep[row]])
            if label in table:  # merge by best similarity
                candidates = tuple(np.concatenate(pair) for pair in zip(table[label], candidates))
            table[label] = _best_per_label(*candidates, k)
    return {label: neighbours.tolist() for label, (neighbours, _) in table.items()}


def _best_per_label(labels: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each label once with its best score, best first, at most k (stable for equal scores)."""
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    _, first = np.unique(labels, return_index=True)
    first.sort()
    return labels[first][:k], scores[first][:k]
