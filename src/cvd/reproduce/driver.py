"""What ``cvd reproduce`` does: plan the tables, then print, schedule or run them, and collect."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cvd.errors import ConfigError
from cvd.reproduce.collect import collect_table, write_table
from cvd.reproduce.launch import describe, run_local, write_slurm
from cvd.reproduce.plan import (
    DONE,
    FAILED,
    WAITING_DATA,
    Planner,
    PlanOptions,
    Step,
    parse_data_roots,
    refresh,
    write_manifest,
)
from cvd.reproduce.tables import Row, configs, parse_table, select_rows, table_rows


@dataclass
class Request:
    """The command line of ``cvd reproduce``."""

    tables: str
    rows: str | None = None
    data_roots: list[str] = field(default_factory=list)
    out: str | None = None
    dry_run: bool = False
    collect_only: bool = False
    synthetic: bool = False
    launcher: str = "local"
    gpus: int = 1
    sbatch: list[str] = field(default_factory=list)
    configs: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class TablePlan:
    """One table's rows, the steps that produce them and the folder they go to."""

    table: int
    rows: list[Row]
    steps: list[Step]
    out: Path
    every_row: list[Row] = field(default_factory=list)
    every_step: list[Step] = field(default_factory=list)
    """All rows of the table and their steps: the collected table shows the rows not chosen too."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def table_out(request: Request, table: int, several: bool) -> Path:
    """``--out`` for one table (a folder per table under it when several), else the default."""
    default = Path("runs") / ("reproduce-synthetic" if request.synthetic else "reproduce")
    if request.out:
        return Path(request.out) / f"table{table}" if several else Path(request.out)
    return default / f"table{table}"


def plan_tables(request: Request) -> list[TablePlan]:
    """The plan of every requested table (rows chosen, steps ordered, states read from the folders)."""
    numbers = parse_table(request.tables)
    if request.rows and len(numbers) > 1:
        raise ConfigError("--rows chooses rows of one table: name one table, not all")
    if request.gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {request.gpus}")
    root = Path(request.configs).expanduser().resolve() if request.configs else None
    if root is not None and not root.is_dir():
        raise ConfigError(f"--configs {root}: no such folder")
    data_roots = parse_data_roots(request.data_roots)
    chosen = {}
    for number in numbers:
        rows = table_rows(number, root)
        if not rows:
            raise ConfigError(f"table{number}: no config under {root or 'configs/'} names it in meta.table")
        chosen[number] = (rows, select_rows(rows, request.rows))
    row_overrides = None
    if request.synthetic:
        from cvd.reproduce.synthetic import WORLDS, smoke_overrides

        worlds = _worlds_folder(request)
        data_roots = {dataset: str(worlds / dataset) for dataset in WORLDS} | data_roots
        row_overrides = smoke_overrides
    plans = []
    for number, (every, rows) in chosen.items():
        out = table_out(request, number, len(numbers) > 1)
        planner = Planner(PlanOptions(out, data_roots, list(request.overrides), row_overrides, root))
        planner.add_rows(every)
        everything = planner.ordered()
        refresh(everything)
        plans.append(TablePlan(number, rows, _serving(everything, rows), out, every, everything))
    return plans


def _serving(steps: list[Step], rows: list[Row]) -> list[Step]:
    """The steps that produce ``rows``, with the steps they need, in the order of ``steps``."""
    keys = {(row.table, row.key) for row in rows}
    kept: set[str] = set()

    def keep(step: Step) -> None:
        if step.digest not in kept:
            kept.add(step.digest)
            for need in step.needs:
                keep(need)

    for step in steps:
        if any((row.table, row.key) in keys for row in step.rows):
            keep(step)
    return [step for step in steps if step.digest in kept]


def _worlds_folder(request: Request) -> Path:
    """Where the synthetic worlds go: shared by the tables of one ``--out`` (or of the default)."""
    if request.out:
        return Path(request.out) / "worlds"
    return Path("runs") / "reproduce-synthetic" / "worlds"


def print_plan(plans: list[TablePlan], synthetic: bool) -> None:
    """The plan on stdout: per step its state, command and folder."""
    for plan in plans:
        print(f"table{plan.table}: {len(plan.rows)} rows, {len(plan.steps)} steps -> {plan.out}")
        for number, step in enumerate(plan.steps, start=1):
            detail = step.detail
            if synthetic and step.state == WAITING_DATA:
                detail = "the synthetic world is generated when the table runs"
            print(f"  [{number}] {step.state}{': ' + detail if detail else ''}")
            print(f"      {describe(step)}")
            print(f"      config:  {step.config.path}")
            print(f"      folder:  {step.folder}")
            print(f"      command: {shlex.join(step.argv(python='python'))}")


def collect(plans: list[TablePlan], synthetic: bool) -> list[Path]:
    """Write every table's table.md / .csv / .html into its folder; returns the paths."""
    written = []
    for plan in plans:
        refresh(plan.every_step)
        collected = collect_table(plan.table, plan.every_row, plan.every_step, synthetic)
        written += write_table(collected, plan.out)
    return written


def reproduce(request: Request) -> int:
    """Run ``cvd reproduce``; exit status 1 when a step failed, else 0."""
    plans = plan_tables(request)
    if request.dry_run:
        print_plan(plans, request.synthetic)
        return 0
    if request.collect_only:
        for path in collect(plans, request.synthetic):
            print(path)
        return 0
    if request.synthetic:
        from cvd.reproduce.synthetic import make_worlds

        given = parse_data_roots(request.data_roots)  # a world passed with --data-root is used as it is
        needed = {step.config.dataset for plan in plans for step in plan.steps} - set(given)
        if needed:
            worlds = _worlds_folder(request)
            _say(f"synthetic worlds ({', '.join(sorted(needed))}) in {worlds}")
            make_worlds(worlds, needed)
    if request.launcher == "slurm":
        for plan in plans:
            refresh(plan.steps)
            write_manifest(plan.out, {plan.table: plan.rows}, plan.steps)
            for path in write_slurm(plan.steps, plan.out, f"table{plan.table}", request.gpus, request.sbatch):
                print(path)
            submit = plan.out / "slurm" / f"submit-table{plan.table}.sh"
            _say(
                f"table{plan.table}: submit with {submit}, then collect with cvd reproduce "
                f"table{plan.table} --collect (the same --data-root and overrides)"
            )
        return 0
    failed = False
    for plan in plans:
        _say(f"table{plan.table}: {len(plan.rows)} rows, {len(plan.steps)} steps -> {plan.out}")
        write_manifest(plan.out, {plan.table: plan.rows}, plan.steps)
        counts = run_local(plan.steps, plan.out, request.gpus)
        write_manifest(plan.out, {plan.table: plan.rows}, plan.steps)
        paths = collect([plan], request.synthetic)
        failed |= counts.get(FAILED, 0) > 0
        summary = ", ".join(
            f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: kv[0] != DONE)
        )
        _say(f"table{plan.table}: {summary}; table: {paths[0]}")
        for path in paths:
            print(path)
    return 1 if failed else 0


__all__ = ["Request", "TablePlan", "collect", "configs", "plan_tables", "print_plan", "reproduce"]
