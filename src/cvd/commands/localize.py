"""``cvd localize``: latitude, longitude and confidence of drone or street photos from a gallery index."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cvd localize --index gallery_index photo1.jpg photo2.jpg
  cvd localize --index gallery_index --model drone.onnx flights/ --out positions.jsonl
  cvd localize --index gallery_index queries/ --gt truth.csv --png figures/ --summary summary.json

One JSON line per query: estimated lat/lon, confidence, method (top1 or weighted), the top-k
tiles with scores; with --gt also error_m (haversine) and top1_error_m. A query that cannot be
read gets {"ok": false, "error": ...} and the others are still answered; the exit status is 1
when any query failed. --gt CSV columns: path (or image), lat, lon; queries are matched by path,
then by file name. The summary (with --gt or --summary) gives Game4Loc's Dis@1/3/5 and
SDM@1/3/5 plus mean/median error: as text on stderr, as JSON to --summary FILE, or with --json
as one last JSON line {"summary": {...}} on stdout. Definitions: docs/localization.md.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd localize``."""
    parser = subparsers.add_parser(
        "localize",
        help="estimate where photos were taken by searching a gallery index",
        description="Localize query images (files or folders) against an index from `cvd index build`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="query image files or folders of them")
    parser.add_argument("--index", "-i", required=True, help="index folder")
    parser.add_argument(
        "--model", "-m", help="query model (release, run, .safetensors, .onnx); default: the index's"
    )
    parser.add_argument(
        "--view", default="drone", choices=("drone", "street"), help="query view (default drone)"
    )
    parser.add_argument("--top-k", "-k", type=int, default=5, help="tiles reported per query (default 5)")
    parser.add_argument("--out", "-o", help="JSON-lines file (default: stdout)")
    parser.add_argument("--png", help="folder for one figure per query (query, top-k tiles, map)")
    parser.add_argument("--gt", help="CSV of true positions: path (or image), lat, lon")
    parser.add_argument("--summary", help="JSON file for the summary (default: text on stderr)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='summary as a last JSON line {"summary": ...} on stdout, after the query lines',
    )
    parser.add_argument("--batch-size", type=int, default=16, help="queries per forward pass (default 16)")
    parser.add_argument("--agree-radius", type=float, help="metres (default 1.5x the gallery's tile spacing)")
    parser.add_argument("--ef-search", type=int, help="HNSW search breadth (overrides the index's)")
    parser.add_argument("--nprobe", type=int, help="IVF lists probed (overrides the index's)")
    parser.add_argument(
        "--min-size", type=int, default=32, help="smallest accepted image side, px (default 32)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for a PyTorch model (default cpu)")
    parser.add_argument("--no-verify", action="store_true", help="skip the index files' SHA-256 check")
    parser.set_defaults(run=run)


def expand_images(items: list[str]) -> list[str]:
    """Files as given (even unreadable ones: they get their own error line); folders expanded, sorted."""
    from pathlib import Path

    from cvd.data.layout import IMAGE_SUFFIXES

    paths: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def run(args: argparse.Namespace) -> int:
    """Load index and model (checking they belong together), localize, write lines and summary."""
    import json
    import sys
    from pathlib import Path

    from cvd.atomic import atomic_write_text
    from cvd.errors import CheckpointError, ConfigError
    from cvd.geo.embedders import load_embedder
    from cvd.geo.gallery_index import GalleryIndex, IndexParams, read_manifest
    from cvd.geo.localization import check_ground_truth_coverage, localize, read_ground_truth, summarize

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    manifest = read_manifest(Path(args.index))
    model_path = args.model or manifest["model"].get("source")
    if not model_path or not Path(model_path).exists():
        raise CheckpointError(
            f"{Path(args.index) / 'manifest.json'}: the index's model {model_path!r} is not found; "
            "pass --model"
        )
    ground_truth = read_ground_truth(args.gt) if args.gt else None
    images = expand_images(args.images)
    if not images:
        raise ConfigError(f"no query images found in {', '.join(args.images)}")
    embedder = load_embedder(model_path, args.view, args.device)
    params = IndexParams(**manifest["index"]["params"])
    if args.ef_search:
        params.hnsw_ef_search = args.ef_search
    if args.nprobe:
        params.ivf_nprobe = args.nprobe
    index = GalleryIndex.load(
        args.index, expected_identity=embedder.identity, verify_checksums=not args.no_verify, params=params
    )
    results = localize(
        embedder,
        index,
        images,
        k=args.top_k,
        batch_size=args.batch_size,
        agree_radius_m=args.agree_radius,
        min_side=args.min_size,
        ground_truth=ground_truth,
    )
    if ground_truth is not None:
        check_ground_truth_coverage(results, Path(args.gt))
    lines = "".join(json.dumps(result.to_json(index, args.top_k)) + "\n" for result in results)
    if args.out:
        atomic_write_text(args.out, lines)
    else:
        sys.stdout.write(lines)
    if args.png:
        from cvd.geo.figure import save_result_png

        for number, result in enumerate(results):
            if result.error is None:
                save_result_png(
                    result, index, args.top_k, Path(args.png) / f"{number:05d}_{Path(result.query).stem}.png"
                )
    failed = [r for r in results if r.error is not None]
    for result in failed:
        print(f"cvd localize: {result.error}", file=sys.stderr)
    if ground_truth is not None or args.summary or args.json:
        summary = summarize(results, index)
        if args.summary:
            atomic_write_text(args.summary, json.dumps(summary, indent=2) + "\n")
        if args.json:
            print(json.dumps({"summary": summary}))
        elif not args.summary:
            print(summary_text(summary), file=sys.stderr)
    return 1 if failed else 0


def summary_text(summary: dict) -> str:
    """The summary for a person: one `name: value` line per entry, nested ones flattened."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{inner}: {_number(item)}" for inner, item in value.items())
        lines.append(f"{key}: {_number(value)}")
    return "\n".join(lines)


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
