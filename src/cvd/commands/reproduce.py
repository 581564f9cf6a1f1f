"""``cvd reproduce``: one of the paper's tables (or all) as one resumable command, compared with the paper."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

EPILOG = """\
examples:
  cvd reproduce table1 --data-root university1652=/data/University-Release --dry-run
  cvd reproduce table1 --data-root university1652=/data/University-Release --gpus 4
  cvd reproduce table7 --data-root university1652=/data/U1652 --data-root sues200=/data/SUES-200
  cvd reproduce table2 --rows 'sues200_lpn*' --launcher slurm --sbatch=--time=24:00:00
  cvd reproduce table4 --collect                      # table.md / .csv / .html from the runs so far
  cvd reproduce table4 --synthetic                    # smoke run on synthetic worlds, CPU, minutes
  cvd reproduce all --data-root ... cvd.variant=paper # overrides go to every row

Rows whose run is complete are skipped, interrupted ones continue (--resume); each row's folder
<out>/runs/<config name>-<hash> is tied to its resolved config, so a changed override starts a
new run. Pass the same --data-root and overrides to --collect as to the run. See docs/reproduce.md.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd reproduce``."""
    parser = subparsers.add_parser(
        "reproduce",
        help="run, collect and compare one of the paper's tables",
        description="Run every row of a table of the CVD paper (training rows, then the evaluation "
        "rows that need them), skipping finished rows and resuming interrupted ones, then collect "
        "the results beside the paper's numbers (table.md, table.csv, table.html).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("table", help="table1 ... table7, or all")
    parser.add_argument(
        "--rows", help="rows to run: 1-based positions, config names or globs, comma-separated (default all)"
    )
    parser.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DATASET=PATH",
        help="a benchmark's root, e.g. university1652=/data/University-Release (repeatable)",
    )
    parser.add_argument(
        "--out",
        help="folder of the table's runs and outputs (default runs/reproduce/<table>; all: runs/reproduce)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan (config, command, folder, state)"
    )
    parser.add_argument(
        "--collect", action="store_true", help="only collect the results there are into the table"
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="run on synthetic worlds at a smoke budget (CPU, minutes): checks the pipeline, no reproduction",
    )
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local", help="where the rows run")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per training row (torch.distributed.run)")
    parser.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra #SBATCH line for --launcher slurm, e.g. --sbatch=--time=24:00:00 (repeatable)",
    )
    parser.add_argument("--configs", help="folder of the experiment configs (default ./configs)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides for every row, e.g. cvd.variant=paper",
    )
    parser.set_defaults(run=run)
    parser.parse_known_args = _overrides_anywhere(parser)  # type: ignore[method-assign]


def _overrides_anywhere(
    parser: argparse.ArgumentParser,
) -> Callable[..., tuple[argparse.Namespace, list[str]]]:
    """Let KEY=VALUE overrides follow the options too (``cvd reproduce table1 --rows 1 optim.lr=1e-4``).

    argparse fills the positionals from the first run of them only (after TABLE), so overrides
    written after an option would be "unrecognized": they are taken from the left-overs instead.
    """
    parse = parser.parse_known_args

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = parse(args, namespace)
        overrides = [arg for arg in extras if "=" in arg and not arg.startswith("-")]
        namespace.overrides = [*(namespace.overrides or []), *overrides]
        return namespace, [arg for arg in extras if arg not in overrides]

    return parse_known_args


def run(args: argparse.Namespace) -> int:
    """Plan the tables, then print the plan, write SLURM scripts, or run them here; collect at the end."""
    from cvd.reproduce.driver import Request, reproduce

    return reproduce(
        Request(
            tables=args.table,
            rows=args.rows,
            data_roots=args.data_root,
            out=args.out,
            dry_run=args.dry_run,
            collect_only=args.collect,
            synthetic=args.synthetic,
            launcher=args.launcher,
            gpus=args.gpus,
            sbatch=args.sbatch,
            configs=args.configs,
            overrides=args.overrides,
        )
    )
