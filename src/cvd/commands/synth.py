"""`cvd synth`: generate a synthetic cross-view dataset in a real benchmark's layout.

cvd synth --layout university1652 --locations 80 --views-per-location 8 --size 128 --seed 0 --out DIR
cvd synth preview DIR [--out PNG] [--locations K]
"""

from __future__ import annotations

import argparse
import ast
import os
from typing import Any

from cvd.commands import add_no_progress

LAYOUT_CHOICES = ("university1652", "sues200", "cvusa", "cvact")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `cvd synth` and its `preview` sub-command."""
    from cvd.data.synthetic.options import DEFAULTS  # light: dataclasses only

    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic cross-view dataset (University-1652 / SUES-200 / CVUSA / CVACT layout)",
        description=(
            "Render a procedural town from satellite, drone (four altitudes) and street level and "
            "write it in a real benchmark's tree, readable by `cvd fit` / `cvd test` as that benchmark. "
            "`cvd synth preview DIR` draws a contact sheet of a generated dataset."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--layout", choices=LAYOUT_CHOICES, default=DEFAULTS.layout, help="benchmark tree to write"
    )
    parser.add_argument(
        "--locations",
        type=int,
        default=DEFAULTS.locations,
        help="University-1652: buildings (half train, half test, + 250/701 distractors); "
        "SUES-200: location folders; CVUSA, CVACT: image pairs",
    )
    parser.add_argument(
        "--views-per-location",
        type=int,
        default=DEFAULTS.views_per_location,
        help="drone images per location (University-1652) or per altitude (SUES-200); CVUSA, CVACT: unused",
    )
    parser.add_argument("--size", type=int, default=DEFAULTS.size, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="world seed: same seed, same bytes")
    parser.add_argument("--out", help="dataset root to write (created)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="rendering processes (the bytes written do not depend on it)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="any option of cvd.data.synthetic.SynthOptions, e.g. --set satellite_extent=200 "
        "--set altitudes=150,200,250,300 (repeatable)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace another synthetic dataset found in --out"
    )
    add_no_progress(parser)
    parser.set_defaults(run=run)
    sub = parser.add_subparsers(dest="synth_command", metavar="preview")
    preview = sub.add_parser(
        "preview",
        help="write a contact sheet PNG of a generated dataset",
        description="For a few locations: the satellite tile beside its drone views at each altitude "
        "and its panorama.",
    )
    preview.add_argument("dataset", help="root of a dataset written by `cvd synth`")
    preview.add_argument("--out", dest="preview_out", help="PNG to write (default DATASET/preview.png)")
    preview.add_argument(
        "--locations", dest="preview_locations", type=int, default=4, help="locations to show"
    )
    preview.set_defaults(run=run_preview)


def _parse_value(text: str) -> Any:
    """Option values: Python literals (numbers, None, True), comma lists as tuples, else strings."""
    if "," in text:
        return tuple(_parse_value(part.strip()) for part in text.split(",") if part.strip())
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs as keyword options (names checked later by SynthOptions)."""
    from cvd.errors import ConfigError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected OPTION=VALUE")
        options[key.strip()] = _parse_value(value.strip())
    return options


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print its root."""
    from cvd.data.synthetic import generate
    from cvd.errors import ConfigError

    if not args.out:
        raise ConfigError("--out DIR is required (the dataset root to write)")
    options = parse_options(args.set)
    options.setdefault("workers", args.workers)
    root = generate(
        args.layout,
        args.out,
        locations=args.locations,
        views_per_location=args.views_per_location,
        size=args.size,
        seed=args.seed,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        **options,
    )
    print(root)
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """Write the contact sheet and print its path."""
    from cvd.data.synthetic.preview import write_preview

    print(write_preview(args.dataset, args.preview_out, args.preview_locations))
    return 0
