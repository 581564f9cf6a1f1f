"""``cvd fit``: train and evaluate one (dataset x baseline x CVD on/off) config."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cvd.commands import add_no_progress

EPILOG = """\
examples:
  cvd fit --config configs/university1652/sample4geo_cvd.yaml data.root=/data/University-Release
  cvd fit --config configs/university1652/sample4geo.yaml optim.lr=5e-4 schedule.epochs=2
  cvd fit --config configs/university1652/sample4geo.yaml --resume  # continue an interrupted run
  cvd fit --config configs/university1652/sample4geo.yaml --overwrite  # start that run again
  torchrun --nproc_per_node=4 -m cvd fit --config ...            # one process per GPU (DDP)

The resolved config, the cvd version and the git commit are saved in <output_dir>/<name>/.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cvd fit``."""
    parser = subparsers.add_parser(
        "fit",
        help="train and evaluate a config",
        description="Train a model from a YAML config (default <- config file <- key=value overrides), "
        "evaluate it with its benchmark's protocol, and release safetensors weights.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", "-c", help="experiment YAML (see configs/)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last complete checkpoint"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start from scratch where a run of the same name exists (its checkpoints and logs are removed)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="check the config fully (types, ranges, every section's options) and print it, then exit",
    )
    parser.add_argument(
        "--explain",
        metavar="KEY",
        action="append",
        default=[],
        help="print KEY's resolved value, its declaration (type, range, default, help) and where it "
        "was set, then exit (repeatable)",
    )
    add_no_progress(parser)
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=5e-4"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then train (rank 0 prints where the run lives)."""
    from cvd.config import dump_yaml, explain, resolve_config
    from cvd.engine.console import setup_console_logging

    config, sources = resolve_config(args.config, args.overrides, strict=True)
    if args.explain:
        print("\n\n".join(explain(config, sources, key) for key in args.explain))
        return 0
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    setup_console_logging()
    from cvd.engine.distributed import shutdown_distributed
    from cvd.engine.trainer import fit

    try:
        if args.resume and args.overwrite:
            from cvd.errors import ConfigError

            raise ConfigError("--resume and --overwrite contradict each other: choose one")
        with terminate_as_interrupt():
            result = fit(config, resume=args.resume, overwrite=args.overwrite)
    finally:
        shutdown_distributed()
    from cvd.engine.console import print_run_summary

    print_run_summary(result)
    return 0


class Terminated(SystemExit):
    """SIGTERM (SLURM, Kubernetes, ``kill``): unwinds like Ctrl-C, so a write in progress removes
    its temporary file and the run folder's lock is released, then exits with 128 + 15."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While training, turn SIGTERM into :class:`Terminated` (exit status 143, a one-line message)."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
        print(
            "cvd fit: terminated (SIGTERM); the run folder keeps its last complete checkpoint: "
            "continue with --resume",
            file=sys.stderr,
        )
        raise Terminated(128 + signal.SIGTERM)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
