"""``cvd analyze``: the disentanglement diagnostics of a trained model (Figures 3 and 4, analysis.json)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cvd analyze --model runs/university1652_sample4geo_cvd --data-root /data/University-Release
  cvd analyze --model cvd_demo/runs/sample4geo_cvd --out /tmp/analysis --locations 40

Writes analysis.json, analysis.md, index.html, figure3_attention.png and (when the model has
decoders) figure4_reconstruction.png into --out (default: <run>/analysis/). See docs/cvd_module.md.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd analyze``."""
    parser = subparsers.add_parser(
        "analyze",
        help="disentanglement diagnostics of a trained model",
        description="Measure on held-out test images whether a model's content and viewpoint are "
        "independent (HSIC, distance correlation with permutation p-values), what linear probes read "
        "from each (the view, the drone's altitude), whether its reconstruction beats trivial "
        "predictors and uses the content; draw the paper's Figures 3 and 4.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", "-m", required=True, help="run folder, release, .safetensors or .ckpt")
    parser.add_argument("--data-root", help="benchmark root (default: the run's data.root)")
    parser.add_argument("--out", help="output folder (default: <run>/analysis)")
    parser.add_argument("--locations", type=int, default=80, help="held-out test locations to use")
    parser.add_argument(
        "--permutations", type=int, default=200, help="permutations of each independence test"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the data/eval config"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Analyse the model and print where the results are."""
    from pathlib import Path

    from cvd.analysis.run import analyze, summary_rows
    from cvd.engine.console import setup_console_logging
    from cvd.errors import ConfigError

    setup_console_logging()
    if args.locations < 2 or args.permutations < 1:
        raise ConfigError("--locations must be >= 2 and --permutations >= 1")
    path = analyze(
        Path(args.model),
        Path(args.data_root) if args.data_root else None,
        Path(args.out) if args.out else None,
        locations=args.locations,
        permutations=args.permutations,
        overrides=args.overrides,
    )
    import json

    for quantity, content, viewpoint in summary_rows(json.loads(path.read_text())):
        print(f"{quantity:60s} {content:>10s} {viewpoint:>12s}")
    print(f"analysis: {path}")
    return 0
