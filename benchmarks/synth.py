"""Synthetic world benchmark: rendering speed and zero-shot drone->satellite retrieval.

    .venv/bin/python benchmarks/synth.py                 # both parts
    .venv/bin/python benchmarks/synth.py --part speed    # views per second at 256 px
    .venv/bin/python benchmarks/synth.py --part zeroshot --test-locations 100

Speed: one location's scene and captures are prepared once (reported separately, as the
per-location set-up), then satellite tiles, drone views and street panoramas are rendered
repeatedly at --size; the figure is views per second of one process (torch at 1 thread, as
generation runs) and of --processes processes rendering at once (the 2-core figure).
Target: >= 10 drone views/s at 256 px on 2 cores.

Zero-shot: a University-1652-layout dataset with --test-locations test buildings is generated,
drone and satellite images are embedded with pretrained tf_efficientnet_lite0 (offline
ImageNet weights, global average pooling, no training) and ranked with the University-1652
protocol. The world is tuned so that this R@1 lies in 10-60%: neither trivial nor hopeless.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _prepare(size: int, seed: int):
    import torch

    from cvd.data.synthetic.cameras import OrthoCamera, PanoramaCamera
    from cvd.data.synthetic.lighting import drone_capture, satellite_capture
    from cvd.data.synthetic.location import (
        FAR_CELL,
        NEAR_MARGIN,
        drone_camera,
        panorama_size,
        plan_drone_shots,
    )
    from cvd.data.synthetic.noise import object_rng
    from cvd.data.synthetic.options import SynthOptions
    from cvd.data.synthetic.render import Scene
    from cvd.data.synthetic.world import World

    torch.set_num_threads(1)
    options = SynthOptions()
    started = time.perf_counter()
    world = World(seed, options)
    half = options.satellite_extent / 2 + NEAR_MARGIN
    near = Scene(world.window(-half, -half, half, half))
    far = Scene(world.window(-520, -520, 520, 520, FAR_CELL))
    rng = object_rng(seed, 1)
    sat_capture = satellite_capture(rng, options.satellite_veil, options.season_shift, options.colour_jitter)
    drone = drone_capture(rng, options.drone_haze, options.season_shift, options.colour_jitter)
    crop = near.crop((0.0, 0.0), options.satellite_extent / 2 + 60)
    satellite_layers = [(crop, crop.shade(sat_capture))]
    drone_layers = [(near, near.shade(drone)), (far, far.shade(drone))]
    setup = time.perf_counter() - started
    shots = plan_drone_shots(object_rng(seed, 2), 16, options.altitudes, options)
    ground = world.ground_height(0.0, 0.0)
    cameras = {
        "satellite": [OrthoCamera((0.0, 0.0), options.satellite_extent, size, size, ground, 3.0, 40.0)],
        "drone": [drone_camera(shot, (0.0, 0.0), ground, size, options.drone_vfov_deg) for shot in shots],
        "panorama": [
            PanoramaCamera((6.0, 3.0, ground + 2.5), panorama_size(size)[1], panorama_size(size)[0], 65.0)
        ],
    }
    layers = {"satellite": satellite_layers, "drone": drone_layers, "panorama": drone_layers}
    return setup, cameras, layers


def _render_many(kind: str, size: int, seed: int, seconds: float) -> tuple[int, float, float]:
    """Render views of one kind for about `seconds`; returns (views, elapsed, CPU seconds).

    "drone-batch" renders the 16 drone views 8 at a time with `render_views`, as generation does
    for one location's flight; the other kinds render one view per call.
    """
    from cvd.data.synthetic.render import render, render_views

    _, cameras, layers = _prepare(size, seed)
    batched = kind == "drone-batch"
    kind = "drone" if batched else kind
    cams = cameras[kind]

    def once(step: int) -> int:
        if batched:
            group = [cams[(step * 8 + k) % len(cams)] for k in range(8)]
            render_views(group, layers[kind], t_max=440.0)
            return len(group)
        render(cams[step % len(cams)], layers[kind], None, 0.0, t_max=440.0)
        return 1

    once(0)  # warm-up
    count = steps = 0
    started = time.perf_counter()
    cpu = time.process_time()
    while time.perf_counter() - started < seconds:
        count += once(steps)
        steps += 1
    return count, time.perf_counter() - started, time.process_time() - cpu


def _worker(args: tuple[str, int, int, float]) -> tuple[int, float, float]:
    return _render_many(*args)


def speed(size: int, seed: int, seconds: float, processes: int) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes compete for the cores when > 0)")
    setup, _, _ = _prepare(size, seed)
    print(
        "per-location set-up (rasterise near+far windows, shade 1 satellite + 1 drone capture): "
        f"{setup:.2f} s"
    )
    for kind in ("satellite", "drone", "drone-batch", "panorama"):
        views, elapsed, cpu = _render_many(kind, size, seed, seconds)
        single = views / elapsed
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            results = pool.map(_worker, [(kind, size, seed, seconds)] * processes)
        total = sum(v for v, _, _ in results) / max(e for _, e, _ in results)
        print(
            f"{kind:11s} {size}px: {single:6.1f} views/s in 1 process (1 torch thread; "
            f"{1000 * cpu / views:.1f} ms CPU per view), {total:6.1f} views/s with {processes} processes"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def zeroshot(
    test_locations: int, views: int, size: int, seed: int, embed_size: int, workers: int, keep: str | None
) -> None:
    import numpy as np
    import torch

    from cvd.data import University1652, load_rgb
    from cvd.data.synthetic import generate, load_metadata
    from cvd.data.transforms import transform_from_data_config
    from cvd.evaluation import evaluate_embeddings
    from cvd.models import Backbone

    torch.set_num_threads(2)
    directory = keep or tempfile.mkdtemp(prefix="cvd_synth_bench_")
    started = time.perf_counter()
    root = generate("university1652", directory, 2 * test_locations, views, size, seed, workers=workers)
    print(
        f"generated {2 * test_locations} locations (+ distractors) x {views} views at {size}px in "
        f"{time.perf_counter() - started:.1f} s ({workers} workers) -> {root}"
    )
    metadata = load_metadata(root)
    backbone = Backbone("tf_efficientnet_lite0", pretrained=True).eval()
    transform = transform_from_data_config(backbone.data_config, embed_size)

    embedded: dict[str, torch.Tensor] = {}  # the two gallery variants share their images

    @torch.no_grad()
    def embed(records):
        missing = list(dict.fromkeys(str(r.path) for r in records if str(r.path) not in embedded))
        for start in range(0, len(missing), 64):
            paths = missing[start : start + 64]
            batch = torch.stack([transform(load_rgb(path)) for path in paths])
            features = torch.nn.functional.normalize(backbone(batch).mean(dim=(2, 3)), dim=1)
            embedded.update(zip(paths, features, strict=True))
        return torch.stack([embedded[str(r.path)] for r in records])

    dataset = University1652(root)
    for variant in ("official", "sample4geo"):
        split = next(s for s in dataset.eval_splits(variant) if s.name == "drone->satellite")
        queries = embed(split.queries)
        gallery = embed(split.gallery)
        result = evaluate_embeddings(
            queries, [r.label for r in split.queries], gallery, [r.label for r in split.gallery],
            protocol="university1652", gallery_variant=variant,
        )  # fmt: skip
        print(
            f"zero-shot lite0 (ImageNet, GAP, {embed_size}px) drone->satellite, University-1652 protocol, "
            f"gallery {variant}: R@1 {result['R@1']:.2f}  R@5 {result['R@5']:.2f}  "
            f"R@10 {result['R@10']:.2f}  "
            f"AP {result['AP']:.2f}  ({result['num_queries']} queries, {result['num_gallery']} gallery; "
            f"chance R@1 {100 / len({r.label for r in split.gallery if r.label >= 0}):.2f})"
        )
        if variant == "official":
            ranks_by_altitude: dict[float, list[float]] = {}
            sims = queries @ gallery.T
            gallery_labels = np.array([r.label for r in split.gallery])
            best = gallery_labels[sims.argmax(dim=1).numpy()]
            for record, top in zip(split.queries, best):
                relative = str(Path(record.path).relative_to(root))
                altitude = metadata["images"][relative]["altitude_m"]
                ranks_by_altitude.setdefault(altitude, []).append(float(top == record.label))
            print("  R@1 by altitude: " + ", ".join(
                f"{int(a)} m {100 * statistics.mean(v):.1f}" for a, v in sorted(ranks_by_altitude.items())
            ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("speed", "zeroshot", "all"), default="all")
    parser.add_argument("--size", type=int, default=256, help="speed: image size (default 256)")
    parser.add_argument("--seconds", type=float, default=6.0, help="speed: seconds per measurement")
    parser.add_argument("--processes", type=int, default=2, help="speed: processes rendering at once")
    parser.add_argument("--test-locations", type=int, default=100)
    parser.add_argument("--views", type=int, default=8, help="zero-shot: drone views per location")
    parser.add_argument("--gen-size", type=int, default=128, help="zero-shot: generated image size")
    parser.add_argument("--embed-size", type=int, default=128, help="zero-shot: network input size")
    parser.add_argument("--workers", type=int, default=2, help="zero-shot: generation worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="zero-shot: write the dataset here (default: a temporary folder)")
    args = parser.parse_args()
    if args.part in ("speed", "all"):
        speed(args.size, args.seed, args.seconds, args.processes)
    if args.part in ("zeroshot", "all"):
        zeroshot(
            args.test_locations,
            args.views,
            args.gen_size,
            args.seed,
            args.embed_size,
            args.workers,
            args.keep,
        )


if __name__ == "__main__":
    main()
