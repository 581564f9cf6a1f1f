"""``cvd test``: evaluate released weights or a training checkpoint on a benchmark."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cvd test --model runs/sample4geo_u1652                      # the run's own benchmark and protocol
  cvd test --model runs/sample4geo_u1652 eval.gallery_variant=official eval.flip_tta=true
  cvd test --model runs/lpn_u1652 --data-config configs/sues200/lpn_150.yaml   # paper Table 7
  cvd test --model runs/x/checkpoints/step-00001000.ckpt      # a training checkpoint

--model takes a run folder (its release/), a release folder or .safetensors file, or a .ckpt.
Results are printed and written as JSON (default: <run>/test/<dataset>-<variant>.json); with
--json stdout carries that JSON only (`cvd test --model RUN --json | jq '.[0]["R@1"]'`).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd test``."""
    parser = subparsers.add_parser(
        "test",
        help="evaluate a trained model with a benchmark's protocol",
        description="Evaluate a model on every evaluation split of a benchmark (protocol-exact metrics).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", "-m", required=True, help="run folder, release, .safetensors or .ckpt")
    parser.add_argument(
        "--data-config",
        help="take the data and eval sections from this experiment YAML (evaluate on another benchmark)",
    )
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON on stdout instead of a table"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. data.root=..."
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, resolve the evaluation config, evaluate, print and save the results."""
    import sys
    from pathlib import Path

    from cvd.engine.console import setup_console_logging
    from cvd.engine.trained_eval import evaluate_trained

    setup_console_logging()
    results, path = evaluate_trained(
        Path(args.model),
        data_config_path=Path(args.data_config) if args.data_config else None,
        overrides=args.overrides,
        out=Path(args.out) if args.out else None,
    )
    if path is None:  # not rank 0: the results are rank 0's to report
        return 0
    if args.json:
        print(path.read_text().rstrip("\n"))  # the very JSON written to the file
        print(f"results: {path}", file=sys.stderr)
        return 0
    for result in results:
        print(result["summary"])
    print(f"results: {path}")
    return 0
