"""``cvd export``: the retrieval embedder as ONNX, checked against PyTorch, for onnxruntime."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cvd export --model runs/u1652 --format onnx --out drone.onnx
  cvd export --model runs/u1652 --format onnx --view satellite --out satellite.onnx
  cvd export --model release/ --format onnx --out q.onnx --check-images photo1.jpg photo2.jpg

Only the embedder of one branch is exported (no CVD decoders). The file is written only if
onnxruntime matches PyTorch to --atol (max absolute difference) on structured images: renders
of the toolkit's synthetic town, or --check-images. The batch size is free, the image size fixed
to the model's evaluation size (printed; stored in the file): `cvd localize --model FILE.onnx`
and `cvd index build --model FILE.onnx` resize every image to it. Needs the onnx extra
(pip install 'cvd[onnx]'); `cvd index build` needs a --view satellite export.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd export``."""
    parser = subparsers.add_parser(
        "export",
        help="export the retrieval embedder (ONNX) with a parity check",
        description="Export one branch's retrieval embedder of released weights to ONNX.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", "-m", required=True, help="run folder, release folder or .safetensors")
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")
    parser.add_argument("--out", "-o", required=True, help="output file (.onnx)")
    parser.add_argument(
        "--view",
        default="drone",
        choices=("drone", "street", "satellite"),
        help="whose branch to export (default drone = the query branch)",
    )
    parser.add_argument(
        "--check-images", nargs="+", help="images for the parity check (default: synthetic renders)"
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="allowed max abs difference (default 1e-4)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, verify, report."""
    from cvd.export.onnx import export_onnx

    report = export_onnx(
        args.model, args.out, view=args.view, check_images=args.check_images, atol=args.atol, opset=args.opset
    )
    print(
        f"exported {report.view} embedder -> {report.path}\n"
        f"parity vs PyTorch on {report.check_source}: max |diff| {report.max_abs_diff:.2e} "
        f"(allowed {args.atol:.0e}), min cosine {report.min_cosine:.6f}\n"
        f"input: N x {'x'.join(map(str, report.input_size))} (N free; height and width fixed: "
        "resize images to them, as cvd localize does)\n"
        f"model identity {report.identity}"
    )
    return 0
