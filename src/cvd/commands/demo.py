"""``cvd demo``: synthetic world -> Sample4Geo with and without CVD -> evaluation -> report."""

from __future__ import annotations

import argparse

from cvd.commands import add_no_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo on a synthetic world (CPU, ~10 min; --quick ~2 min)",
        description="Generate a synthetic cross-view world, train Sample4Geo and Sample4Geo+CVD on it "
        "from offline ImageNet weights, evaluate both with the University-1652 protocol, and write a "
        "report (metrics table, loss curves, retrieval grids, summary). Needs no network and no GPU.",
    )
    parser.add_argument("--out", default="cvd_demo", help="output folder (default: ./cvd_demo)")
    parser.add_argument(
        "--quick", action="store_true", help="a smaller world (48 locations) and 3 epochs (~1-2 min)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of training")
    add_no_progress(parser)
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for both runs, e.g. optim.lr=1e-4"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and say where the report is."""
    from pathlib import Path

    from cvd.demo_pipeline import run_demo
    from cvd.engine.console import setup_console_logging

    setup_console_logging()
    run_demo(Path(args.out), quick=args.quick, seed=args.seed, overrides=args.overrides)
    return 0
