"""Gallery index benchmark: build time, memory, query latency and recall of cvd's faiss indexes.

The gallery is N random unit vectors (default 1,000,000 x 512-d). Three query sets, searched
against every index type, with exact search (IndexFlatIP) in the same run as the reference:
- `random`:  independent random unit vectors, the hardest case for any ANN index. The
             query has no true match: its nearest neighbour is only a hair closer than the
             next thousand (all cosines ~ N(0, 1/d)), so "recall@1" asks the index to resolve
             differences of ~0.001 in cosine among a million near-ties.
- `planted`: a gallery vector plus Gaussian noise, at cosine `--planted-cos` (default 0.5) to
             it: a query with a true match, as a drone view has its tile. Not random data, and
             said so in every line it prints.
Recall@1 = fraction of queries whose approximate top-1 is the exact top-1.

Usage (numbers recorded in docs/benchmarks.md, section "Localization index"):
    .venv/bin/python benchmarks/index.py                   # the full 1M x 512 run
    .venv/bin/python benchmarks/index.py --n 100000 --types flat,hnsw
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cvd.geo.gallery_index import IndexParams, apply_search_params, build_faiss_index, search_index


def rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_text() -> str:
    """The machine's 1/5/15-minute load averages: a shared box's figures depend on them."""
    return "load avg " + "/".join(f"{v:.1f}" for v in os.getloadavg())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_unit(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    """n random unit vectors, generated in chunks so the float64 temporaries stay small."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def planted_queries(rng: np.random.Generator, gallery: np.ndarray, n: int, cosine: float) -> np.ndarray:
    """Noisy copies of random gallery vectors at (about) the given cosine to their source."""
    dim = gallery.shape[1]
    sources = rng.choice(len(gallery), n, replace=False)
    sigma = np.sqrt((1.0 / cosine**2 - 1.0) / dim)
    queries = gallery[sources] + sigma * rng.standard_normal((n, dim), dtype=np.float32)
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def latency_ms(index, queries: np.ndarray, batch: int, k: int, repeats: int) -> np.ndarray:
    """Per-call wall time (ms) of searching `batch` queries at a time."""
    times = []
    for i in range(repeats):
        start = (i * batch) % max(1, len(queries) - batch + 1)
        block = np.ascontiguousarray(queries[start : start + batch])
        t0 = time.perf_counter()
        search_index(index, block, k)  # the product's thread policy: 1 thread below 8 queries
        times.append((time.perf_counter() - t0) * 1000.0)
    return np.array(times)


def index_bytes(index) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def sweep_values(index_type: str, args) -> list[tuple[str, IndexParams]]:
    if index_type == "flat":
        return [("exact", IndexParams())]
    if index_type == "hnsw":
        return [
            (
                f"efSearch={ef}",
                IndexParams(hnsw_m=args.hnsw_m, hnsw_ef_construction=args.ef_construction, hnsw_ef_search=ef),
            )
            for ef in args.ef_search
        ]
    return [
        (
            f"nprobe={p},refine={args.refine}",
            IndexParams(ivf_nprobe=p, refine_factor=args.refine, pq_m=args.pq_m),
        )
        for p in args.nprobe
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000, help="queries per set for recall and batches")
    parser.add_argument("--single", type=int, default=300, help="single-query calls timed per setting")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--types", default="flat,hnsw,ivfpq")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument(
        "--ef-search", type=lambda s: [int(v) for v in s.split(",")], default=[16, 64, 256, 1024]
    )
    parser.add_argument(
        "--nprobe", type=lambda s: [int(v) for v in s.split(",")], default=[32, 128, 256, 512]
    )
    parser.add_argument("--pq-m", type=int, default=64)
    parser.add_argument("--refine", type=int, default=16)
    parser.add_argument("--planted-cos", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    print(
        f"# faiss {faiss.__version__}, {args.threads} threads, "
        f"gallery {args.n} x {args.dim} random unit vectors, {load_text()}"
    )
    base_rss = rss_mib()
    gallery = random_unit(rng, args.n, args.dim)
    print(
        f"# gallery array: {gallery.nbytes / 2**20:.0f} MiB "
        f"(RSS now {rss_mib():.0f} MiB, before {base_rss:.0f})"
    )
    query_sets = {
        "random": random_unit(rng, args.queries, args.dim),
        f"planted(cos={args.planted_cos})": planted_queries(rng, gallery, args.queries, args.planted_cos),
    }

    exact = faiss.IndexFlatIP(args.dim)
    exact.add(gallery)
    truth = {}
    for name, queries in query_sets.items():
        t0 = time.perf_counter()
        scores, rows = exact.search(queries, 2)
        truth[name] = rows[:, 0]
        gap = np.median(scores[:, 0] - scores[:, 1])
        print(
            f"# exact reference for {name}: {(time.perf_counter() - t0) * 1000 / len(queries):.1f} ms/query "
            f"in a batch of {len(queries)}; median top1-top2 cosine gap {gap:.4f}"
        )
    del exact

    header = (
        f"{'type':6} {'setting':24} {'queries':20} {'recall@1':>8} {'p50 1q':>8} {'p99 1q':>8} "
        f"{'p50 b64':>8} {'b64/q':>7} {'b1000/q':>8}"
    )
    for index_type in args.types.split(","):
        rss_before = rss_mib()
        t0 = time.perf_counter()
        settings = sweep_values(index_type, args)
        index = build_faiss_index(gallery, index_type, settings[0][1])
        build_s = time.perf_counter() - t0
        size_mib = index_bytes(index) / 2**20
        print(
            f"\n## {index_type}: build {build_s:.1f} s, index {size_mib:.0f} MiB serialized, "
            f"RSS +{rss_mib() - rss_before:.0f} MiB, peak RSS so far {peak_rss_mib():.0f} MiB, {load_text()}"
        )
        print(header)
        for label, params in settings:
            apply_search_params(index, index_type, params)
            for name, queries in query_sets.items():
                _, rows = index.search(queries, args.k)
                recall = float(np.mean(rows[:, 0] == truth[name]))
                single = latency_ms(index, queries, 1, args.k, args.single if index_type != "flat" else 100)
                batch64 = latency_ms(index, queries, 64, args.k, 10 if index_type != "flat" else 3)
                batch1000 = latency_ms(index, queries, min(1000, len(queries)), args.k, 1)
                print(
                    f"{index_type:6} {label:24} {name:20} {recall:8.3f} {np.percentile(single, 50):8.2f} "
                    f"{np.percentile(single, 99):8.2f} {np.percentile(batch64, 50):8.1f} "
                    f"{np.percentile(batch64, 50) / 64:7.2f} {batch1000[0] / min(1000, len(queries)):8.2f}",
                    flush=True,
                )
        del index
    print(
        f"\n# latencies in ms; 1q = one query per call; b64 = batches of 64 (per call, then per query); "
        f"b1000/q = one batch of 1000, per query. Peak RSS {peak_rss_mib():.0f} MiB, {load_text()}"
    )


if __name__ == "__main__":
    main()
