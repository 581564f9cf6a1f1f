"""Data benchmark: loader scan time, sampler epoch planning, hard-negative mining memory.

Three parts, each printing its figures next to a baseline measured in the same run:

1. `scan`: University-1652 at full scale (empty files in the real tree: 701 training buildings
   x 54 drone images, 701 test + 250 distractor buildings) - `University1652(root)` with its
   full layout verification and the lists of both gallery variants, against the peers'
   approach (an `os.walk` listing of the same folders, no verification).
2. `sampler`: one epoch's plan at University-1652 training scale (701 locations x 54 pairs,
   global batch 128) for `UniqueLocationSampler`, against a re-implementation of Sample4Geo's
   shuffle as described in its code (items that do not fit go to the END of the pool; stop
   after 512 consecutive misses): time and pairs left out of the epoch. Then CVUSA scale
   (35,532 locations, random GPS over the USA): GPS neighbour table (cKDTree) and one epoch of
   `GPSNeighbourSampler`, against the brute-force haversine table on a subsample (the full
   35k x 35k float64 matrix the peers build is 10 GB).
3. `mining`: `neighbours_from_embeddings` (chunked top-k) against the full similarity matrix
   + top-k, for N queries x N satellites of 512-d embeddings, in separate processes so that
   each peak RSS is its own.

Usage (numbers recorded in docs/benchmarks.md, section "Data loaders and samplers"):
    .venv/bin/python benchmarks/data.py                  # all parts
    .venv/bin/python benchmarks/data.py --parts sampler --mining-n 12000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cvd.data import (
    GPSNeighbourSampler,
    UniqueLocationSampler,
    University1652,
    gps_neighbours,
    neighbours_from_embeddings,
)


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status, MiB (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """High-water resident memory of this process image (VmHWM; unlike ru_maxrss it is not
    inherited from the parent across fork+exec)."""
    return _status_mib("VmHWM")


# -- 1. scan --------------------------------------------------------------------------------


def write_empty_u1652(root: Path, n_train: int, n_test: int, n_distractors: int, per_building: int) -> int:
    """The real tree with empty files (a scan never reads them); returns the number of files."""
    count = 0

    def touch(directory: Path, names: list[str]) -> None:
        nonlocal count
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            (directory / name).touch()
        count += len(names)

    drones = [f"image-{k:02d}.jpeg" for k in range(1, per_building + 1)]
    for i in range(n_train):
        loc = f"{i:04d}"
        touch(root / "train" / "satellite" / loc, [f"{loc}.jpg"])
        touch(root / "train" / "drone" / loc, drones)
    for i in range(n_test + n_distractors):
        loc = f"{2000 + i:04d}"
        touch(root / "test" / "gallery_satellite" / loc, [f"{loc}.jpg"])
        touch(root / "test" / "gallery_drone" / loc, drones)
        if i < n_test:
            touch(root / "test" / "query_satellite" / loc, [f"{loc}.jpg"])
            touch(root / "test" / "query_drone" / loc, drones)
    return count


def walk_listing(root: Path) -> int:
    """The peers' listing: os.walk every folder, no checks (Sample4Geo's get_data, in spirit)."""
    total = 0
    for folder in (
        "train/satellite",
        "train/drone",
        "test/query_drone",
        "test/gallery_satellite",
        "test/query_satellite",
        "test/gallery_drone",
    ):
        for _, _, files in os.walk(root / folder):
            total += len(files)
    return total


def bench_scan(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "University-Release"
        start = time.perf_counter()
        files = write_empty_u1652(root, 701, 701, 250, 54)
        print(f"[scan] wrote {files} empty files in {time.perf_counter() - start:.1f} s")
        timings_ours, timings_walk = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            walked = walk_listing(root)
            timings_walk.append(time.perf_counter() - start)
            start = time.perf_counter()
            dataset = University1652(root)
            pairs = dataset.train_pairs()
            splits = dataset.eval_splits(["official", "sample4geo"])
            timings_ours.append(time.perf_counter() - start)
        ours, walk = min(timings_ours), min(timings_walk)
        d2s = splits[0]
        print(
            f"[scan] University1652(root) + train_pairs + eval_splits(both variants): {ours:.3f} s "
            f"(best of {args.repeats}); {len(pairs)} pairs, {len(d2s.queries)} drone queries, "
            f"{len(d2s.gallery)} satellites"
        )
        print(f"[scan] baseline os.walk listing of the same folders ({walked} files): {walk:.3f} s")
        print(f"[scan] ratio ours / baseline: {ours / walk:.2f}")


# -- 2. sampler -----------------------------------------------------------------------------


def sample4geo_style_plan(labels: np.ndarray, batch: int, seed: int) -> tuple[list[list[int]], int]:
    """Sample4Geo's greedy shuffle as its code describes it: misfits go to the end of the pool."""
    rng = np.random.default_rng(seed)
    pool = deque(rng.permutation(len(labels)).tolist())
    batches, current, in_batch, misses = [], [], set(), 0
    while pool and misses < 512:
        index = pool.popleft()
        if labels[index] in in_batch:
            pool.append(index)
            misses += 1
            continue
        current.append(index)
        in_batch.add(labels[index])
        misses = 0
        if len(current) == batch:
            batches.append(current)
            current, in_batch = [], set()
    used = sum(len(b) for b in batches)
    return batches, len(labels) - used


def bench_sampler(args: argparse.Namespace) -> None:
    labels = np.repeat(np.arange(701), 54)
    start = time.perf_counter()
    sampler = UniqueLocationSampler(labels, batch_size=128, seed=0)
    batches = sampler.global_batches()
    ours = time.perf_counter() - start
    start = time.perf_counter()
    base_batches, base_left = sample4geo_style_plan(labels, 128, 0)
    base = time.perf_counter() - start
    print(f"[sampler] University-1652 scale ({len(labels)} pairs, 701 locations, batch 128)")
    print(
        f"[sampler]   UniqueLocationSampler: {ours:.3f} s, {len(batches)} batches, "
        f"{sampler.dropped} pairs left out of the epoch"
    )
    print(
        f"[sampler]   Sample4Geo-style shuffle (baseline): {base:.3f} s, {len(base_batches)} batches, "
        f"{base_left} pairs left out"
    )
    print(
        f"[sampler]   ratio time ours / baseline: {ours / base:.2f}; pairs left out ours / baseline: "
        f"{sampler.dropped} / {base_left}"
    )

    counts = np.maximum(1, (400 / np.arange(1, 2001) ** 0.9).astype(int))
    skewed = np.repeat(np.arange(len(counts)), counts)
    start = time.perf_counter()
    skewed_sampler = UniqueLocationSampler(skewed, batch_size=128, seed=0)
    skewed_batches = skewed_sampler.global_batches()
    ours = time.perf_counter() - start
    start = time.perf_counter()
    base_batches, base_left = sample4geo_style_plan(skewed, 128, 0)
    base = time.perf_counter() - start
    print(
        f"[sampler] skewed data ({len(skewed)} pairs, 2000 locations, Zipf-like counts 400/r^0.9, batch 128)"
    )
    print(
        f"[sampler]   UniqueLocationSampler: {ours:.3f} s, {len(skewed_batches)} batches, "
        f"{skewed_sampler.dropped} left out; baseline: {base:.3f} s, {len(base_batches)} batches, "
        f"{base_left} left out"
    )

    n = 35_532
    rng = np.random.default_rng(0)
    gps = np.stack([rng.uniform(25.0, 49.0, n), rng.uniform(-124.0, -67.0, n)], axis=1)
    start = time.perf_counter()
    table = gps_neighbours(gps, np.arange(n), k=128)
    tree_time = time.perf_counter() - start
    start = time.perf_counter()
    gps_sampler = GPSNeighbourSampler(np.arange(n), batch_size=128, seed=0, gps=gps)
    gps_batches = gps_sampler.global_batches()
    plan_time = time.perf_counter() - start
    print(
        f"[sampler] CVUSA scale ({n} locations): GPS neighbour table (k=128, cKDTree) {tree_time:.2f} s; "
        f"GPSNeighbourSampler construction + one epoch plan {plan_time:.2f} s, {len(gps_batches)} batches, "
        f"{gps_sampler.dropped} left out"
    )
    m = args.brute_n
    start = time.perf_counter()
    lat, lon = np.radians(gps[:m, 0]), np.radians(gps[:m, 1])
    h = (
        np.sin((lat[:, None] - lat[None]) / 2) ** 2
        + np.cos(lat[:, None]) * np.cos(lat[None]) * np.sin((lon[:, None] - lon[None]) / 2) ** 2
    )
    distances = 2 * np.arcsin(np.sqrt(h))
    np.fill_diagonal(distances, np.inf)
    brute = np.argsort(distances, axis=1)[:, :128]
    brute_time = time.perf_counter() - start
    start = time.perf_counter()
    sub_table = gps_neighbours(gps[:m], np.arange(m), k=128)
    sub_time = time.perf_counter() - start
    agree = np.mean([np.array_equal(sub_table[i], brute[i]) for i in range(m)])
    print(
        f"[sampler] subsample {m}: brute-force haversine matrix + argsort (baseline) {brute_time:.2f} s, "
        f"{distances.nbytes / 2**20:.0f} MiB matrix; cKDTree {sub_time:.3f} s; "
        f"ratio {sub_time / brute_time:.3f}; "
        f"identical neighbour lists for {agree:.1%} of locations"
    )
    del table


# -- 3. mining ------------------------------------------------------------------------------


def _mine(method: str, n: int, dim: int, queue: mp.Queue) -> None:
    import torch

    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    satellite = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = torch.arange(n)
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    if method == "chunked":
        table = neighbours_from_embeddings(query, satellite, labels, labels, k=128, chunk_size=4096)
        first = table[0][:5]
    else:
        similarity = query @ satellite.T
        similarity.fill_diagonal_(-math.inf)
        first = torch.topk(similarity, k=128, dim=1).indices[0, :5].tolist()
    queue.put((method, time.perf_counter() - start, before, peak_rss_mib(), first))


def bench_mining(args: argparse.Namespace) -> None:
    context = mp.get_context("spawn")
    results = {}
    for method in ("full", "chunked"):
        queue = context.Queue()
        process = context.Process(target=_mine, args=(method, args.mining_n, 512, queue))
        process.start()
        results[method] = queue.get()
        process.join()
    (_, full_t, full_before, full_peak, full_first) = results["full"]
    (_, ours_t, ours_before, ours_peak, ours_first) = results["chunked"]
    print(f"[mining] {args.mining_n} x {args.mining_n} 512-d embeddings, k=128")
    print(
        f"[mining]   full matrix + topk (baseline): {full_t:.2f} s, peak RSS {full_peak:.0f} MiB "
        f"(+{full_peak - full_before:.0f} MiB over the RSS before the search)"
    )
    print(
        f"[mining]   neighbours_from_embeddings (chunks of 4096): {ours_t:.2f} s, "
        f"peak RSS {ours_peak:.0f} MiB "
        f"(+{ours_peak - ours_before:.0f} MiB)"
    )
    print(
        f"[mining]   ratio time {ours_t / full_t:.2f}, extra memory "
        f"{(ours_peak - ours_before) / max(full_peak - full_before, 1):.2f}; "
        f"same first neighbours: {full_first == ours_first}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="scan,sampler,mining")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--brute-n", type=int, default=8000)
    parser.add_argument("--mining-n", type=int, default=20000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
    parts = args.parts.split(",")
    if "scan" in parts:
        bench_scan(args)
    if "sampler" in parts:
        bench_sampler(args)
    if "mining" in parts:
        bench_mining(args)


if __name__ == "__main__":
    main()
