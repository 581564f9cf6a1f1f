"""``cvd index``: turn a satellite map or a folder of tiles into a searchable gallery index."""

from __future__ import annotations

import argparse

from cvd.commands import add_no_progress, help_without_action

EPILOG = """\
examples:
  cvd index build --model runs/u1652 --tiles tiles/tiles.csv --out gallery_index
  cvd index build --model runs/u1652 --map city.tif --tile-size 150 --out gallery_index
  cvd index build --model release/ --map ortho.png --corners 47.40,8.50,47.35,8.58 --tile-size 120 --out idx
  cvd index build --model runs/cvusa --dataset cvusa --data-root data/CVUSA --out cvusa_index
  torchrun --nproc-per-node 4 -m cvd index build --model runs/u1652 --tiles tiles.csv --out idx
  cvd index cut --map city.tif --tile-size 150 --stride 75 --out tiles/
  cvd index info gallery_index

Tile CSV columns: path, lat, lon (tile centre) or path, north, west, south, east (tile corners);
optional id. Paths are relative to the CSV's folder. See docs/localization.md.

Re-running an interrupted build resumes from the shards in <out>/shards/. Under torchrun each
rank embeds its share of the shards and rank 0 merges them (--tiles is required there).
"""


def _corners(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--corners: expected N,W,S,E numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--corners: expected 4 numbers N,W,S,E, got {len(values)}")
    return values  # type: ignore[return-value]


def _add_map_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cutting a map into tiles")
    group.add_argument("--corners", type=_corners, help="N,W,S,E degrees of a plain image's outer edges")
    group.add_argument("--tile-size", type=float, default=150.0, help="tile side (default 150, in --unit)")
    group.add_argument("--stride", type=float, help="step between tiles in --unit (default: half the tile)")
    group.add_argument(
        "--unit", choices=("m", "px"), default="m", help="unit of --tile-size/--stride (default m)"
    )
    group.add_argument(
        "--tile-format", choices=("png", "jpg"), default="png", help="file format of cut tiles (default png)"
    )
    group.add_argument("--resize", type=int, help="store tiles resized to this many pixels (square)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd index`` and its actions build, cut and info."""
    parser = subparsers.add_parser(
        "index",
        help="build a geo-referenced gallery index (tiles -> embeddings -> faiss)",
        description="Build, cut or inspect a geo-referenced gallery index for `cvd localize`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    help_without_action(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    build = actions.add_parser(
        "build",
        help="embed gallery tiles and write the index",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument(
        "--model", "-m", required=True, help="run folder, release folder, .safetensors or .onnx"
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiles", help="tile CSV (path + lat/lon or corner bounds)")
    source.add_argument(
        "--map", help="a GeoTIFF, or an image with --corners, cut into tiles under <out>/map_tiles"
    )
    source.add_argument("--dataset", help="a benchmark whose gallery has GPS (cvusa, cvact, geotagged)")
    build.add_argument("--data-root", help="root folder of --dataset")
    build.add_argument("--out", "-o", required=True, help="index folder to write")
    build.add_argument(
        "--index-type",
        choices=("auto", "flat", "hnsw", "ivfpq"),
        default="auto",
        help="auto: exact up to 25k tiles, ivfpq above (see docs/localization.md)",
    )
    build.add_argument("--ef-search", type=int, help="HNSW search breadth stored as the default (128)")
    build.add_argument("--nprobe", type=int, help="IVF lists probed, stored as the default (half the lists)")
    build.add_argument("--batch-size", type=int, default=32, help="tiles per forward pass (default 32)")
    build.add_argument("--shard-size", type=int, default=4096, help="tiles per resumable shard")
    build.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    build.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    build.add_argument(
        "--wait",
        type=float,
        default=24 * 3600.0,
        help="seconds rank 0 waits for other ranks' shards (torchrun only)",
    )
    add_no_progress(build, deprecated=("--quiet", "-q"))
    _add_map_options(build)
    build.set_defaults(run=run_build)

    cut = actions.add_parser("cut", help="cut a map into geo-referenced tiles + tiles.csv")
    cut.add_argument("--map", required=True, help="a GeoTIFF, or an image with --corners")
    cut.add_argument("--out", "-o", required=True, help="folder for tiles/ and tiles.csv")
    add_no_progress(cut, deprecated=("--quiet", "-q"))
    _add_map_options(cut)
    cut.set_defaults(run=run_cut)

    info = actions.add_parser("info", help="show an index's manifest and verify its files")
    info.add_argument("index", help="index folder")
    info.add_argument("--json", action="store_true", help="print the whole manifest as JSON (for scripts)")
    info.set_defaults(run=run_info)


def _device(choice: str) -> str:
    """An explicit device as given ("cuda:1" too); "auto" as the trainer resolves it, per torchrun rank."""
    import os

    from cvd.engine.distributed import resolve_device

    if choice != "auto":
        return choice
    return str(resolve_device("auto", int(os.environ.get("LOCAL_RANK", "0"))))


def _check_map_options(args: argparse.Namespace) -> None:
    """Refuse map options that cannot be meant before any work (index folder, tiles, model):
    a latitude of 95 or a zero stride used to run, and fail or explode only later."""
    from cvd.earth import corners_problem
    from cvd.errors import ConfigError
    from cvd.geo.tiling import size_problem

    if args.corners is not None:
        problem = corners_problem(*args.corners)
        if problem is not None:
            raise ConfigError(f"--corners {','.join(f'{v:g}' for v in args.corners)}: {problem}")
    for flag, name, value in (
        ("--tile-size", "tile size", args.tile_size),
        ("--stride", "stride", args.stride),
    ):
        problem = None if value is None else size_problem(name, value, args.unit)
        if problem is not None:
            raise ConfigError(f"{flag} {value:g}: {problem}")
    if args.resize is not None and args.resize < 1:
        raise ConfigError(f"--resize {args.resize}: must be at least 1 px")


def _cut(args: argparse.Namespace, out_dir: str) -> list:
    from cvd.errors import ConfigError
    from cvd.geo.tiling import cut_map

    try:
        return cut_map(
            args.map,
            out_dir,
            tile_size=args.tile_size,
            stride=args.stride,
            unit=args.unit,
            corners=args.corners,
            tile_format=args.tile_format,
            resize_px=args.resize,
            progress=not args.no_progress,
        )
    except ValueError as error:
        raise ConfigError(f"--map {args.map}: {error}") from None


def _dataset_tiles(args: argparse.Namespace) -> list:
    from cvd.data import build_dataset
    from cvd.errors import ConfigError
    from cvd.geo.gallery import tiles_from_records

    if not args.data_root:
        raise ConfigError("--dataset needs --data-root, the benchmark's root folder")
    dataset = build_dataset(args.dataset, root=args.data_root)
    records = {}
    for split in dataset.eval_splits():
        for record in split.gallery:
            records.setdefault(str(record.path), record)
    return tiles_from_records(records.values())


def run_build(args: argparse.Namespace) -> int:
    """Gather the tiles, embed them (resumably, sharded across ranks), write the index."""
    import os
    import sys
    from pathlib import Path

    from cvd.errors import ConfigError, GalleryIndexError
    from cvd.geo.build import build_index, check_index_folder
    from cvd.geo.embedders import load_embedder
    from cvd.geo.gallery import read_tiles_csv
    from cvd.geo.gallery_index import IndexParams, IndexTypeError

    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    for flag, value in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.map:
        _check_map_options(args)
    check_index_folder(args.out)  # before cutting a map into it
    if args.tiles:
        tiles = read_tiles_csv(args.tiles)
    elif args.map:
        if world_size > 1:
            raise ConfigError(
                "--map under torchrun: cut the map first with `cvd index cut`, then pass --tiles"
            )
        tiles = _cut(args, str(Path(args.out) / "map_tiles"))
    else:
        tiles = _dataset_tiles(args)
    embedder = load_embedder(args.model, "satellite", _device(args.device))
    params = IndexParams()
    if args.ef_search:
        params.hnsw_ef_search = args.ef_search
    if args.nprobe:
        params.ivf_nprobe = args.nprobe
    try:
        index = build_index(
            embedder,
            tiles,
            args.out,
            index_type=args.index_type,
            params=params,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            num_workers=args.workers,
            rank=rank,
            world_size=world_size,
            wait_s=args.wait if world_size > 1 else 0.0,
            progress=not args.no_progress,
        )
    except IndexTypeError as error:
        raise ConfigError(f"--index-type {args.index_type}: {error}") from None
    except ValueError as error:  # what went wrong is in the message; it is not the flag's fault
        raise GalleryIndexError(f"{args.out}: cannot build the index: {error}") from None
    if index is None:
        print(f"rank {rank}: shards done; rank 0 merges them into {args.out}", file=sys.stderr)
        return 0
    manifest = index.manifest
    print(
        f"index: {Path(args.out)} ({manifest['index']['type']}, {manifest['tiles']['count']} tiles, "
        f"{manifest['model']['embedding_dim']}-d, {manifest['build']['n_tiles_failed']} tile(s) skipped)"
    )
    return 0


def run_cut(args: argparse.Namespace) -> int:
    """Cut a map into tiles and write tiles.csv."""
    from pathlib import Path

    _check_map_options(args)
    tiles = _cut(args, args.out)
    print(f"{len(tiles)} tiles -> {Path(args.out) / 'tiles.csv'}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Verify the index files against the manifest, then print it (stdout: data; the verdict: stderr)."""
    import json
    import sys

    from cvd.geo.gallery_index import GalleryIndex

    index = GalleryIndex.load(args.index)
    manifest = index.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        model, skipped = manifest["model"], manifest.get("build", {}).get("n_tiles_failed", 0)
        print(f"index:   {args.index} (created {manifest.get('created', '?')})")
        print(f"type:    {manifest['index']['type']} {json.dumps(manifest['index']['params'])}")
        print(f"tiles:   {manifest['tiles']['count']} ({skipped} skipped)")
        print(f"model:   {model['identity']} ({model['view']}, {model['embedding_dim']}-d)")
        print(f"source:  {model.get('source', '')}")
    print(f"ok: {args.index} verified ({len(index.tiles)} tiles)", file=sys.stderr)
    return 0
